"""Webhook delivery from the outbox, in a background thread outside the request path.

Services write events into the ``webhook_event`` table in the transaction of the
change they report (:func:`api.services.webhooks.emit`). :class:`WebhookDispatcher`,
started in the app's lifespan, polls that table and POSTs each event, signed, to the
task's webhook URL:

- **at least once**: an event stays ``pending`` until a receiver answers 2xx; a crash
  or restart in between only means it is sent again (receivers deduplicate on the
  ``Tierline-Event-Id`` header);
- **in order per case**: only the oldest pending event of an ordering key (the case,
  or the task for task events) is ever attempted, so a later event of a case never
  overtakes an earlier one;
- **retried with backoff**: ``backoff * 2^(attempt-1)`` seconds (capped, jittered)
  for ``retry_seconds`` (a day by default), then ``failed`` (an admin may retry it);
- **recorded**: every attempt is a ``webhook_delivery`` row.

An attempt is claimed with a conditional ``UPDATE`` (``locked_until``), so several
processes over one database never send the same attempt twice. No transaction is
open while a receiver is called: a slow or dead receiver holds no lock and never
slows ``POST /cases``.
"""

from __future__ import annotations

import json
import logging
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import httpx
from sqlalchemy import func, update
from sqlmodel import col, select

from api.db import Database
from api.security import sign
from api.services.webhooks import event_id, webhook_secret
from api.tables import TaskWebhook, WebhookDelivery, WebhookEvent

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "Tierline-Signature"  # signed with the server's webhook secret
WEBHOOK_SIGNATURE_HEADER = "Tierline-Webhook-Signature"  # with the webhook's own secret
USER_AGENT = "tierline-webhooks/1"
LOCK_GRACE_SECONDS = 30.0
MAX_ERROR_CHARS = 500


def signature_header(body: bytes, secret: bytes, timestamp: int) -> str:
    """``t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>." + body>``.

    >>> signature_header(b'{"a":1}', b"s", 1700000000)
    't=1700000000,v1=ab7bd212df57f3ef4ea3c17d4a1a71d8981ef595d4cd699b62517c68d89192a2'
    """
    return f"t={timestamp},v1={sign(str(timestamp).encode() + b'.' + body, secret)}"


@dataclass(frozen=True)
class _Attempt:
    id: int
    task_id: int
    ordering_key: str
    type: str
    payload: dict
    attempts: int
    retry_since: float  # its creation, or an admin's retry since
    url: str | None
    secret_salt: str | None  # the webhook's own secret's (services.webhooks.webhook_secret)


class WebhookDispatcher:
    """Delivers pending webhook events; one per process, started and stopped by the app."""

    def __init__(
        self,
        db: Database,
        secret: bytes,
        *,
        backoff_seconds: float = 5.0,
        max_backoff_seconds: float = 600.0,
        retry_seconds: float = 86_400.0,
        timeout_seconds: float = 5.0,
        poll_seconds: float = 0.5,
        workers: int = 4,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.db = db
        self.secret = secret
        self.backoff_seconds = backoff_seconds
        self.max_backoff_seconds = max_backoff_seconds
        self.retry_seconds = retry_seconds
        self.timeout_seconds = timeout_seconds
        self.poll_seconds = poll_seconds
        self.workers = workers
        self._http = httpx.Client(
            timeout=timeout_seconds,
            follow_redirects=False,
            transport=transport,
            headers={"User-Agent": USER_AGENT, "Content-Type": "application/json"},
        )
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._inflight: set[str] = set()
        self._inflight_lock = threading.Lock()
        self._pool: ThreadPoolExecutor | None = None
        self._thread: threading.Thread | None = None

    # --- lifecycle ------------------------------------------------------------------------
    def start(self) -> None:
        self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="tierline-webhook")
        self._thread = threading.Thread(
            target=self._run, name="tierline-webhook-dispatcher", daemon=True
        )
        self._thread.start()

    def stop(self, timeout: float | None = None) -> None:
        """Stop polling, let attempts in flight finish (each is bounded by its timeout)."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout if timeout is not None else self.timeout_seconds + 5)
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
        self._http.close()

    def wake(self) -> None:
        """Look for due events now rather than at the next poll."""
        self._wake.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.dispatch()
            except Exception:  # the database may be away for a while: keep polling
                log.exception("webhook dispatcher: polling failed")
            self._wake.wait(self.poll_seconds)
            self._wake.clear()

    # --- one round --------------------------------------------------------------------------
    def dispatch(self, *, wait: bool = False) -> int:
        """Start an attempt for each due event at the head of its ordering key.

        Returns the number started; with ``wait`` (tests), returns once they are done.
        """
        with self._inflight_lock:
            busy = set(self._inflight)
        free = self.workers - len(busy)
        if free <= 0:
            return 0
        started: list[_Attempt] = []
        for attempt in self._due(time.time(), limit=free + len(busy)):
            if attempt.ordering_key in busy or len(started) >= free:
                continue
            if not self._claim(attempt):
                continue
            with self._inflight_lock:
                self._inflight.add(attempt.ordering_key)
            if self._pool is None or wait:
                self._attempt(attempt)
            else:
                self._pool.submit(self._attempt, attempt)
            started.append(attempt)
        return len(started)

    def _due(self, now: float, limit: int) -> list[_Attempt]:
        heads = (
            select(func.min(WebhookEvent.id))
            .where(WebhookEvent.status == "pending")
            .group_by(col(WebhookEvent.ordering_key))
        )
        with self.db.read() as session:
            rows = session.exec(
                select(WebhookEvent, TaskWebhook.url, TaskWebhook.secret_salt)
                .join(TaskWebhook, col(TaskWebhook.task_id) == WebhookEvent.task_id, isouter=True)
                .where(
                    col(WebhookEvent.id).in_(heads.scalar_subquery()),
                    col(WebhookEvent.next_attempt_at) <= now,
                    col(WebhookEvent.locked_until).is_(None)
                    | (col(WebhookEvent.locked_until) < now),
                )
                .order_by(col(WebhookEvent.id))
                .limit(limit)
            ).all()
        return [
            _Attempt(
                e.id,  # type: ignore[arg-type]
                e.task_id,
                e.ordering_key,
                e.type,
                e.payload,
                e.attempts,
                e.retry_since or e.created_at,
                url,
                salt,
            )
            for e, url, salt in rows
        ]

    def _claim(self, attempt: _Attempt) -> bool:
        """Take the attempt for this process (no other dispatcher will start it)."""
        now = time.time()
        until = now + self.timeout_seconds + LOCK_GRACE_SECONDS
        with self.db.write() as session:
            if attempt.url is None:  # the webhook was removed
                session.exec(  # type: ignore[call-overload]
                    update(WebhookEvent)
                    .where(col(WebhookEvent.id) == attempt.id)
                    .values(status="cancelled", last_error="webhook removed")
                )
                return False
            claimed = session.exec(  # type: ignore[call-overload]
                update(WebhookEvent)
                .where(
                    col(WebhookEvent.id) == attempt.id,
                    col(WebhookEvent.status) == "pending",
                    col(WebhookEvent.locked_until).is_(None)
                    | (col(WebhookEvent.locked_until) < now),
                )
                .values(locked_until=until)
            ).rowcount
        return claimed == 1

    def body_of(self, attempt: _Attempt) -> bytes:
        envelope = {"id": event_id(attempt.id), **attempt.payload}
        return json.dumps(envelope, separators=(",", ":"), sort_keys=True).encode()

    def _attempt(self, attempt: _Attempt) -> None:
        try:
            self._deliver(attempt)
        except Exception:
            log.exception("webhook event %s: recording the attempt failed", attempt.id)
        finally:
            with self._inflight_lock:
                self._inflight.discard(attempt.ordering_key)
            self._wake.set()

    def _deliver(self, attempt: _Attempt) -> None:
        assert attempt.url is not None
        body = self.body_of(attempt)
        number = attempt.attempts + 1
        now = int(time.time())
        headers = {
            SIGNATURE_HEADER: signature_header(body, self.secret, now),
            "Tierline-Event": attempt.type,
            "Tierline-Event-Id": event_id(attempt.id),
            "Tierline-Delivery-Attempt": str(number),
        }
        if attempt.secret_salt is not None:
            own = webhook_secret(self.secret, attempt.secret_salt).encode()
            headers[WEBHOOK_SIGNATURE_HEADER] = signature_header(body, own, now)
        started = time.time()
        status_code: int | None = None
        error: str | None = None
        try:
            response = self._http.post(attempt.url, content=body, headers=headers)
            status_code = response.status_code
            if not response.is_success:
                # the status only: a receiver's answer is not ours to show (an admin could
                # read an internal service's answers through it: SECURITY.md, webhooks)
                error = f"HTTP {status_code} {response.reason_phrase}".rstrip()
        except httpx.HTTPError as exc:
            error = f"{exc.__class__.__name__}: {exc}"[:MAX_ERROR_CHARS]
        finished = time.time()
        ok = error is None
        values: dict = {"attempts": number, "locked_until": None, "last_error": error}
        if ok:
            values.update(status="delivered", delivered_at=finished)
        elif finished - attempt.retry_since >= self.retry_seconds:
            values.update(status="failed")
            log.warning(
                "webhook event %s: giving up after %d attempts (%s)", attempt.id, number, error
            )
        else:
            values.update(next_attempt_at=finished + self.backoff(number))
        with self.db.write() as session:
            session.add(
                WebhookDelivery(
                    event_id=attempt.id,
                    task_id=attempt.task_id,
                    attempt=number,
                    url=attempt.url,
                    attempted_at=started,
                    duration_ms=round((finished - started) * 1000, 3),
                    status_code=status_code,
                    ok=ok,
                    error=error,
                )
            )
            session.exec(  # type: ignore[call-overload]
                update(WebhookEvent).where(col(WebhookEvent.id) == attempt.id).values(**values)
            )

    def backoff(self, attempt: int) -> float:
        """Seconds before the next try after failed attempt number ``attempt`` (1, 2, ...)."""
        ceiling = min(self.max_backoff_seconds, self.backoff_seconds * 2 ** (attempt - 1))
        return ceiling * random.uniform(0.8, 1.0)
