"""Label quality: reviewer figures, agreement between reviewers, gold cases."""

from fastapi import APIRouter

from api.deps import StateDep, require
from api.schemas import AgreementPublic, GoldBatch, GoldsPublic, ReviewersPublic
from api.services import quality as service
from api.services.tasks import get_task

router = APIRouter(prefix="/v1/tasks", tags=["quality"])


@router.get(
    "/{task}/reviewers", response_model=ReviewersPublic, dependencies=[require("quality:read")]
)
def reviewers(task: str, state: StateDep) -> ReviewersPublic:
    """Per reviewer: agreement with final labels, audits and gold; labels/hour; time/case."""
    with state.db.read() as session:
        return service.reviewers(session, get_task(session, task))


@router.get(
    "/{task}/agreement", response_model=AgreementPublic, dependencies=[require("metrics:read")]
)
def agreement(task: str, state: StateDep) -> AgreementPublic:
    """Raw agreement, Cohen's and Fleiss' kappa and the confusion matrix between reviewers."""
    with state.db.read() as session:
        return service.agreement(session, get_task(session, task))


@router.post(
    "/{task}/gold",
    status_code=201,
    response_model=GoldsPublic,
    dependencies=[require("tasks:write")],
)
def create_gold(task: str, body: GoldBatch, state: StateDep) -> GoldsPublic:
    """Add gold cases (known labels), mixed into the queue at the task's ``gold_rate``."""
    return service.create_gold(state.db, state.store, task, body)


@router.get("/{task}/gold", response_model=GoldsPublic, dependencies=[require("tasks:write")])
def list_gold(task: str, state: StateDep) -> GoldsPublic:
    with state.db.read() as session:
        return service.list_gold(session, get_task(session, task))
