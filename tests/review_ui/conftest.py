"""A fake tierline API behind the review UI's client factory: no server, no HTTP."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from streamlit.testing.v1 import AppTest

from api.client import Conflict, Forbidden, NotFound, TierlineError, Unauthorized, Unavailable
from review_ui import session

APP = str(Path(__file__).resolve().parents[2] / "review_ui" / "app.py")
TIMEOUT = 30

KEYS = {
    "tl_admin": {"id": "k_admin", "name": "ada", "role": "admin"},
    "tl_reviewer": {"id": "k_rev", "name": "rita", "role": "reviewer"},
    "tl_analyst": {"id": "k_an", "name": "anna", "role": "analyst"},
    "tl_service": {"id": "k_svc", "name": "svc", "role": "service"},
}
TASK = {
    "name": "claims",
    "labels": ["approve", "reject"],
    "features": {"amount": "number", "country": "category", "note": "text", "vip": "boolean"},
    "target_error": 0.05,
    "audit_rate": 0.05,
    "min_labels": 50,
    "threshold": 0.9,
    "delta": 0.05,
    "model": "linear",
    "rules": [],
    "mode": "assist",
    "automation": "on",
    "model_version": 3,
    "created_at": "2030-01-01T00:00:00+00:00",
}
LONG_NOTE = (
    "Water damage in the kitchen after the upstairs neighbour's washing machine "
    "overflowed during the holidays; the claimant attached three photos."
)


def make_case(number: int, **changes: Any) -> dict[str, Any]:
    """A pending case as the API returns it from a claim."""
    case = {
        "id": f"c_{number}",
        "task": "claims",
        "external_id": f"ext-{number}",
        "status": "pending",
        "route": "review",
        "decision": None,
        "suggestion": "approve",
        "confidence": 0.62,
        "proba": {"approve": 0.62, "reject": 0.38},
        "threshold": 0.9,
        "audit": False,
        "reasons": ["confidence 0.62 < certified threshold 0.90"],
        "propensity": 1.0,
        "model_version": 3,
        "created_at": "2030-01-01T00:00:00+00:00",
        "features": {"amount": 12500.5 + number, "country": "fr", "note": LONG_NOTE, "vip": True},
        "label": None,
        "labelled_by": None,
        "labelled_at": None,
        "explanation": [
            {"feature": "amount", "contribution": 0.42},
            {"feature": "vip", "contribution": -0.1},
        ],
    }
    case.update(changes)
    return case


class FakeApi:
    """In-memory stand-in for the server: keys, tasks, a review queue, metrics."""

    def __init__(self) -> None:
        self.tasks: list[dict[str, Any]] = [dict(TASK)]
        self.cases: dict[str, dict[str, Any]] = {}
        self.leases: dict[str, str] = {}  # case id → lease id
        self.n_cases = 1200  # what the queue status reports as the task's cases so far
        self.mode = "automated"  # what the queue status reports as the task's mode
        self.held_elsewhere = 0  # queued cases other reviewers hold (counted in the depth)
        self.labels: dict[str, tuple[str, str]] = {}  # case id → (label, key id)
        self.keys: list[dict[str, Any]] = [
            {
                "id": who["id"],
                "name": who["name"],
                "role": who["role"],
                "created_at": "2030-01-01T00:00:00+00:00",
                "revoked": False,
            }
            for who in KEYS.values()
        ]
        self.calls: list[tuple[str, tuple]] = []
        self.down = False  # every call fails as if the API were unreachable
        self.held_for_a_second_opinion: set[str] = set()  # labels answered as opinions
        self.disagreements: dict[str, list[dict]] = {}  # case -> opinions a lead decides
        self.failures: dict[str, list[TierlineError]] = {}  # one-shot failures by method
        self.curve: list[dict[str, Any]] = []
        self.history: list[dict[str, Any]] = []
        self.reviewer_rows: list[dict[str, Any]] = []  # GET /v1/tasks/{task}/reviewers
        self.agreement: dict[str, Any] = {"cases": 0, "labels": ["approve", "reject"]}
        self.lease_seconds = 600
        self._ids = itertools.count(1)

    def add_cases(self, count: int, **changes: Any) -> list[str]:
        ids = []
        for _ in range(count):
            case = make_case(next(self._ids), **changes)
            self.cases[case["id"]] = case
            ids.append(case["id"])
        return ids

    def fail(self, method: str, error: TierlineError, times: int = 1) -> None:
        self.failures.setdefault(method, []).extend([error] * times)

    def called(self, method: str) -> list[tuple]:
        return [args for name, args in self.calls if name == method]

    def steal(self, case_id: str) -> None:
        """Another reviewer now holds the case."""
        self.leases[case_id] = "l_someone_else"

    def waiting(self) -> list[str]:
        return [i for i in self.cases if i not in self.labels and i not in self.leases]


class FakeClient:
    """The subset of ``TierlineClient`` the UI uses, backed by a :class:`FakeApi`."""

    def __init__(self, api: FakeApi, key: str) -> None:
        self.api, self.key, self.closed = api, key, False

    def _enter(self, method: str, *args: Any) -> None:
        self.api.calls.append((method, args))
        if self.api.down:
            raise Unavailable(None, "cannot reach the tierline API at http://fake (refused)")
        pending = self.api.failures.get(method)
        if pending:
            raise pending.pop(0)
        if self.key not in KEYS:
            raise Unauthorized(401, "invalid API key")

    @property
    def who(self) -> dict[str, Any]:
        return KEYS[self.key]

    def close(self) -> None:
        self.closed = True

    def me(self) -> dict[str, Any]:
        self._enter("me")
        return dict(self.who)

    def list_tasks(self) -> list[dict[str, Any]]:
        self._enter("list_tasks")
        return [dict(t) for t in self.api.tasks]

    def _task(self, name: str) -> dict[str, Any]:
        for task in self.api.tasks:
            if task["name"] == name:
                return task
        raise NotFound(404, f"task {name} not found")

    def create_task(self, name: str, labels: list[str], features=None, **settings) -> dict:
        self._enter("create_task", name, labels, features, settings)
        task = {**TASK, "name": name, "labels": labels, "features": features, **settings}
        self.api.tasks.append(task)
        return dict(task)

    def update_task(self, name: str, **changes: Any) -> dict:
        self._enter("update_task", name, changes)
        task = self._task(name)
        task.update(changes)
        return dict(task)

    def claim(
        self, task: str, exclude: Sequence[str] = (), *, resume: bool = False
    ) -> dict[str, Any] | None:
        self._enter("claim", task)
        held = [c for c in self.api.leases if c not in exclude and c not in self.api.labels]
        if resume and held:  # one reviewer: every lease is this key's
            expires = datetime.now(UTC) + timedelta(seconds=self.api.lease_seconds)
            return {
                "case": dict(self.api.cases[held[0]]),
                "lease_id": self.api.leases[held[0]],
                "lease_expires_at": expires.isoformat(),
                "disagreement": self.api.disagreements.get(held[0]),
            }
        for case_id in self.api.waiting():
            if case_id in exclude:
                continue
            lease_id = f"l_{case_id}_{len(self.api.calls)}"
            self.api.leases[case_id] = lease_id
            expires = datetime.now(UTC) + timedelta(seconds=self.api.lease_seconds)
            return {
                "case": dict(self.api.cases[case_id]),
                "lease_id": lease_id,
                "lease_expires_at": expires.isoformat(),
                "disagreement": self.api.disagreements.get(case_id),
            }
        return None

    def label(self, case_id: str, label: str, lease_id: str, comment: str | None = None) -> dict:
        self._enter("label", case_id, label, lease_id, comment)
        if self.api.leases.get(case_id) != lease_id:
            raise Conflict(
                409, f"your lease on case {case_id} expired and another reviewer holds the case"
            )
        self.api.labels[case_id] = (label, self.who["id"])
        del self.api.leases[case_id]
        held = case_id in self.api.held_for_a_second_opinion  # an opinion, not the label
        return {**self.api.cases[case_id], "label": None if held else label}

    def release(self, case_id: str, lease_id: str) -> None:
        self._enter("release", case_id, lease_id)
        if self.api.leases.get(case_id) != lease_id:
            raise Conflict(409, "lease not held")
        del self.api.leases[case_id]

    def correct(self, case_id: str, label: str, comment: str | None = None) -> dict:
        self._enter("correct", case_id, label, comment)
        if case_id not in self.api.labels:
            raise Conflict(409, f"case {case_id} has no label to correct")
        self.api.labels[case_id] = (label, self.who["id"])
        return {**self.api.cases[case_id], "label": label}

    def queue(self, task: str) -> dict[str, Any]:
        self._enter("queue", task)
        waiting = len(self.api.waiting()) + self.api.held_elsewhere
        return {
            "task": task,
            "mode": self.api.mode,
            "queue_depth": waiting,
            "automation_rate": 0.75 if self.api.n_cases else 0.0,
            "cases": self.api.n_cases,
        }

    def metrics(self, task: str) -> dict[str, Any]:
        self._enter("metrics", task)
        if self.who["role"] not in ("admin", "analyst"):
            raise Forbidden(403, "forbidden")
        return {
            "cases": 1200,
            "automated": 900,
            "pending": len(self.api.waiting()),
            "labels": len(self.api.labels),
            "automation_rate": 0.75,
            "threshold": 0.93,
            "mode": self.api.mode,
            "model_version": 412,
            "auto_error_estimate": 0.021,
            "auto_error_upper": 0.041,
            "target_error": 0.05,
            "queue_depth": len(self.api.waiting()),
            "audited": 45,
        }

    def curve(self, task: str) -> list[dict[str, Any]]:
        self._enter("curve", task)
        return list(self.api.curve)

    def history(self, task: str) -> list[dict[str, Any]]:
        self._enter("history", task)
        return list(self.api.history)

    def reviewers(self, task: str) -> list[dict[str, Any]]:
        self._enter("reviewers", task)
        if self.who["role"] not in ("admin", "analyst"):
            raise Forbidden(403, "role may not do this (quality:read)")
        return list(self.api.reviewer_rows)

    def agreement(self, task: str) -> dict[str, Any]:
        self._enter("agreement", task)
        return dict(self.api.agreement)

    def create_key(self, name: str, role: str) -> dict[str, Any]:
        self._enter("create_key", name, role)
        key_id = f"k_{len(self.api.keys) + 1}"
        self.api.keys.append(
            {
                "id": key_id,
                "name": name,
                "role": role,
                "created_at": "2030-01-02T00:00:00+00:00",
                "revoked": False,
            }
        )
        return {"id": key_id, "name": name, "role": role, "key": f"tl_secret_{key_id}"}

    def list_keys(self) -> list[dict[str, Any]]:
        self._enter("list_keys")
        return [dict(k) for k in self.api.keys]

    def revoke_key(self, key_id: str) -> None:
        self._enter("revoke_key", key_id)
        for key in self.api.keys:
            if key["id"] == key_id:
                key["revoked"] = True


@pytest.fixture
def fake_api(monkeypatch: pytest.MonkeyPatch) -> FakeApi:
    """A fresh fake API that the UI's client factory now points at."""
    api = FakeApi()
    monkeypatch.setattr(session, "make_client", lambda key: FakeClient(api, key))
    return api


@pytest.fixture
def app(fake_api: FakeApi) -> Callable[..., AppTest]:
    """Build the app, optionally already signed in with a role's key."""

    def build(role: str | None = None) -> AppTest:
        at = AppTest.from_file(APP, default_timeout=TIMEOUT)
        if role is not None:
            key = f"tl_{role}"
            at.session_state[session.KEY] = key
            at.session_state[session.ME] = dict(KEYS[key])
        return at

    return build
