from functools import partial
from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.concurrency import run_in_threadpool

from api.deps import StateDep, require
from api.schemas import MAX_ID, Curve, Metrics
from api.services import metrics as service

router = APIRouter(prefix="/v1/tasks", tags=["metrics"])


@router.get("/{task}/metrics", response_model=Metrics, dependencies=[require("metrics:read")])
async def task_metrics(task: str, state: StateDep) -> Metrics:
    # async with one explicit threadpool hop (a sync route pays a second one to validate
    # its response): dashboards poll these
    return await run_in_threadpool(service.task_metrics, state.db, state.store, task)


@router.get("/{task}/curve", response_model=Curve, dependencies=[require("metrics:read")])
async def task_curve(
    task: str,
    state: StateDep,
    after: Annotated[
        int | None, Query(ge=0, le=MAX_ID, description="only points past this many labels (paging)")
    ] = None,
    limit: Annotated[int | None, Query(ge=1, le=10_000, description="at most this many")] = None,
) -> Curve:
    return await run_in_threadpool(
        partial(service.task_curve, after=after, limit=limit), state.db, task
    )
