"""API keys: create, list, revoke, and resolve a presented key to a principal."""

from __future__ import annotations

import secrets
import time

from sqlmodel import Session, col, select

from api.errors import NotFound
from api.schemas import KeyCreate, KeyCreated, KeyPublic, KeysPublic, iso
from api.security import Principal, hash_key, new_key, same_secret
from api.tables import ApiKey

BOOTSTRAP_ADMIN = Principal(id="bootstrap-admin", name="admin (TIERLINE_ADMIN_KEY)", role="admin")


def create_key(session: Session, body: KeyCreate) -> KeyCreated:
    """Store a new key's hash; the key itself is returned once and never stored."""
    key = new_key()
    row = ApiKey(
        id="k_" + secrets.token_hex(8),
        name=body.name,
        role=body.role,
        key_hash=hash_key(key),
        created_at=time.time(),
    )
    session.add(row)
    return KeyCreated(id=row.id, name=row.name, role=body.role, key=key)


def list_keys(session: Session) -> KeysPublic:
    rows = session.exec(select(ApiKey).order_by(col(ApiKey.created_at))).all()
    data = [
        KeyPublic(
            id=r.id,
            name=r.name,
            role=r.role,  # type: ignore[arg-type]
            created_at=iso(r.created_at),
            revoked=r.revoked,
            last_used_at=iso(r.last_used_at),
        )
        for r in rows
    ]
    return KeysPublic(data=data, count=len(data))


def revoke_key(session: Session, key_id: str) -> None:
    row = session.get(ApiKey, key_id)
    if row is None:
        raise NotFound(f"key {key_id} not found")
    if not row.revoked:
        row.revoked = True
        row.revoked_at = time.time()
        session.add(row)


def resolve_key(session: Session, presented: str, admin_key: str | None) -> Principal | None:
    """The principal behind a presented key, or ``None`` for an unknown or revoked key."""
    if admin_key and same_secret(presented, admin_key):
        return BOOTSTRAP_ADMIN
    return principal_of(session, hash_key(presented))


def principal_of(session: Session, key_hash: str) -> Principal | None:
    """The principal whose key hashes to ``key_hash`` (``None``: unknown or revoked)."""
    row = session.exec(select(ApiKey).where(ApiKey.key_hash == key_hash)).first()
    if row is None or row.revoked:
        return None
    return Principal(id=row.id, name=row.name, role=row.role)
