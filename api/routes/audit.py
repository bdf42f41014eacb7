from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query

from api.deps import StateDep, require
from api.schemas import AuditPage
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
    before: Annotated[int | None, Query(ge=1, description="page: rows older than this id")] = None,
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
            since=since.timestamp() if since else None,
            until=until.timestamp() if until else None,
            before=before,
            limit=limit,
            tasks_in_scope=who.tasks,
        )
