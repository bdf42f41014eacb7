from collections import Counter
from functools import partial
from typing import Annotated

import orjson
from fastapi import APIRouter, Response
from fastapi.concurrency import run_in_threadpool

from api.deps import StateDep, require
from api.schemas import (
    CaseBatch,
    CaseBatchResult,
    CaseCreate,
    CaseDetail,
    CasePublic,
    Prediction,
    PredictRequest,
)
from api.security import Principal
from api.services import cases as service
from api.services import privacy

router = APIRouter(prefix="/v1", tags=["cases"])


@router.post(
    "/tasks/{task}/cases",
    status_code=201,
    response_model=CasePublic,
    dependencies=[require("cases:write")],
    responses={200: {"model": CasePublic, "description": "repeat of an external_id"}},
)
async def submit_case(task: str, body: CaseCreate, state: StateDep, response: Response) -> dict:
    limit = state.settings.max_string_length
    created = True
    case = await service.submit_case_ready(state.db, state.store, task, body, limit)
    if case is None:  # needs the database first: in the threadpool
        [(case, created)] = await run_in_threadpool(
            partial(service.submit_cases, max_string_length=limit),
            state.db,
            state.store,
            task,
            [body],
        )
    if created:
        state.instruments.cases.labels(task, case["route"]).inc()
    else:
        response.status_code = 200
    return case


@router.post(
    "/tasks/{task}/cases/batch",
    response_model=CaseBatchResult,
    dependencies=[require("cases:write")],
)
def submit_batch(task: str, body: CaseBatch, state: StateDep) -> Response:
    results = service.submit_cases(
        state.db,
        state.store,
        task,
        body.cases,
        max_string_length=state.settings.max_string_length,
        batch=True,
    )
    routed = Counter(case["route"] for case, created in results if created)
    for route, n in routed.items():  # one increment per route, not per case
        state.instruments.cases.labels(task, route).inc(n)
    # the answers are plain dicts from validated rows (CaseBatchResult documents them):
    # serialised at once, not validated again into 1,000 models
    answer = orjson.dumps({"results": [case for case, _ in results]})
    return Response(answer, media_type="application/json")


@router.post(
    "/tasks/{task}/predict", response_model=Prediction, dependencies=[require("cases:write")]
)
async def predict(task: str, body: PredictRequest, state: StateDep) -> Prediction:
    # scoring is CPU work on an in-memory model: on the event loop it saves two
    # threadpool hops; the database (a settings refresh, a first load) stays off the loop
    limit = state.settings.max_string_length
    prediction = service.predict_ready(state.store, task, body.features, limit)
    if prediction is None:
        prediction = await run_in_threadpool(
            service.predict, state.db, state.store, task, body.features, limit
        )
    return prediction


@router.get("/cases/{case_id}", response_model=CaseDetail)
def get_case(
    case_id: str, state: StateDep, who: Annotated[Principal, require("cases:read")]
) -> CaseDetail:
    return service.get_case(state.db, state.store, case_id, who)


@router.delete("/cases/{case_id}", status_code=204)
def erase_case(
    case_id: str, state: StateDep, who: Annotated[Principal, require("cases:erase")]
) -> Response:
    """Delete the case's features on request (admin); the audit trail keeps them redacted."""
    privacy.erase_case(state.db, state.store, case_id, who)
    return Response(status_code=204)
