from fastapi import APIRouter, Response

from api.deps import CurrentKey, StateDep, require
from api.schemas import KeyCreate, KeyCreated, KeysPublic, Me
from api.services import keys as service

router = APIRouter(prefix="/v1", tags=["keys"])


@router.post(
    "/keys", status_code=201, response_model=KeyCreated, dependencies=[require("keys:manage")]
)
def create_key(body: KeyCreate, state: StateDep) -> KeyCreated:
    with state.db.write() as session:
        return service.create_key(session, body)


@router.get("/keys", response_model=KeysPublic, dependencies=[require("keys:manage")])
def list_keys(state: StateDep) -> KeysPublic:
    with state.db.read() as session:
        return service.list_keys(session)


@router.delete("/keys/{key_id}", status_code=204, dependencies=[require("keys:manage")])
def revoke_key(key_id: str, state: StateDep) -> Response:
    with state.db.write() as session:
        service.revoke_key(session, key_id)
    state.keys.forget()
    return Response(status_code=204)


@router.get("/me", response_model=Me)
def me(who: CurrentKey) -> Me:
    """Who the presented key belongs to (any valid key)."""
    return Me(id=who.id, name=who.name, role=who.role)  # type: ignore[arg-type]
