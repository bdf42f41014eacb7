from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Query

from api.deps import StateDep, require
from api.schemas import MAX_ID, AuditPage
from api.security import Principal
from api.services import audit as service

router = APIRouter(prefix="/v1", tags=["audit"])


@router.get("/audit", response_model=AuditPage)
def list_audit(
    state: StateDep,
    who: Annotated[Principal, require("audit:read")],
    task: Annotated[str | None, Query(max_length=64)] = None,
    action: Annotated[str | None, Query(max_length=32, description="e.g. case.routed")] = None,
    actor: Annotated[str | None, Query(max_length=128, description="key id or name")] = None,
    subject: Annotated[str | None, Query(max_length=64, description="case, key or task")] = None,
    since: datetime | None = None,
    until: datetime | None = None,
    before: Annotated[
        int | None, Query(ge=1, le=MAX_ID, description="page: rows older than this id")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=service.MAX_PAGE)] = 100,
) -> AuditPage:
    """The audit trail, newest first, with filters; page on with ``before=next_before``."""
    with state.db.read() as session:
        return service.list_audit(
            session,
            task=task,
            action=action,
            actor=actor,
            subject=subject,
            since=_epoch(since),
            until=_epoch(until),
            before=before,
            limit=limit,
            tasks_in_scope=who.tasks,
            with_keys=who.can("keys:manage"),  # keys are admin-only, so are their rows
        )


def _epoch(moment: datetime | None) -> float | None:
    """Seconds since the epoch; a time without a zone is UTC (as every time we answer)."""
    if moment is None:
        return None
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()
