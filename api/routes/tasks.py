from typing import Annotated

from fastapi import APIRouter, HTTPException

from api.deps import StateDep, require
from api.schemas import History, TaskCreate, TaskPublic, TasksPublic, TaskUpdate
from api.security import Principal
from api.services import tasks as service

router = APIRouter(prefix="/v1/tasks", tags=["tasks"])


@router.post("", status_code=201, response_model=TaskPublic)
def create_task(
    body: TaskCreate, state: StateDep, who: Annotated[Principal, require("tasks:write")]
) -> TaskPublic:
    if not who.may_use(body.name):  # a scoped admin creates only the tasks of its scope
        raise HTTPException(403, f"this key is not scoped to task {body.name!r}")
    with state.db.write() as session:
        task = service.create_task(session, body, who)
    return service.task_public(task, state.store)


@router.get("", response_model=TasksPublic)
def list_tasks(state: StateDep, who: Annotated[Principal, require("tasks:read")]) -> TasksPublic:
    with state.db.read() as session:
        listed = service.list_tasks(session, state.store)
    if who.tasks is not None:  # a scoped key sees its own tasks only
        listed.data = [t for t in listed.data if who.may_use(t.name)]
        listed.count = len(listed.data)
    return listed


@router.get("/{task}", response_model=TaskPublic, dependencies=[require("tasks:read")])
def get_task(task: str, state: StateDep) -> TaskPublic:
    with state.db.read() as session:
        row = service.get_task(session, task)
    return service.task_public(row, state.store)


@router.patch("/{task}", response_model=TaskPublic)
def update_task(
    task: str,
    body: TaskUpdate,
    state: StateDep,
    who: Annotated[Principal, require("tasks:write")],
) -> TaskPublic:
    with state.db.write() as session:
        row = service.update_task(session, state.store, task, body, who)
    state.store.tasks.forget(task)
    return service.task_public(row, state.store)


@router.get("/{task}/history", response_model=History, dependencies=[require("metrics:read")])
def task_history(task: str, state: StateDep) -> History:
    with state.db.read() as session:
        return service.task_history(session, task)
