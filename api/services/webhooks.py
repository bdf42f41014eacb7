"""Webhooks: a task's URL and event filter, and the outbox the events are written to.

:func:`emit` is called by the other services inside the transaction that makes the
change an event reports (a label, a mode migration, a feedback report), so an event
exists if and only if its change was committed. Delivery happens later, outside the
request path, in :class:`api.outbox.WebhookDispatcher`.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from sqlalchemy import bindparam, update
from sqlalchemy import select as sa_select
from sqlmodel import Session, col, select

from api.errors import Conflict, NotFound
from api.schemas import (
    WEBHOOK_EVENT_TYPES,
    WebhookDeliveriesPublic,
    WebhookDeliveryPublic,
    WebhookEventPublic,
    WebhookEventsPublic,
    WebhookPublic,
    WebhookSet,
    iso,
)
from api.security import sign
from api.services import audit
from api.tables import Case, Routing, Task, TaskWebhook, WebhookDelivery, WebhookEvent

PING = "ping"  # sent on request by an admin, whatever the event filter
MAX_PAGE = 1000


def get_task(session: Session, name: str) -> Task:
    # (not services.tasks.get_task: that module emits events, so it imports this one)
    task = session.exec(select(Task).where(Task.name == name)).first()
    if task is None:
        raise NotFound(f"task {name!r} not found")
    return task


def event_id(row_id: int | None) -> str:
    """The public id of an event (also its idempotency key for receivers)."""
    return f"evt_{row_id}"


def parse_event_id(public_id: str) -> int:
    """The row id of ``evt_<id>``; any other text (other digits than ASCII, an id no
    64-bit column holds) names no event: 404.

    >>> parse_event_id("evt_42")
    42
    >>> parse_event_id("evt_\uff11")  # a full-width 1
    Traceback (most recent call last):
    ...
    api.errors.NotFound: webhook event 'evt_１' not found
    """
    digits = public_id.removeprefix("evt_")
    if not (digits.isascii() and digits.isdigit() and len(digits) <= 18):
        raise NotFound(f"webhook event {public_id!r} not found")
    return int(digits)


# --- emitting ---------------------------------------------------------------------------
_hooks = TaskWebhook.__table__  # type: ignore[attr-defined]
_HOOK_EVENTS = sa_select(_hooks.c.events).where(_hooks.c.task_id == bindparam("task"))


def emit(
    session: Session,
    task: Task,
    event_type: str,
    data: dict[str, Any] | Callable[[], dict[str, Any]],
    *,
    case_id: str | None = None,
    now: float | None = None,
) -> bool:
    """Write an event to the outbox when the task has a webhook that wants it.

    Runs inside the caller's transaction; returns whether an event was written. Events
    of one case (``case_id``) are delivered in the order written; task events share the
    task's own ordering key. ``data`` may be a function, called only when an event is
    written (most tasks have no webhook).
    """
    events = session.execute(_HOOK_EVENTS, {"task": task.id}).scalar_one_or_none()
    if events is None or (event_type != PING and event_type not in events):
        return False
    if callable(data):
        data = data()
    now = time.time() if now is None else now
    session.add(
        WebhookEvent(
            task_id=task.id,  # type: ignore[arg-type]
            type=event_type,
            case_id=case_id,
            ordering_key=case_id or f"task:{task.id}",
            payload={"type": event_type, "task": task.name, "created_at": iso(now), "data": data},
            created_at=now,
            next_attempt_at=now,
        )
    )
    return True


def case_data(task: Task, case: Case, routing: Routing, **extra: Any) -> dict[str, Any]:
    """An event's ``data``: the case as ``GET /v1/cases/{id}`` shows it (without features)."""
    from api.services.cases import case_public

    public = case_public(task, case, routing)
    public.update(label=case.label, labelled_by=case.labelled_by, labelled_at=iso(case.labelled_at))
    return {"case": public, **extra}


# --- settings ---------------------------------------------------------------------------
def _public(task: Task, hook: TaskWebhook, signing_secret: bytes) -> WebhookPublic:
    return WebhookPublic(
        task=task.name,
        url=hook.url,
        events=list(hook.events),
        created_at=iso(hook.created_at),
        updated_at=iso(hook.updated_at),
        secret=webhook_secret(signing_secret, hook.secret_salt) if hook.secret_salt else None,
    )


def shown_url(url: str) -> str:
    """A webhook URL as the audit trail records it: without the user information or the
    query, which often carry a receiver's token (analysts read the trail; only admins
    read webhooks).

    >>> shown_url("https://bot:s3cret@hooks.example/in?token=abc#x")
    'https://***@hooks.example/in?***'
    >>> shown_url("http://127.0.0.1:9000/hook")
    'http://127.0.0.1:9000/hook'
    """
    parts = urlsplit(url)
    _, at, host = parts.netloc.rpartition("@")
    netloc = f"***@{host}" if at else host
    return urlunsplit((parts.scheme, netloc, parts.path, "***" if parts.query else "", ""))


def webhook_secret(signing_secret: bytes, salt: str) -> str:
    """A webhook's own secret: derived from the server's webhook secret and the webhook's
    random salt, so that the database holds nothing a delivery is signed with.

    >>> webhook_secret(b"server", "00ff")[:14]
    'whsec_debac097'
    """
    return "whsec_" + sign(b"tierline-webhook:" + salt.encode(), signing_secret)


def set_webhook(
    session: Session, task_name: str, body: WebhookSet, signing_secret: bytes
) -> WebhookPublic:
    """Register (or replace) the task's webhook; pending events go to the new URL.

    A new webhook gets a secret of its own, and ``rotate_secret`` a new one
    (``signing_secret``: the server's webhook secret, which it is derived from).
    """
    task = get_task(session, task_name)
    now = time.time()
    events = list(dict.fromkeys(body.events or WEBHOOK_EVENT_TYPES))
    hook = session.get(TaskWebhook, task.id)
    before = None if hook is None else {"url": shown_url(hook.url), "events": list(hook.events)}
    if hook is None:
        hook = TaskWebhook(
            task_id=task.id,  # type: ignore[arg-type]
            url=body.url,
            events=events,
            created_at=now,
            updated_at=now,
        )
    else:
        hook.url, hook.events, hook.updated_at = body.url, events, now
    after: dict[str, Any] = {"url": shown_url(body.url), "events": events}
    if hook.secret_salt is None or body.rotate_secret:
        hook.secret_salt = secrets.token_hex(16)
        after["secret"] = "new"  # never the secret itself
    session.add(hook)
    audit.record(
        session, audit.acting(), "webhook.set", task=task, subject=task.name, before=before,
        after=after,
    )  # fmt: skip
    return _public(task, hook, signing_secret)


def get_webhook(session: Session, task_name: str, signing_secret: bytes) -> WebhookPublic:
    task = get_task(session, task_name)
    hook = session.get(TaskWebhook, task.id)
    if hook is None:
        raise NotFound(f"task {task_name!r} has no webhook")
    return _public(task, hook, signing_secret)


def delete_webhook(session: Session, task_name: str) -> None:
    """Remove the webhook; events not yet delivered are cancelled."""
    task = get_task(session, task_name)
    hook = session.get(TaskWebhook, task.id)
    if hook is None:
        raise NotFound(f"task {task_name!r} has no webhook")
    before = {"url": shown_url(hook.url), "events": list(hook.events)}
    session.delete(hook)
    session.exec(  # type: ignore[call-overload]
        update(WebhookEvent)
        .where(col(WebhookEvent.task_id) == task.id, col(WebhookEvent.status) == "pending")
        .values(status="cancelled", last_error="webhook removed")
    )
    audit.record(
        session, audit.acting(), "webhook.deleted", task=task, subject=task.name, before=before
    )


def ping(session: Session, task_name: str) -> WebhookEventPublic:
    """Queue a ``ping`` event, to check that the receiver answers and verifies."""
    task = get_task(session, task_name)
    if session.get(TaskWebhook, task.id) is None:
        raise NotFound(f"task {task_name!r} has no webhook")
    emit(session, task, PING, {"message": "ping from tierline"})
    session.flush()
    row = session.exec(
        select(WebhookEvent)
        .where(WebhookEvent.task_id == task.id, WebhookEvent.type == PING)
        .order_by(col(WebhookEvent.id).desc())
    ).first()
    assert row is not None
    return _event_public(task, row)


def retry_event(session: Session, task_name: str, public_id: str) -> WebhookEventPublic:
    """Send a failed or cancelled event again (it goes first among its case's events); a
    pending or delivered one is answered as it is (a repeated retry changes nothing)."""
    task = get_task(session, task_name)
    row = session.get(WebhookEvent, parse_event_id(public_id))
    if row is None or row.task_id != task.id:
        raise NotFound(f"webhook event {public_id!r} not found in task {task_name!r}")
    if row.status in ("failed", "cancelled"):
        if session.get(TaskWebhook, task.id) is None:
            raise Conflict(f"task {task_name!r} has no webhook to send it to")
        now = time.time()
        row.status, row.next_attempt_at, row.locked_until = "pending", now, None
        row.retry_since = now  # the retry window starts again (created_at stays)
        session.add(row)
        audit.record(
            session, audit.acting(), "webhook.retried", task=task, subject=task.name,
            after={"event": public_id},
        )  # fmt: skip
    return _event_public(task, row)


# --- reading ----------------------------------------------------------------------------
def _event_public(task: Task, row: WebhookEvent) -> WebhookEventPublic:
    return WebhookEventPublic(
        id=event_id(row.id),
        type=row.type,
        task=task.name,
        case_id=row.case_id,
        status=row.status,  # type: ignore[arg-type]
        attempts=row.attempts,
        created_at=iso(row.created_at),
        next_attempt_at=iso(row.next_attempt_at) if row.status == "pending" else None,
        delivered_at=iso(row.delivered_at),
        last_error=row.last_error,
        data=row.payload.get("data", {}),
    )


def list_events(
    session: Session, task_name: str, status: str | None, limit: int, before: int | None
) -> WebhookEventsPublic:
    """The task's events, newest first (``before``: an event row id, for paging)."""
    task = get_task(session, task_name)
    query = select(WebhookEvent).where(WebhookEvent.task_id == task.id)
    if status is not None:
        query = query.where(WebhookEvent.status == status)
    if before is not None:
        query = query.where(col(WebhookEvent.id) < before)
    rows = session.exec(query.order_by(col(WebhookEvent.id).desc()).limit(limit)).all()
    data = [_event_public(task, r) for r in rows]
    return WebhookEventsPublic(data=data, count=len(data))


def list_deliveries(
    session: Session, task_name: str, event: str | None, limit: int, before: int | None
) -> WebhookDeliveriesPublic:
    """Delivery attempts, newest first; ``event`` narrows them to one event."""
    task = get_task(session, task_name)
    query = (
        select(WebhookDelivery, WebhookEvent)
        .join(WebhookEvent, col(WebhookEvent.id) == WebhookDelivery.event_id)
        .where(WebhookDelivery.task_id == task.id)
    )
    if event is not None:
        query = query.where(WebhookDelivery.event_id == parse_event_id(event))
    if before is not None:
        query = query.where(col(WebhookDelivery.id) < before)
    rows = session.exec(query.order_by(col(WebhookDelivery.id).desc()).limit(limit)).all()
    data = [
        WebhookDeliveryPublic(
            id=d.id,  # type: ignore[arg-type]
            event_id=event_id(e.id),
            type=e.type,
            case_id=e.case_id,
            attempt=d.attempt,
            url=d.url,
            attempted_at=iso(d.attempted_at),
            duration_ms=d.duration_ms,
            status_code=d.status_code,
            ok=d.ok,
            error=d.error,
        )
        for d, e in rows
    ]
    return WebhookDeliveriesPublic(data=data, count=len(data))
