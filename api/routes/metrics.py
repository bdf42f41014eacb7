from typing import Annotated

from fastapi import APIRouter, Query

from api.deps import StateDep, require
from api.schemas import Curve, Metrics
from api.services import metrics as service

router = APIRouter(prefix="/v1/tasks", tags=["metrics"])


@router.get("/{task}/metrics", response_model=Metrics, dependencies=[require("metrics:read")])
def task_metrics(task: str, state: StateDep) -> Metrics:
    return service.task_metrics(state.db, state.store, task)


@router.get("/{task}/curve", response_model=Curve, dependencies=[require("metrics:read")])
def task_curve(
    task: str,
    state: StateDep,
    after: Annotated[
        int | None, Query(ge=0, description="only points past this many labels (paging)")
    ] = None,
    limit: Annotated[int | None, Query(ge=1, le=10_000, description="at most this many")] = None,
) -> Curve:
    return service.task_curve(state.db, task, after=after, limit=limit)
