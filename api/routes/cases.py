from fastapi import APIRouter, Response

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
from api.services import cases as service

router = APIRouter(prefix="/v1", tags=["cases"])


@router.post(
    "/tasks/{task}/cases",
    status_code=201,
    response_model=CasePublic,
    dependencies=[require("cases:write")],
    responses={200: {"model": CasePublic, "description": "repeat of an external_id"}},
)
def submit_case(task: str, body: CaseCreate, state: StateDep, response: Response) -> CasePublic:
    [(case, created)] = service.submit_cases(
        state.db,
        state.store,
        task,
        [body],
        max_string_length=state.settings.max_string_length,
    )
    if created:
        state.instruments.cases.labels(task, case.route).inc()
    else:
        response.status_code = 200
    return case


@router.post(
    "/tasks/{task}/cases/batch",
    response_model=CaseBatchResult,
    dependencies=[require("cases:write")],
)
def submit_batch(task: str, body: CaseBatch, state: StateDep) -> CaseBatchResult:
    results = service.submit_cases(
        state.db,
        state.store,
        task,
        body.cases,
        max_string_length=state.settings.max_string_length,
    )
    for case, created in results:
        if created:
            state.instruments.cases.labels(task, case.route).inc()
    return CaseBatchResult(results=[case for case, _ in results])


@router.post(
    "/tasks/{task}/predict", response_model=Prediction, dependencies=[require("cases:write")]
)
def predict(task: str, body: PredictRequest, state: StateDep) -> Prediction:
    return service.predict(
        state.db, state.store, task, body.features, state.settings.max_string_length
    )


@router.get("/cases/{case_id}", response_model=CaseDetail, dependencies=[require("cases:read")])
def get_case(case_id: str, state: StateDep) -> CaseDetail:
    return service.get_case(state.db, state.store, case_id)
