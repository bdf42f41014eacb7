"""API keys: create, list, revoke, and resolve a presented key to a principal."""

from __future__ import annotations

import logging
import secrets
import time
from concurrent.futures import ThreadPoolExecutor

from sqlmodel import Session, col, select

from api.errors import Conflict, NotFound
from api.schemas import KeyCreate, KeyCreated, KeyPublic, KeyRotated, KeysPublic, KeyUpdate, iso
from api.security import Principal, hash_key, new_key, same_secret
from api.services import audit
from api.tables import ApiKey

log = logging.getLogger(__name__)

BOOTSTRAP_ADMIN = Principal(id="bootstrap-admin", name="admin (TIERLINE_ADMIN_KEY)", role="admin")


def create_key(session: Session, body: KeyCreate, actor: Principal | None = None) -> KeyCreated:
    """Store a new key's hash; the key itself is returned once and never stored (nor
    logged, nor audited: the audit row names the key's id, role and scope)."""
    key = new_key()
    row = ApiKey(
        id="k_" + secrets.token_hex(8),
        name=body.name,
        role=body.role,
        key_hash=hash_key(key),
        created_at=time.time(),
        lead=body.lead,
        tasks=body.tasks,
    )
    session.add(row)
    session.flush()
    audit.record(session, actor, "key.created", subject=row.id, after=_audited(row))
    return KeyCreated(
        id=row.id, name=row.name, role=body.role, key=key, tasks=row.tasks, lead=row.lead
    )


def _audited(row: ApiKey) -> dict:
    return {
        "name": row.name,
        "role": row.role,
        "tasks": row.tasks,
        "lead": row.lead,
        "revoked": row.revoked,
        "expires_at": iso(row.expires_at),
    }


def _ended(row: ApiKey) -> bool:
    """Revoked, or rotated and past its grace period: it opens nothing any more."""
    return row.revoked or (row.expires_at is not None and row.expires_at <= time.time())


def rotate_key(
    session: Session, key_id: str, grace_seconds: float, actor: Principal | None = None
) -> KeyRotated:
    """Issue a new key with the old one's name, role and scope; the old key keeps
    working for ``grace_seconds`` (so its holders can switch), then stops."""
    old = session.get(ApiKey, key_id)
    if old is None:
        raise NotFound(f"key {key_id} not found")
    if _ended(old):
        raise Conflict(f"key {key_id} is revoked or expired: create a new key instead")
    if old.rotated_to is not None:  # a second rotation would leave two live successors
        raise Conflict(f"key {key_id} was rotated already, to {old.rotated_to}: rotate that one")
    before = _audited(old)
    # as stored (a name given before today's checks is kept, not refused)
    body = KeyCreate.model_construct(
        name=old.name,
        role=old.role,  # type: ignore[arg-type]  # stored: one of the roles
        lead=old.lead,
        tasks=old.tasks,
    )
    created = create_key(session, body, actor)
    expires = time.time() + grace_seconds
    old.expires_at = min(old.expires_at or expires, expires)
    old.rotated_to = created.id
    session.add(old)
    session.flush()
    audit.record(
        session,
        actor,
        "key.rotated",
        subject=old.id,
        before=before,
        after={**_audited(old), "rotated_to": created.id},
    )
    return KeyRotated(
        **created.model_dump(), replaces=old.id, old_key_expires_at=iso(old.expires_at)
    )


def list_keys(session: Session) -> KeysPublic:
    rows = session.exec(select(ApiKey).order_by(col(ApiKey.created_at))).all()
    data = [_public(r) for r in rows]
    return KeysPublic(data=data, count=len(data))


def _public(row: ApiKey) -> KeyPublic:
    return KeyPublic(
        id=row.id,
        name=row.name,
        role=row.role,  # type: ignore[arg-type]
        created_at=iso(row.created_at),
        revoked=row.revoked,
        last_used_at=iso(row.last_used_at),
        lead=row.lead,
        tasks=row.tasks,
        expires_at=iso(row.expires_at),
        rotated_to=row.rotated_to,
    )


def revoke_key(session: Session, key_id: str, actor: Principal | None = None) -> None:
    row = session.get(ApiKey, key_id)
    if row is None:
        raise NotFound(f"key {key_id} not found")
    if not row.revoked:
        before = _audited(row)
        row.revoked = True
        row.revoked_at = time.time()
        session.add(row)
        session.flush()
        audit.record(
            session, actor, "key.revoked", subject=row.id, before=before, after=_audited(row)
        )


def update_key(session: Session, key_id: str, body: KeyUpdate) -> KeyPublic:
    """Grant or withdraw the ``lead`` permission of a key (not of a revoked one: 409)."""
    row = session.get(ApiKey, key_id)
    if row is None:
        raise NotFound(f"key {key_id} not found")
    if _ended(row):
        raise Conflict(f"key {key_id} is revoked or expired: create a new key instead")
    if body.lead is not None and body.lead != row.lead:
        before = _audited(row)
        row.lead = body.lead
        session.add(row)
        session.flush()
        audit.record(
            session, audit.acting(), "key.changed", subject=row.id, before=before,
            after=_audited(row),
        )  # fmt: skip
    return _public(row)


def resolve_key(session: Session, presented: str, admin_key: str | None) -> Principal | None:
    """The principal behind a presented key, or ``None`` for an unknown or revoked key."""
    if admin_key and same_secret(presented, admin_key):
        return BOOTSTRAP_ADMIN
    return principal_of(session, hash_key(presented))


def principal_of(session: Session, key_hash: str) -> Principal | None:
    """The principal whose key hashes to ``key_hash`` (``None``: unknown or revoked)."""
    row = session.exec(select(ApiKey).where(ApiKey.key_hash == key_hash)).first()
    if row is None or _ended(row):
        return None
    scope = frozenset(row.tasks) if row.tasks is not None else None
    former: list[str] = []  # the rotation chain back to the first key
    replaced = _replaced_by(session, row.id)
    while replaced is not None and len(former) < 100:
        former.append(replaced)
        replaced = _replaced_by(session, replaced)
    return Principal(
        id=row.id, name=row.name, role=row.role, lead=row.lead, tasks=scope, former=tuple(former)
    )


def _replaced_by(session: Session, key_id: str) -> str | None:
    """The key that ``key_id`` replaced when it was issued by a rotation, if any."""
    return session.exec(select(ApiKey.id).where(ApiKey.rotated_to == key_id)).first()


LAST_USED_RESOLUTION = 60.0  # seconds: last_used_at is written at most this often per key
_last_written: dict[str, float] = {}


# One thread writes last_used_at, off the request path: bookkeeping must not hold a
# request up for the database's busy timeout while a writer holds it (a read-only request
# took 10 s behind a held SQLite lock, waiting to write the key's last use).
_bookkeeping = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tierline-key-use")


def note_use(session_factory, key_id: str) -> None:  # type: ignore[no-untyped-def]
    """Record that a key was used (``last_used_at``), at most once a minute per key, in
    the background (a failure is logged, never raised)."""
    now = time.time()
    if now - _last_written.get(key_id, 0.0) < LAST_USED_RESOLUTION:
        return
    _last_written[key_id] = now
    _bookkeeping.submit(_write_use, session_factory, key_id, now)


def _write_use(session_factory, key_id: str, now: float) -> None:  # type: ignore[no-untyped-def]
    try:
        with session_factory() as session:
            row = session.get(ApiKey, key_id)
            if row is not None:
                row.last_used_at = now
                session.add(row)
    except Exception as exc:  # bookkeeping: never a reason to fail anything
        log.warning("could not record a key's last use: %s", type(exc).__name__)
