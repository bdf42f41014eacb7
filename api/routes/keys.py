from typing import Annotated

from fastapi import APIRouter, Response

from api.deps import CurrentKey, StateDep, require
from api.schemas import (
    KeyCreate,
    KeyCreated,
    KeyPublic,
    KeyRotate,
    KeyRotated,
    KeysPublic,
    KeyUpdate,
    Me,
)
from api.security import Principal
from api.services import keys as service
from api.services import quality

router = APIRouter(prefix="/v1", tags=["keys"])


KeyAdmin = Annotated[Principal, require("keys:manage")]


@router.post("/keys", status_code=201, response_model=KeyCreated)
def create_key(body: KeyCreate, state: StateDep, who: KeyAdmin) -> KeyCreated:
    """Create a key; ``tasks`` scopes it to those tasks. The key is shown only here."""
    with state.db.write() as session:
        return service.create_key(session, body, who)


@router.get("/keys", response_model=KeysPublic, dependencies=[require("keys:manage")])
def list_keys(state: StateDep) -> KeysPublic:
    with state.db.read() as session:
        return service.list_keys(session)


@router.delete("/keys/{key_id}", status_code=204)
def revoke_key(key_id: str, state: StateDep, who: KeyAdmin) -> Response:
    with state.db.write() as session:
        service.revoke_key(session, key_id, who)
    state.keys.forget()
    return Response(status_code=204)


@router.post("/keys/{key_id}/rotate", status_code=201, response_model=KeyRotated)
def rotate_key(
    key_id: str, state: StateDep, who: KeyAdmin, body: KeyRotate | None = None
) -> KeyRotated:
    """Issue a new key with the same name, role and scope; the old one keeps working for
    ``grace_seconds`` (default an hour), then stops."""
    grace = (body or KeyRotate()).grace_seconds
    with state.db.write() as session:
        rotated = service.rotate_key(session, key_id, grace, who)
    state.keys.forget()
    return rotated


@router.patch("/keys/{key_id}", response_model=KeyPublic, dependencies=[require("keys:manage")])
def update_key(key_id: str, body: KeyUpdate, state: StateDep) -> KeyPublic:
    """Grant or withdraw the ``lead`` permission (``{"lead": true}``)."""
    with state.db.write() as session:
        updated = service.update_key(session, key_id, body)
    state.keys.forget()
    return updated


@router.get("/me", response_model=Me)
def me(who: CurrentKey) -> Me:
    """Who the presented key belongs to (any valid key); ``lead``: whether it decides
    cases whose reviewers disagreed (admins always do)."""
    tasks = sorted(who.tasks) if who.tasks is not None else None
    lead = quality.is_lead(who)
    return Me(id=who.id, name=who.name, role=who.role, lead=lead, tasks=tasks)  # type: ignore[arg-type]
