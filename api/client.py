"""Python client for the tierline HTTP API (v1).

One synchronous :class:`TierlineClient` wraps every route in CONTRACT.md and returns plain
dicts. It reuses one connection pool, retries 429/503 with exponential backoff that honours
``Retry-After``, retries connection failures only where a repeat is harmless, and turns
error answers into :class:`TierlineError` subclasses with a readable message.

This module imports nothing from the server, so services, notebooks and the review UI
can use it alone::

    with TierlineClient(key="tl_...") as tl:
        case = tl.send_case(
            "claims", {"amount": 120.0, "country": "fr", "note": "hail", "vip": False}
        )
"""

from __future__ import annotations

import email.utils
import hashlib
import hmac
import json
import logging
import os
import random
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypedDict
from urllib.parse import quote

import httpx

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "BATCH_LIMIT",
    "DEFAULT_API_URL",
    "Claim",
    "Conflict",
    "Forbidden",
    "InvalidInput",
    "KeyCreated",
    "Me",
    "NotFound",
    "PayloadTooLarge",
    "RateLimited",
    "TierlineClient",
    "TierlineError",
    "Unauthorized",
    "Unavailable",
    "cases_frame",
    "curve_frame",
    "format_detail",
    "labels_frame",
    "metrics_frame",
    "to_dataframe",
    "verify_webhook",
]

logger = logging.getLogger(__name__)

DEFAULT_API_URL = "http://127.0.0.1:8000"
BATCH_LIMIT = 1000
USER_AGENT = "tierline-client/0.1"

_RETRY_ALWAYS = {429, 503}  # the server did not act on the request
_RETRY_IF_IDEMPOTENT = {502, 504}  # a proxy gave up; the request may have been acted on
_MAX_BACKOFF = 30.0

JSON = dict[str, Any]


class Me(TypedDict):
    id: str
    name: str
    role: str


class KeyCreated(TypedDict):
    id: str
    name: str
    role: str
    key: str


class Claim(TypedDict):
    case: JSON
    lease_id: str
    lease_expires_at: str | None


# --- errors -----------------------------------------------------------------------------
class TierlineError(Exception):
    """An error answer from the API (``status`` is ``None`` when none arrived)."""

    def __init__(
        self, status: int | None, detail: Any, *, retry_after: float | None = None
    ) -> None:
        self.status = status
        self.detail = detail
        self.retry_after = retry_after
        self.message = format_detail(detail)
        super().__init__(self.message if status is None else f"{status}: {self.message}")


class Unauthorized(TierlineError):
    """401: no key, or an unknown or revoked key."""


class Forbidden(TierlineError):
    """403: the key's role lacks the right."""


class NotFound(TierlineError):
    """404: unknown task, case or key."""


class Conflict(TierlineError):
    """409: task exists, or the lease is not held or has expired."""


class PayloadTooLarge(TierlineError):
    """413: body too large."""


class InvalidInput(TierlineError):
    """422: invalid input; the message names the field."""


class RateLimited(TierlineError):
    """429: too many requests (after the client's retries)."""


class Unavailable(TierlineError):
    """503, 502/504, or no answer at all (after the client's retries)."""


_ERRORS: dict[int, type[TierlineError]] = {
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    413: PayloadTooLarge,
    422: InvalidInput,
    429: RateLimited,
    502: Unavailable,
    503: Unavailable,
    504: Unavailable,
}

_LOC_PREFIXES = {"body", "query", "path", "header", "cookie"}


def format_detail(detail: Any) -> str:
    """Make an API ``detail`` readable; FastAPI's 422 lists become ``field.path: msg``.

    >>> format_detail([{"loc": ["body", "features", "amount"], "msg": "expected a number"}])
    'features.amount: expected a number'
    >>> format_detail("task claims exists")
    'task claims exists'
    """
    if detail is None:
        return "no detail given"
    if isinstance(detail, str):
        return detail
    if isinstance(detail, list):
        return "; ".join(_format_item(item) for item in detail) or "no detail given"
    if isinstance(detail, Mapping):
        return _format_item(detail)
    return str(detail)


def _format_item(item: Any) -> str:
    if not isinstance(item, Mapping):
        return str(item)
    loc = list(item.get("loc") or [])
    if loc and loc[0] in _LOC_PREFIXES:
        loc = loc[1:]
    msg = str(item.get("msg") or item.get("message") or item.get("detail") or item)
    field = ".".join(str(part) for part in loc)
    return f"{field}: {msg}" if field else msg


def _retry_after(response: httpx.Response) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (seconds or an HTTP date)."""
    value = response.headers.get("Retry-After")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _error_from(response: httpx.Response) -> TierlineError:
    try:
        body = response.json()
        detail = body.get("detail", body) if isinstance(body, Mapping) else body
    except ValueError:
        detail = response.text or response.reason_phrase
    cls = _ERRORS.get(response.status_code, TierlineError)
    return cls(response.status_code, detail, retry_after=_retry_after(response))


def _sleep(seconds: float) -> None:
    """Wait between retries (a seam for tests)."""
    time.sleep(seconds)


def _p(value: str) -> str:
    return quote(str(value), safe="")


# --- client -----------------------------------------------------------------------------
class TierlineClient:
    """Synchronous client for the tierline API.

    Parameters
    ----------
    base_url
        Where the API runs; defaults to ``$TIERLINE_API_URL`` or ``http://127.0.0.1:8000``.
    key
        API key sent as a bearer token; defaults to ``$TIERLINE_API_KEY``.
    timeout
        Seconds per request.
    max_retries
        Retries after the first attempt on 429/503 (and connection failures when safe).
    transport
        Optional httpx transport (e.g. ``httpx.MockTransport`` in tests).
    """

    def __init__(
        self,
        base_url: str | None = None,
        key: str | None = None,
        *,
        timeout: float = 10.0,
        max_retries: int = 5,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.base_url = base_url or os.environ.get("TIERLINE_API_URL") or DEFAULT_API_URL
        self.base_url = self.base_url.rstrip("/")
        key = key if key is not None else os.environ.get("TIERLINE_API_KEY")
        self.max_retries = max(0, int(max_retries))
        self.backoff_base = 0.5
        headers = {"User-Agent": USER_AGENT, "Accept": "application/json"}
        if key:
            headers["Authorization"] = f"Bearer {key}"
        self._http = httpx.Client(
            base_url=self.base_url, headers=headers, timeout=timeout, transport=transport
        )

    # -- lifecycle
    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    def __enter__(self) -> TierlineClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"TierlineClient({self.base_url!r})"

    # -- plumbing
    def _backoff(self, attempt: int) -> float:
        """Exponential backoff with jitter: uniform in [½, 1] × base·2^attempt."""
        ceiling = min(_MAX_BACKOFF, self.backoff_base * 2**attempt)
        return ceiling * random.uniform(0.5, 1.0)

    def _request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: Mapping[str, Any] | None = None,
        idempotent: bool | None = None,
        max_retries: int | None = None,
    ) -> Any:
        """Send one call with retries; the decoded JSON body, or ``None`` for 204."""
        if idempotent is None:
            idempotent = method in ("GET", "HEAD", "OPTIONS", "DELETE")
        retries = self.max_retries if max_retries is None else max_retries
        attempt = 0
        while True:
            try:
                response = self._http.request(method, path, json=json, params=params)
            except ValueError as exc:  # NaN or infinity: JSON has no such numbers
                raise InvalidInput(None, f"not sendable as JSON: {exc}") from exc
            except httpx.TransportError as exc:
                # Timeouts after sending may have reached the server: repeat only safe calls.
                if idempotent and attempt < retries:
                    delay = self._backoff(attempt)
                    logger.warning(
                        "%s %s failed (%s); retry %d/%d in %.1fs",
                        method,
                        path,
                        exc.__class__.__name__,
                        attempt + 1,
                        retries,
                        delay,
                    )
                    _sleep(delay)
                    attempt += 1
                    continue
                raise Unavailable(
                    None, f"cannot reach the tierline API at {self.base_url} ({exc})"
                ) from exc
            status = response.status_code
            retryable = status in _RETRY_ALWAYS or (idempotent and status in _RETRY_IF_IDEMPOTENT)
            if retryable and attempt < retries:
                wait = _retry_after(response)
                delay = self._backoff(attempt)
                if wait is not None:
                    delay = max(wait, delay)
                logger.warning(
                    "%s %s answered %d; retry %d/%d in %.1fs",
                    method,
                    path,
                    status,
                    attempt + 1,
                    retries,
                    delay,
                )
                _sleep(delay)
                attempt += 1
                continue
            if status >= 400:
                raise _error_from(response)
            if status == 204 or not response.content:
                return None
            try:
                return response.json()
            except ValueError as exc:
                raise TierlineError(
                    status, f"the API answered with non-JSON: {response.text[:200]!r}"
                ) from exc

    def _get(self, path: str, **kwargs: Any) -> Any:
        return self._request("GET", path, **kwargs)

    def _post(self, path: str, body: Any = None, **kwargs: Any) -> Any:
        return self._request("POST", path, json=body, **kwargs)

    # -- identity and keys
    def me(self) -> Me:
        """Who this key belongs to: ``{"id", "name", "role"}``."""
        return self._get("/v1/me")

    def create_key(
        self, name: str, role: str, *, lead: bool = False, tasks: Sequence[str] | None = None
    ) -> KeyCreated:
        """Create a key (admin); the secret ``key`` is only in this answer. ``lead``: it may
        decide cases whose reviewers disagreed; ``tasks``: the only tasks it may act on."""
        body: dict[str, Any] = {"name": name, "role": role}
        if lead:
            body["lead"] = True
        if tasks is not None:
            body["tasks"] = list(tasks)
        return self._post("/v1/keys", body)

    def list_keys(self) -> list[JSON]:
        """All keys (admin), without their secrets."""
        return self._get("/v1/keys")["data"]

    def revoke_key(self, key_id: str) -> None:
        """Revoke a key (admin)."""
        self._request("DELETE", f"/v1/keys/{_p(key_id)}")

    def rotate_key(self, key_id: str, grace_seconds: float = 3600.0) -> JSON:
        """A new key replacing ``key_id`` (admin); the old one works ``grace_seconds`` more."""
        return self._post(f"/v1/keys/{_p(key_id)}/rotate", {"grace_seconds": grace_seconds})

    # -- governance
    def audit(self, limit: int = 100, before: int | None = None, **filters: Any) -> JSON:
        """A page of the audit trail, newest first (admin, analyst): ``{"data", "count",
        "next_before"}``; filters ``task``, ``action``, ``actor``, ``subject``, ``since``,
        ``until``."""
        params = {k: v for k, v in {**filters, "limit": limit, "before": before}.items() if v}
        return self._get("/v1/audit", params=params)

    def models(self, task: str) -> JSON:
        """The task's model snapshots and active version (admin, analyst)."""
        return self._get(f"/v1/tasks/{_p(task)}/models")

    def activate_model(self, task: str, version: int) -> JSON:
        """Roll the task's model back to a kept snapshot of ``version`` (admin)."""
        return self._post(f"/v1/tasks/{_p(task)}/models/{int(version)}/activate")

    def erase_case(self, case_id: str) -> None:
        """Delete a case's features on request (admin); the trail keeps them redacted."""
        self._request("DELETE", f"/v1/cases/{_p(case_id)}")

    # -- tasks
    def create_task(
        self,
        name: str,
        labels: list[str],
        features: Mapping[str, str] | None = None,
        **settings: Any,
    ) -> JSON:
        """Create a task (admin); ``settings`` e.g. ``target_error``, ``threshold``, ``rules``."""
        body: JSON = {"name": name, "labels": list(labels), **settings}
        if features is not None:
            body["features"] = dict(features)
        return self._post("/v1/tasks", body)

    def list_tasks(self) -> list[JSON]:
        """All tasks."""
        return self._get("/v1/tasks")["data"]

    def get_task(self, name: str) -> JSON:
        """One task with its settings, ``mode`` and ``automation``."""
        return self._get(f"/v1/tasks/{_p(name)}")

    def update_task(self, name: str, **changes: Any) -> JSON:
        """Change task settings (admin), e.g. ``automation="off"``."""
        return self._request("PATCH", f"/v1/tasks/{_p(name)}", json=changes, idempotent=True)

    # -- cases
    def send_case(
        self, task: str, features: Mapping[str, Any], external_id: str | None = None
    ) -> JSON:
        """Send one case; with an ``external_id`` the call is idempotent (and retried)."""
        body: JSON = {"features": dict(features)}
        if external_id is not None:
            body["external_id"] = external_id
        return self._post(f"/v1/tasks/{_p(task)}/cases", body, idempotent=external_id is not None)

    def send_cases(self, task: str, cases: Iterable[Mapping[str, Any]]) -> list[JSON]:
        """Send many ``{"features", "external_id"?}`` cases, in calls of up to 1000.

        Results come back in input order. A chunk is retried after a connection failure
        only when every case in it has an ``external_id``.
        """
        results: list[JSON] = []
        for chunk in _chunks(cases, BATCH_LIMIT):
            idempotent = all(case.get("external_id") is not None for case in chunk)
            answer = self._post(
                f"/v1/tasks/{_p(task)}/cases/batch",
                {"cases": [dict(case) for case in chunk]},
                idempotent=idempotent,
            )
            results.extend(answer["results"])
        return results

    def predict(self, task: str, features: Mapping[str, Any]) -> JSON:
        """Score features and return the route they would take; nothing is stored."""
        return self._post(
            f"/v1/tasks/{_p(task)}/predict", {"features": dict(features)}, idempotent=True
        )

    def get_case(self, case_id: str) -> JSON:
        """One case with its features, explanation and any human label."""
        return self._get(f"/v1/cases/{_p(case_id)}")

    # -- review
    def claim(
        self, task: str, exclude: Sequence[str] = (), *, resume: bool = False
    ) -> Claim | None:
        """Lease the next case to review, or ``None`` when nothing is waiting.

        ``exclude`` names cases to pass over (say, ones this reviewer skipped);
        ``resume``: a case this key already holds (and is not excluded) comes first.
        """
        body: JSON | None = {"exclude": list(exclude)} if exclude else None
        if resume:
            body = {**(body or {}), "resume": True}
        return self._post(f"/v1/tasks/{_p(task)}/queue/claim", body)

    def label(self, case_id: str, label: str, lease_id: str, comment: str | None = None) -> JSON:
        """Label a leased case (idempotent under the same lease)."""
        body: JSON = {"label": label, "lease_id": lease_id}
        if comment:
            body["comment"] = comment
        return self._post(f"/v1/cases/{_p(case_id)}/label", body, idempotent=True)

    def release(self, case_id: str, lease_id: str) -> None:
        """Give a leased case back to the queue."""
        self._post(f"/v1/cases/{_p(case_id)}/release", {"lease_id": lease_id}, idempotent=True)

    def correct(self, case_id: str, label: str, comment: str | None = None) -> JSON:
        """Correct the label of a case you labelled (or any, as admin)."""
        body: JSON = {"label": label}
        if comment:
            body["comment"] = comment
        return self._post(f"/v1/cases/{_p(case_id)}/correct", body, idempotent=True)

    # -- metrics
    def queue(self, task: str) -> JSON:
        """The task's backlog and automated share (``queue_depth``, ``automation_rate``,
        ``mode``, ``cases``): what any role that reads tasks may see."""
        return self._get(f"/v1/tasks/{_p(task)}/queue")

    def metrics(self, task: str) -> JSON:
        """Counts, automation rate, threshold, mode and the error estimate with its bound."""
        return self._get(f"/v1/tasks/{_p(task)}/metrics")

    def curve(self, task: str) -> list[JSON]:
        """Learning-curve points, oldest first."""
        return self._get(f"/v1/tasks/{_p(task)}/curve")["points"]

    def history(self, task: str) -> list[JSON]:
        """Threshold and mode changes, with their reasons."""
        return self._get(f"/v1/tasks/{_p(task)}/history")["data"]

    # -- label quality
    def reviewers(self, task: str) -> list[JSON]:
        """Per reviewer: agreement with final labels, audits and gold; labels/hour; time/case."""
        return self._get(f"/v1/tasks/{_p(task)}/reviewers")["data"]

    def agreement(self, task: str) -> JSON:
        """Agreement between reviewers: raw, Cohen's and Fleiss' kappa, confusion matrix."""
        return self._get(f"/v1/tasks/{_p(task)}/agreement")

    def add_gold(self, task: str, cases: Iterable[Mapping[str, Any]]) -> list[JSON]:
        """Add gold cases (``{"features": ..., "label": ...}``), served at the gold rate."""
        return self._post(f"/v1/tasks/{_p(task)}/gold", {"cases": list(cases)})["data"]

    def gold(self, task: str) -> list[JSON]:
        """The task's gold cases with their labels (admin)."""
        return self._get(f"/v1/tasks/{_p(task)}/gold")["data"]

    def set_lead(self, key_id: str, lead: bool = True) -> JSON:
        """Grant (or withdraw) the ``lead`` permission of a key (admin)."""
        return self._request("PATCH", f"/v1/keys/{_p(key_id)}", json={"lead": lead})

    # -- downstream feedback
    def feedback(
        self,
        case_id: str,
        label: str,
        source: str | None = None,
        comment: str | None = None,
        external_id: str | None = None,
    ) -> JSON:
        """Report a later outcome of a decided case (service, admin): learned by the model,
        counted in metrics, sent as a webhook event, kept out of the error evidence.

        With an ``external_id`` the call is idempotent (and retried).
        """
        body: JSON = {"label": label}
        for key, value in (("source", source), ("comment", comment), ("external_id", external_id)):
            if value is not None:
                body[key] = value
        return self._post(
            f"/v1/cases/{_p(case_id)}/feedback", body, idempotent=external_id is not None
        )

    def list_feedback(self, case_id: str) -> list[JSON]:
        """The feedback reports of a case, oldest first."""
        return self._get(f"/v1/cases/{_p(case_id)}/feedback")["data"]

    # -- webhooks (admin)
    def set_webhook(
        self,
        task: str,
        url: str,
        events: Sequence[str] | None = None,
        *,
        rotate_secret: bool = False,
    ) -> JSON:
        """Register (or replace) the task's webhook; ``events`` defaults to all of them.

        The answer's ``secret`` verifies ``Tierline-Webhook-Signature``; ``rotate_secret``
        replaces it with a new one."""
        body: JSON = {"url": url}
        if events is not None:
            body["events"] = list(events)
        if rotate_secret:
            body["rotate_secret"] = True
        return self._request("PUT", f"/v1/tasks/{_p(task)}/webhook", json=body, idempotent=True)

    def get_webhook(self, task: str) -> JSON:
        """The task's webhook URL, event types and secret."""
        return self._get(f"/v1/tasks/{_p(task)}/webhook")

    def delete_webhook(self, task: str) -> None:
        """Remove the webhook (events not yet delivered are cancelled)."""
        self._request("DELETE", f"/v1/tasks/{_p(task)}/webhook")

    def ping_webhook(self, task: str) -> JSON:
        """Queue a signed ``ping`` event to the task's webhook."""
        return self._post(f"/v1/tasks/{_p(task)}/webhook/ping")

    def webhook_events(self, task: str, status: str | None = None, limit: int = 100) -> list[JSON]:
        """The task's webhook events, newest first, with status and attempt count."""
        params: JSON = {"limit": limit}
        if status is not None:
            params["status"] = status
        return self._get(f"/v1/tasks/{_p(task)}/webhook/events", params=params)["data"]

    def webhook_deliveries(
        self, task: str, event: str | None = None, limit: int = 100
    ) -> list[JSON]:
        """Delivery attempts (status code, error, duration), newest first."""
        params: JSON = {"limit": limit}
        if event is not None:
            params["event"] = event
        return self._get(f"/v1/tasks/{_p(task)}/webhook/deliveries", params=params)["data"]

    def retry_webhook_event(self, task: str, event_id: str) -> JSON:
        """Send a failed or cancelled event again."""
        return self._post(
            f"/v1/tasks/{_p(task)}/webhook/events/{_p(event_id)}/retry", idempotent=True
        )

    # -- export (analyst, admin)
    def export(self, task: str, what: str = "labels", format: str = "jsonl") -> Iterator[bytes]:
        """The task's ``labels`` or ``cases`` as ``csv``, ``jsonl`` or ``parquet`` bytes,
        streamed (429/503 before the body starts are retried)."""
        params = {"what": what, "format": format}
        path = f"/v1/tasks/{_p(task)}/export"
        attempt = 0
        while True:
            started = False
            try:
                with self._http.stream("GET", path, params=params) as response:
                    status = response.status_code
                    if status in _RETRY_ALWAYS and attempt < self.max_retries:
                        wait = _retry_after(response)
                        delay = max(wait or 0.0, self._backoff(attempt))
                    elif status >= 400:
                        response.read()
                        raise _error_from(response)
                    else:
                        for chunk in response.iter_bytes():
                            started = True
                            yield chunk
                        return
            except httpx.TransportError as exc:
                if started or attempt >= self.max_retries:
                    raise Unavailable(
                        None, f"export from {self.base_url} broke off ({exc})"
                    ) from exc
                delay = self._backoff(attempt)
            _sleep(delay)
            attempt += 1

    def export_to(
        self, task: str, path: str | Path, what: str = "labels", format: str | None = None
    ) -> Path:
        """Stream an export into a file; the format defaults to the file's suffix."""
        path = Path(path)
        fmt = format or {".csv": "csv", ".parquet": "parquet"}.get(path.suffix.lower(), "jsonl")
        with open(path, "wb") as out:
            for chunk in self.export(task, what, fmt):
                out.write(chunk)
        return path

    def labels(self, task: str) -> list[JSON]:
        """Every labelled case (features, label, what was recorded at routing time), in the
        order the model learned them; :func:`labels_frame` makes a data frame of them."""
        return _jsonl(self.export(task, "labels", "jsonl"))

    def cases(self, task: str) -> list[JSON]:
        """Every case of the task, oldest first (:func:`cases_frame` for a data frame)."""
        return _jsonl(self.export(task, "cases", "jsonl"))

    # -- operations
    def healthz(self) -> JSON:
        """Liveness: ``{"status": "ok"}``."""
        return self._get("/healthz")

    def readyz(self) -> JSON:
        """Readiness; raises :class:`Unavailable` at once when the API is not ready."""
        return self._get("/readyz", max_retries=0)

    def wait_ready(self, timeout: float = 30.0, interval: float = 0.25) -> JSON:
        """Poll ``/readyz`` until it answers 200 or ``timeout`` seconds pass."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                return self.readyz()
            except Unavailable:
                if time.monotonic() >= deadline:
                    raise
                _sleep(interval)


def _jsonl(chunks: Iterable[bytes]) -> list[JSON]:
    buffer = b"".join(chunks)
    return [json.loads(line) for line in buffer.splitlines() if line.strip()]


# --- webhooks -----------------------------------------------------------------------------
SIGNATURE_HEADER = "Tierline-Signature"


def verify_webhook(
    body: bytes,
    signature: str,
    secret: str | bytes,
    *,
    tolerance: float = 300.0,
    now: float | None = None,
) -> bool:
    """Check a webhook's signature header (``t=<unix>,v1=<hex>``).

    True when ``v1`` is the HMAC-SHA256, keyed with ``secret``, of ``"<t>." + body`` (the
    raw body bytes) and ``t`` is within ``tolerance`` seconds of now (which stops replays
    of old deliveries). ``Tierline-Webhook-Signature`` is keyed with the webhook's own
    secret (in ``set_webhook``'s and ``get_webhook``'s answers), ``Tierline-Signature``
    with the server's webhook secret.

    >>> import hashlib, hmac
    >>> body = b'{"id":"evt_1","type":"ping"}'
    >>> mac = hmac.new(b"s3cret", b"1700000000." + body, hashlib.sha256).hexdigest()
    >>> verify_webhook(body, f"t=1700000000,v1={mac}", "s3cret", now=1700000060)
    True
    >>> verify_webhook(body + b" ", f"t=1700000000,v1={mac}", "s3cret", now=1700000060)
    False
    """
    fields: dict[str, list[str]] = {}
    for part in signature.split(","):
        key, _, value = part.strip().partition("=")
        fields.setdefault(key, []).append(value)
    try:
        timestamp = int(fields["t"][0])
    except (KeyError, ValueError):
        return False
    now = time.time() if now is None else now
    if abs(now - timestamp) > tolerance:
        return False
    mac_key = secret.encode() if isinstance(secret, str) else secret
    expected = hmac.new(mac_key, f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return any(hmac.compare_digest(expected, given) for given in fields.get("v1", []))


def _chunks(items: Iterable[Mapping[str, Any]], size: int) -> Iterator[list[Mapping[str, Any]]]:
    chunk: list[Mapping[str, Any]] = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


# --- data frames ------------------------------------------------------------------------
_TIME_COLUMNS = ("created_at", "labelled_at", "at", "lease_expires_at")


def _records(records: Any) -> list[Mapping[str, Any]]:
    if isinstance(records, Mapping):
        for key in ("data", "points", "results"):
            if isinstance(records.get(key), list):
                return records[key]
        return [records]
    return list(records)


def _parse_times(frame: pd.DataFrame) -> pd.DataFrame:
    import pandas as pd

    for column in _TIME_COLUMNS:
        if column in frame.columns:
            frame[column] = pd.to_datetime(frame[column], utc=True, errors="coerce")
    return frame


def to_dataframe(records: Any) -> pd.DataFrame:
    """A frame from a list of records or a ``{"data"|"points"|"results": [...]}`` answer."""
    import pandas as pd

    return _parse_times(pd.DataFrame.from_records(_records(records)))


def cases_frame(records: Any) -> pd.DataFrame:
    """Cases as rows; ``features`` and ``proba`` become ``features.x`` / ``proba.y`` columns."""
    import pandas as pd

    rows = _records(records)
    frame = pd.json_normalize(rows, max_level=1) if rows else pd.DataFrame()
    if "id" in frame.columns:
        frame = frame.set_index("id", drop=False)
        frame.index.name = None
    return _parse_times(frame)


def labels_frame(records: Any) -> pd.DataFrame:
    """Labelled cases (:meth:`TierlineClient.labels`) as rows, ``features`` as
    ``features.x`` columns, with a ``correct`` column (the suggestion recorded at routing
    time equals the label) for prequential accuracy."""
    import pandas as pd

    rows = _records(records)
    frame = pd.json_normalize(rows, max_level=1) if rows else pd.DataFrame()
    if {"suggestion", "label"} <= set(frame.columns):
        frame["correct"] = frame["suggestion"] == frame["label"]
    return _parse_times(frame)


def curve_frame(curve: Any) -> pd.DataFrame:
    """Curve points (a list, or the ``{"points": [...]}`` answer) in label order."""
    import pandas as pd

    columns = [
        "labels",
        "cases",
        "automation_rate",
        "accuracy",
        "threshold",
        "auto_error_estimate",
        "auto_error_upper",
        "at",
    ]
    rows = _records(curve)
    frame = pd.DataFrame.from_records(rows) if rows else pd.DataFrame(columns=columns)
    for column in columns:
        if column not in frame.columns:
            frame[column] = None
    return _parse_times(frame)


def metrics_frame(metrics: Any) -> pd.DataFrame:
    """Metrics as rows: one answer, a list of answers, or ``{task: answer}`` (indexed by task)."""
    import pandas as pd

    if isinstance(metrics, Mapping) and metrics and "cases" not in metrics:
        frame = pd.DataFrame.from_dict(dict(metrics), orient="index")
        frame.index.name = "task"
        return frame
    return pd.DataFrame.from_records(_records(metrics))
