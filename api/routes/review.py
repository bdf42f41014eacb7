from functools import partial

from fastapi import APIRouter, Response
from fastapi.concurrency import run_in_threadpool

from api.deps import Reviewer, StateDep, require
from api.schemas import (
    CaseDetail,
    Claim,
    ClaimRequest,
    Correction,
    LabelCreate,
    QueueStatus,
    Release,
)
from api.services import metrics
from api.services import review as service

router = APIRouter(prefix="/v1", tags=["review"])


@router.get("/tasks/{task}/queue", response_model=QueueStatus, dependencies=[require("tasks:read")])
async def queue_status(task: str, state: StateDep) -> QueueStatus:
    """The backlog and automated share: the review page's counter (reviewers do not read
    the task metrics)."""
    return await run_in_threadpool(metrics.queue_status, state.db, task)


@router.post(
    "/tasks/{task}/queue/claim",
    response_model=Claim,
    responses={204: {"description": "nothing is waiting"}},
)
async def claim(
    task: str, state: StateDep, who: Reviewer, body: ClaimRequest | None = None
) -> Claim | Response:
    # async with one explicit threadpool hop: a sync route pays a second one to
    # validate its response
    claimed = await run_in_threadpool(
        partial(
            service.claim_next,
            exclude=body.exclude if body else (),
            resume=body.resume if body else False,
        ),
        state.db,
        state.store,
        task,
        who,
        state.settings.lease_seconds,
    )
    return claimed if claimed is not None else Response(status_code=204)


@router.post("/cases/{case_id}/label", response_model=CaseDetail)
async def label(case_id: str, body: LabelCreate, state: StateDep, who: Reviewer) -> CaseDetail:
    return await run_in_threadpool(
        service.label_case, state.db, state.store, case_id, body, who
    )  # one hop, as for claims


@router.post("/cases/{case_id}/correct", response_model=CaseDetail)
def correct(case_id: str, body: Correction, state: StateDep, who: Reviewer) -> CaseDetail:
    return service.correct_label(state.db, state.store, case_id, body, who)


@router.post("/cases/{case_id}/release", status_code=204)
def release(case_id: str, body: Release, state: StateDep, who: Reviewer) -> Response:
    service.release_case(state.db, case_id, body.lease_id, who)
    return Response(status_code=204)
