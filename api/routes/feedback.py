from fastapi import APIRouter, Response

from api.deps import CurrentKey, StateDep, require
from api.schemas import FeedbackCreate, FeedbackPublic, FeedbacksPublic
from api.services import feedback as service

router = APIRouter(prefix="/v1/cases", tags=["feedback"])


@router.post(
    "/{case_id}/feedback",
    status_code=201,
    response_model=FeedbackPublic,
    dependencies=[require("cases:write")],
    responses={200: {"model": FeedbackPublic, "description": "repeat of an external_id"}},
)
def give_feedback(
    case_id: str, body: FeedbackCreate, state: StateDep, who: CurrentKey, response: Response
) -> FeedbackPublic:
    """A downstream outcome for a decided case: learned, counted, announced; not evidence."""
    feedback, created = service.record_feedback(state.db, state.store, case_id, body, who)
    if not created:
        response.status_code = 200
    return feedback


@router.get(
    "/{case_id}/feedback", response_model=FeedbacksPublic, dependencies=[require("cases:read")]
)
def list_feedback(case_id: str, state: StateDep) -> FeedbacksPublic:
    return service.list_feedback(state.db, state.store, case_id)
