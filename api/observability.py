"""Prometheus metrics: per-route requests and latency, plus per-task gauges read at scrape."""

from __future__ import annotations

import asyncio
import json
import math
import re
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qsl

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlmodel import select
from starlette.exceptions import HTTPException

from api.db import Database
from api.live import ModelStore
from api.services import quality
from api.services.metrics import error_bound
from api.tables import Task
from api.text import unstorable
from learner.controller import MODES


class Instruments:
    """The metrics of one app, in a registry of its own."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "tierline_requests_total",
            "HTTP requests",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "tierline_request_seconds",
            "HTTP request latency",
            ["method", "route"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
            registry=self.registry,
        )
        self.cases = Counter(
            "tierline_cases_total",
            "Cases routed, by route kind",
            ["task", "route"],
            registry=self.registry,
        )

    def watch_tasks(self, db: Database, store: ModelStore) -> None:
        self.registry.register(TaskCollector(db, store))


class TaskCollector(Collector):
    """Per-task gauges, read from the maintained aggregates at scrape time."""

    def __init__(self, db: Database, store: ModelStore) -> None:
        self.db = db
        self.store = store

    def collect(self) -> Iterator[GaugeMetricFamily]:
        gauges = {
            name: GaugeMetricFamily(f"tierline_{name}", text, labels=["task"])
            for name, text in [
                ("queue_depth", "Cases waiting for a person"),
                ("labels", "Labels in the log"),
                ("model_version", "Labels applied to the live model"),
                ("automation_rate", "Share of cases decided automatically"),
                ("threshold", "Confidence threshold in force"),
                ("target_error", "Promised error rate of automated decisions"),
                ("auto_error_estimate", "Estimated error of automated decisions"),
                ("auto_error_upper", "Upper bound on the error of automated decisions"),
                ("second_opinion_share", "Share of labels that got a second opinion"),
                ("escalated_cases", "Cases sent to a lead after their reviewers disagreed"),
                ("reviewer_agreement", "Raw agreement between reviewers on the same case"),
                ("reviewer_kappa", "Fleiss' kappa between reviewers on the same case"),
            ]
        }
        # one series per mode, 1 for the task's (alert on suspended == 1)
        modes = GaugeMetricFamily(
            "tierline_task_mode", "The task's mode (1 for its own)", labels=["task", "mode"]
        )
        with self.db.read() as session:
            tasks = session.exec(select(Task)).all()
            agreement = {t.id: quality.agreement_headline(session, t) for t in tasks}
        for task in tasks:
            live = self.store.get(task)
            gauges["queue_depth"].add_metric([task.name], task.n_queued)
            gauges["labels"].add_metric([task.name], task.n_labels)
            gauges["model_version"].add_metric([task.name], live.version if live else 0)
            gauges["automation_rate"].add_metric(
                [task.name], task.n_auto / task.n_cases if task.n_cases else 0.0
            )
            in_force = task.threshold_in_force
            gauges["threshold"].add_metric([task.name], math.nan if in_force is None else in_force)
            gauges["target_error"].add_metric([task.name], task.target_error)
            estimate, upper = error_bound(task, live)
            for name, value in (("auto_error_estimate", estimate), ("auto_error_upper", upper)):
                gauges[name].add_metric([task.name], math.nan if value is None else value)
            for mode in MODES:
                modes.add_metric([task.name, mode], float(task.mode == mode))
            gauges["second_opinion_share"].add_metric(
                [task.name], quality.second_opinion_share(task)
            )
            gauges["escalated_cases"].add_metric([task.name], task.n_escalated)
            raw, kappa = agreement[task.id]
            gauges["reviewer_agreement"].add_metric([task.name], math.nan if raw is None else raw)
            gauges["reviewer_kappa"].add_metric([task.name], math.nan if kappa is None else kappa)
        yield from gauges.values()
        yield modes


class MetricsMiddleware:
    """Counts requests and times them per route template (pure ASGI, no body buffering)."""

    def __init__(self, app: Any, instruments: Instruments) -> None:
        self.app = app
        self.instruments = instruments

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = [500]

        async def send_wrapper(message: dict) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route = scope.get("route")
            path = getattr(route, "path", "unmatched")
            method = scope["method"]
            self.instruments.requests.labels(method, path, str(status[0])).inc()
            self.instruments.latency.labels(method, path).observe(time.perf_counter() - start)


class BodyLimitMiddleware:
    """Answers 413 to a request body over ``max_bytes``, declared or streamed, 408 to
    one that does not arrive within ``timeout`` seconds (a slow client holds no worker:
    the body is read on the event loop before a route runs), and 422 to a JSON body with
    a string no text column can hold (a NUL character, ``"\\u0000"``, or a lone UTF-16
    surrogate such as ``"\\ud800"``: valid JSON that PostgreSQL, a UTF-8 hash or an
    answer cannot take); a NUL in the path is a 404, in the query a 422 naming the
    parameter."""

    def __init__(self, app: Any, max_bytes: int, timeout: float | None = None) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.timeout = timeout

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", []):
            if name == b"content-length" and value.isdigit() and int(value) > self.max_bytes:
                await _too_large(send, self.max_bytes)
                return
        if "\x00" in scope.get("path", ""):
            await _error(send, 404, "not found: the path holds a NUL character", close=False)
            return
        if (param := nul_query_parameter(scope.get("query_string", b""))) is not None:
            await _error(send, 422, unstorable_detail(["query", param], "a NUL character"), False)
            return
        received = 0
        complete = False
        # on the loop's clock: asyncio.timeout_at costs ~4 us a message where wait_for,
        # which wraps the read in a task of its own, cost ~11
        loop = asyncio.get_running_loop()
        deadline = None if self.timeout is None else loop.time() + self.timeout
        chunks: list[bytes] = []
        escaped = False  # a "\\ud..." escape seen: the body is checked once complete

        async def limited_receive() -> dict:
            nonlocal received, complete, escaped
            if complete or deadline is None:  # e.g. a streaming response awaiting disconnect
                message = await receive()
            else:
                try:
                    async with asyncio.timeout_at(deadline):
                        message = await receive()
                except TimeoutError:
                    raise BodyTimeout(self.timeout or 0) from None
            if message["type"] == "http.request":
                chunk = message.get("body", b"")
                received += len(chunk)
                if received > self.max_bytes:
                    raise BodyTooLarge(self.max_bytes)
                seam = (chunks[-1][-3:] if chunks else b"") + chunk[:3]
                escaped = escaped or any(_SUSPECT_ESCAPE.search(part) for part in (chunk, seam))
                chunks.append(chunk)
                complete = not message.get("more_body", False)
                if complete and escaped:
                    found = unstorable_string_at(b"".join(chunks))
                    if found is not None:
                        raise Unstorable(*found)
            return message  # type: ignore[no-any-return]

        try:
            await self.app(scope, limited_receive, send)
        except BodyTooLarge:
            await _too_large(send, self.max_bytes)
        except BodyTimeout:
            await _error(send, 408, f"request body not received within {self.timeout:g} s")
        except Unstorable as exc:
            await _error(send, 422, exc.detail, close=False)


class BodyTooLarge(HTTPException):
    """Raised from ``receive``: an HTTPException, so FastAPI's body parsing re-raises it
    (rather than answering 400) and the exception handler answers 413."""

    def __init__(self, max_bytes: int = 0) -> None:
        super().__init__(413, f"request body larger than {max_bytes} bytes")


_SUSPECT_ESCAPE = re.compile(rb"\\u(?:[dD][89a-fA-F]|0000)")  # in the raw body: worth a look


def unstorable_string_at(body: bytes) -> tuple[list, str] | None:
    """Where a JSON body holds a string that no text column can hold (``loc``, as a 422
    names a field) and what is wrong with it, or ``None``: not JSON, or every string
    is storable.

    >>> unstorable_string_at(b'{"features": {"note": "a\\ud800"}}')
    (['body', 'features', 'note'], 'a lone UTF-16 surrogate')
    >>> unstorable_string_at(b'{"labels": ["a", "b\\u0000"]}')
    (['body', 'labels', 1], 'a NUL character')
    >>> unstorable_string_at(b'{"note": "\\ud83d\\ude00"}') is None  # a pair: an emoji
    True
    """
    try:
        document = json.loads(body)
    except ValueError:
        return None  # the route's own parsing answers for that
    stack: list[tuple[list, Any]] = [(["body"], document)]
    while stack:
        loc, value = stack.pop()
        if isinstance(value, str):
            if (what := unstorable(value)) is not None:
                return loc, what
        elif isinstance(value, dict):
            for key, item in value.items():
                if (what := unstorable(key)) is not None:
                    shown = key.replace("\x00", "\\u0000")
                    return loc + [shown.encode("utf-8", "backslashreplace").decode()], what
                stack.append((loc + [key], item))
        elif isinstance(value, list):
            stack.extend((loc + [i], item) for i, item in enumerate(value))
    return None


def nul_query_parameter(query: bytes) -> str | None:
    """The name of the first query parameter whose name or value holds a NUL, or ``None``.

    >>> nul_query_parameter(b"actor=a%00b&limit=5"), nul_query_parameter(b"limit=5")
    ('actor', None)
    """
    if b"%00" not in query and b"\x00" not in query:
        return None
    for name, value in parse_qsl(query.decode("latin-1"), keep_blank_values=True):
        if "\x00" in name or "\x00" in value:
            return name.replace("\x00", "\\u0000")
    return None


def unstorable_detail(loc: list, what: str) -> list[dict]:
    """A 422's detail for a string no text column can hold."""
    return [{"loc": loc, "msg": f"not storable text: {what}", "type": "string_unstorable"}]


class Unstorable(HTTPException):
    """Raised from ``receive`` (see :class:`BodyTooLarge`) for a string no text column
    can hold; answered 422 naming where it is."""

    def __init__(self, loc: list, what: str) -> None:
        super().__init__(422)
        self.detail = unstorable_detail(loc, what)  # type: ignore[assignment]


class BodyTimeout(HTTPException):
    def __init__(self, timeout: float = 0) -> None:
        super().__init__(
            408, f"request body not received within {timeout:g} s", {"Connection": "close"}
        )


async def _error(send: Any, status: int, detail: Any, close: bool = True) -> None:
    body = json.dumps({"detail": detail}).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
    ]
    if close:
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _too_large(send: Any, max_bytes: int) -> None:
    body = f'{{"detail":"request body larger than {max_bytes} bytes"}}'.encode()
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
