from typing import Annotated, Literal

from fastapi import APIRouter, Query, Response

from api.deps import StateDep, require
from api.schemas import (
    MAX_ID,
    WebhookDeliveriesPublic,
    WebhookEventPublic,
    WebhookEventsPublic,
    WebhookPublic,
    WebhookSet,
)
from api.services import webhooks as service

router = APIRouter(
    prefix="/v1/tasks/{task}/webhook", tags=["webhooks"], dependencies=[require("webhooks:manage")]
)

Limit = Annotated[int, Query(ge=1, le=service.MAX_PAGE)]
Before = Annotated[
    int | None, Query(ge=1, le=MAX_ID, description="page: only rows with a smaller id")
]


@router.put("", response_model=WebhookPublic)
def set_webhook(task: str, body: WebhookSet, state: StateDep) -> WebhookPublic:
    """Register or replace the task's webhook (``events`` defaults to every event type).

    The answer carries the webhook's own secret; ``rotate_secret`` replaces it."""
    with state.db.write() as session:
        return service.set_webhook(session, task, body, state.settings.webhook_signing_secret)


@router.get("", response_model=WebhookPublic)
def get_webhook(task: str, state: StateDep) -> WebhookPublic:
    with state.db.read() as session:
        return service.get_webhook(session, task, state.settings.webhook_signing_secret)


@router.delete("", status_code=204)
def delete_webhook(task: str, state: StateDep) -> Response:
    """Remove the webhook; events not yet delivered are cancelled."""
    with state.db.write() as session:
        service.delete_webhook(session, task)
    return Response(status_code=204)


@router.post("/ping", status_code=202, response_model=WebhookEventPublic)
def ping(task: str, state: StateDep) -> WebhookEventPublic:
    """Queue a signed ``ping`` event to the webhook."""
    with state.db.write() as session:
        event = service.ping(session, task)
    state.wake_webhooks()
    return event


@router.get("/events", response_model=WebhookEventsPublic)
def list_events(
    task: str,
    state: StateDep,
    status: Literal["pending", "delivered", "failed", "cancelled"] | None = None,
    limit: Limit = 100,
    before: Before = None,
) -> WebhookEventsPublic:
    """The task's events, newest first, with their delivery status and attempt count."""
    with state.db.read() as session:
        return service.list_events(session, task, status, limit, before)


@router.post("/events/{event_id}/retry", response_model=WebhookEventPublic)
def retry_event(task: str, event_id: str, state: StateDep) -> WebhookEventPublic:
    """Send a failed or cancelled event again."""
    with state.db.write() as session:
        event = service.retry_event(session, task, event_id)
    state.wake_webhooks()
    return event


@router.get("/deliveries", response_model=WebhookDeliveriesPublic)
def list_deliveries(
    task: str,
    state: StateDep,
    event: str | None = None,
    limit: Limit = 100,
    before: Before = None,
) -> WebhookDeliveriesPublic:
    """Every delivery attempt (status code, error, duration), newest first."""
    with state.db.read() as session:
        return service.list_deliveries(session, task, event, limit, before)
