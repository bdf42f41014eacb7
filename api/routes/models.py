from typing import Annotated

from fastapi import APIRouter, Path

from api.deps import StateDep, require
from api.schemas import MAX_ID, ModelsPublic
from api.security import Principal
from api.services import models as service

router = APIRouter(prefix="/v1/tasks/{task}/models", tags=["models"])


@router.get("", response_model=ModelsPublic, dependencies=[require("models:read")])
def list_models(task: str, state: StateDep) -> ModelsPublic:
    """The task's model snapshots (the versions one can activate) and the active version."""
    with state.db.read() as session:
        return service.list_models(session, state.store, task)


@router.post("/{version}/activate", response_model=ModelsPublic)
def activate_model(
    task: str,
    version: Annotated[int, Path(ge=0, le=MAX_ID)],
    state: StateDep,
    who: Annotated[Principal, require("models:manage")],
) -> ModelsPublic:
    """Roll the task's model back (or forward) to a kept, signed snapshot of ``version``."""
    return service.activate(state.db, state.store, task, version, who)
