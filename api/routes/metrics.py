from fastapi import APIRouter

from api.deps import StateDep, require
from api.schemas import Curve, Metrics
from api.services import metrics as service

router = APIRouter(prefix="/v1/tasks", tags=["metrics"])


@router.get("/{task}/metrics", response_model=Metrics, dependencies=[require("metrics:read")])
def task_metrics(task: str, state: StateDep) -> Metrics:
    return service.task_metrics(state.db, state.store, task)


@router.get("/{task}/curve", response_model=Curve, dependencies=[require("metrics:read")])
def task_curve(task: str, state: StateDep) -> Curve:
    return service.task_curve(state.db, task)
