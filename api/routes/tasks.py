from fastapi import APIRouter

from api.deps import StateDep, require
from api.schemas import History, TaskCreate, TaskPublic, TasksPublic, TaskUpdate
from api.services import tasks as service

router = APIRouter(prefix="/v1/tasks", tags=["tasks"])


@router.post("", status_code=201, response_model=TaskPublic, dependencies=[require("tasks:write")])
def create_task(body: TaskCreate, state: StateDep) -> TaskPublic:
    with state.db.write() as session:
        task = service.create_task(session, body)
    return service.task_public(task, state.store)


@router.get("", response_model=TasksPublic, dependencies=[require("tasks:read")])
def list_tasks(state: StateDep) -> TasksPublic:
    with state.db.read() as session:
        return service.list_tasks(session, state.store)


@router.get("/{task}", response_model=TaskPublic, dependencies=[require("tasks:read")])
def get_task(task: str, state: StateDep) -> TaskPublic:
    with state.db.read() as session:
        row = service.get_task(session, task)
    return service.task_public(row, state.store)


@router.patch("/{task}", response_model=TaskPublic, dependencies=[require("tasks:write")])
def update_task(task: str, body: TaskUpdate, state: StateDep) -> TaskPublic:
    with state.db.write() as session:
        row = service.update_task(session, state.store, task, body)
    state.store.tasks.forget(task)
    return service.task_public(row, state.store)


@router.get("/{task}/history", response_model=History, dependencies=[require("metrics:read")])
def task_history(task: str, state: StateDep) -> History:
    with state.db.read() as session:
        return service.task_history(session, task)
