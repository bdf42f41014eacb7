"""The HTTP client against ``httpx.MockTransport``: no server needed."""

from __future__ import annotations

import json
from collections.abc import Callable

import httpx
import pytest

import api.client as client_module
from api.client import (
    BATCH_LIMIT,
    Conflict,
    Forbidden,
    InvalidInput,
    NotFound,
    PayloadTooLarge,
    RateLimited,
    TierlineClient,
    TierlineError,
    Unauthorized,
    Unavailable,
    cases_frame,
    curve_frame,
    format_detail,
    metrics_frame,
    to_dataframe,
)

Handler = Callable[[httpx.Request], httpx.Response]


@pytest.fixture
def sleeps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Record retry waits instead of sleeping."""
    waits: list[float] = []
    monkeypatch.setattr(client_module, "_sleep", waits.append)
    return waits


def make(handler: Handler, **kwargs) -> TierlineClient:
    return TierlineClient(
        "http://tierline.test", "tl_key", transport=httpx.MockTransport(handler), **kwargs
    )


def sequence(*responses: httpx.Response) -> tuple[Handler, list[httpx.Request]]:
    """A handler answering with ``responses`` in turn, and the requests it saw."""
    seen: list[httpx.Request] = []
    queue = list(responses)

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return queue.pop(0) if len(queue) > 1 else queue[0]

    return handler, seen


CASE = {"id": "c_1", "task": "claims", "status": "pending", "route": "review"}


# --- configuration ----------------------------------------------------------------------
def test_defaults_come_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TIERLINE_API_URL", "http://api.example:9000/")
    monkeypatch.setenv("TIERLINE_API_KEY", "tl_env")
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"id": "k_1", "name": "me", "role": "admin"})

    with TierlineClient(transport=httpx.MockTransport(handler)) as tl:
        assert tl.me()["role"] == "admin"
    assert str(seen[0].url) == "http://api.example:9000/v1/me"
    assert seen[0].headers["Authorization"] == "Bearer tl_env"


def test_default_url_without_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TIERLINE_API_URL", raising=False)
    monkeypatch.delenv("TIERLINE_API_KEY", raising=False)
    tl = TierlineClient()
    assert tl.base_url == "http://127.0.0.1:8000"
    assert "Authorization" not in tl._http.headers
    tl.close()


def test_one_connection_pool_is_reused() -> None:
    handler, seen = sequence(httpx.Response(200, json={"status": "ok"}))
    tl = make(handler)
    http = tl._http
    tl.healthz()
    tl.healthz()
    assert tl._http is http and len(seen) == 2


# --- routes -----------------------------------------------------------------------------
def test_claim_returns_none_on_204() -> None:
    handler, seen = sequence(httpx.Response(204))
    assert make(handler).claim("claims") is None
    assert seen[0].method == "POST" and seen[0].url.path == "/v1/tasks/claims/queue/claim"


def test_claim_returns_case_and_lease() -> None:
    body = {"case": CASE, "lease_id": "l_1", "lease_expires_at": "2030-01-01T00:00:00+00:00"}
    handler, _ = sequence(httpx.Response(200, json=body))
    assert make(handler).claim("claims") == body


@pytest.mark.parametrize(
    ("call", "method", "path", "body"),
    [
        (
            lambda tl: tl.create_key("svc", "service"),
            "POST",
            "/v1/keys",
            {"name": "svc", "role": "service"},
        ),
        (lambda tl: tl.revoke_key("k_1"), "DELETE", "/v1/keys/k_1", None),
        (
            lambda tl: tl.create_task("claims", ["a", "b"], {"x": "number"}, threshold=0.8),
            "POST",
            "/v1/tasks",
            {"name": "claims", "labels": ["a", "b"], "features": {"x": "number"}, "threshold": 0.8},
        ),
        (lambda tl: tl.get_task("claims"), "GET", "/v1/tasks/claims", None),
        (
            lambda tl: tl.update_task("claims", automation="off"),
            "PATCH",
            "/v1/tasks/claims",
            {"automation": "off"},
        ),
        (
            lambda tl: tl.send_case("claims", {"x": 1}, external_id="e1"),
            "POST",
            "/v1/tasks/claims/cases",
            {"features": {"x": 1}, "external_id": "e1"},
        ),
        (
            lambda tl: tl.predict("claims", {"x": 1}),
            "POST",
            "/v1/tasks/claims/predict",
            {"features": {"x": 1}},
        ),
        (lambda tl: tl.get_case("c_1"), "GET", "/v1/cases/c_1", None),
        (
            lambda tl: tl.label("c_1", "a", "l_1", "looks fine"),
            "POST",
            "/v1/cases/c_1/label",
            {"label": "a", "lease_id": "l_1", "comment": "looks fine"},
        ),
        (lambda tl: tl.release("c_1", "l_1"), "POST", "/v1/cases/c_1/release", {"lease_id": "l_1"}),
        (lambda tl: tl.correct("c_1", "b"), "POST", "/v1/cases/c_1/correct", {"label": "b"}),
        (lambda tl: tl.metrics("claims"), "GET", "/v1/tasks/claims/metrics", None),
        (lambda tl: tl.readyz(), "GET", "/readyz", None),
    ],
)
def test_routes_send_the_contract_request(call, method, path, body) -> None:
    handler, seen = sequence(httpx.Response(200, json={"ok": True}))
    call(make(handler))
    request = seen[0]
    assert (request.method, request.url.path) == (method, path)
    assert request.headers["Authorization"] == "Bearer tl_key"
    if body is None:
        assert request.content == b""
    else:
        assert json.loads(request.content) == body


def test_list_routes_unwrap_their_envelopes() -> None:
    answers = {
        "/v1/keys": {"data": [{"id": "k_1"}], "count": 1},
        "/v1/tasks": {"data": [{"name": "claims"}], "count": 1},
        "/v1/tasks/claims/curve": {"points": [{"labels": 1}]},
        "/v1/tasks/claims/history": {"data": [], "count": 0},
    }
    tl = make(lambda request: httpx.Response(200, json=answers[request.url.path]))
    assert tl.list_keys() == [{"id": "k_1"}]
    assert tl.list_tasks() == [{"name": "claims"}]
    assert tl.curve("claims") == [{"labels": 1}]
    assert tl.history("claims") == []


def test_send_cases_splits_batches_over_the_limit() -> None:
    sizes: list[int] = []

    def handler(request: httpx.Request) -> httpx.Response:
        cases = json.loads(request.content)["cases"]
        sizes.append(len(cases))
        return httpx.Response(200, json={"results": [{"id": c["external_id"]} for c in cases]})

    cases = ({"external_id": f"e{i}", "features": {"x": i}} for i in range(2 * BATCH_LIMIT + 5))
    results = make(handler).send_cases("claims", cases)
    assert sizes == [BATCH_LIMIT, BATCH_LIMIT, 5]
    assert [r["id"] for r in results] == [f"e{i}" for i in range(2 * BATCH_LIMIT + 5)]


def test_send_cases_with_nothing_makes_no_call() -> None:
    handler, seen = sequence(httpx.Response(200, json={"results": []}))
    assert make(handler).send_cases("claims", []) == []
    assert seen == []


# --- errors -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("status", "cls"),
    [
        (401, Unauthorized),
        (403, Forbidden),
        (404, NotFound),
        (409, Conflict),
        (413, PayloadTooLarge),
        (422, InvalidInput),
        (429, RateLimited),
        (503, Unavailable),
        (400, TierlineError),
    ],
)
def test_errors_map_to_classes(status: int, cls: type[TierlineError], sleeps) -> None:
    handler, _ = sequence(httpx.Response(status, json={"detail": "nope"}))
    with pytest.raises(cls) as info:
        make(handler, max_retries=0).get_task("claims")
    assert isinstance(info.value, TierlineError)
    assert info.value.status == status
    assert info.value.detail == "nope"
    assert info.value.message == "nope"
    assert "nope" in str(info.value)


def test_422_detail_list_is_flattened() -> None:
    detail = [
        {"loc": ["body", "features", "amount"], "msg": "expected a number", "type": "x"},
        {"loc": ["body", "cases", 3, "external_id"], "msg": "too long"},
    ]
    handler, _ = sequence(httpx.Response(422, json={"detail": detail}))
    with pytest.raises(InvalidInput) as info:
        make(handler).send_case("claims", {"amount": "lots"})
    assert info.value.message == "features.amount: expected a number; cases.3.external_id: too long"
    assert info.value.detail == detail


def test_a_number_json_cannot_carry_is_invalid_input_before_any_call() -> None:
    handler, seen = sequence(httpx.Response(201, json={}))
    with pytest.raises(InvalidInput, match="not sendable as JSON") as info:
        make(handler).predict("claims", {"amount": float("nan")})
    assert info.value.status is None and not seen


def test_format_detail_handles_odd_shapes() -> None:
    assert format_detail(None) == "no detail given"
    assert format_detail({"msg": "bad"}) == "bad"
    assert format_detail([{"loc": [], "msg": "whole body"}]) == "whole body"
    assert format_detail(42) == "42"


def test_non_json_error_body_keeps_text() -> None:
    handler, _ = sequence(httpx.Response(404, text="not here"))
    with pytest.raises(NotFound, match="not here"):
        make(handler).get_case("c_9")


# --- retries ----------------------------------------------------------------------------
def test_retries_honour_retry_after(sleeps: list[float]) -> None:
    handler, seen = sequence(
        httpx.Response(429, headers={"Retry-After": "3"}, json={"detail": "slow down"}),
        httpx.Response(503, headers={"Retry-After": "2"}, json={"detail": "busy"}),
        httpx.Response(200, json={"name": "claims"}),
    )
    assert make(handler).get_task("claims") == {"name": "claims"}
    assert len(seen) == 3
    assert len(sleeps) == 2
    assert sleeps[0] >= 3 and sleeps[1] >= 2
    assert all(wait < 3.5 for wait in sleeps)


def test_backoff_grows_exponentially_with_jitter(sleeps: list[float]) -> None:
    handler, seen = sequence(*[httpx.Response(503) for _ in range(5)], httpx.Response(200, json={}))
    make(handler, max_retries=5).metrics("claims")
    assert len(seen) == 6
    for attempt, wait in enumerate(sleeps):
        ceiling = 0.5 * 2**attempt
        assert ceiling / 2 <= wait <= ceiling


def test_gives_up_after_max_retries(sleeps: list[float]) -> None:
    handler, seen = sequence(
        httpx.Response(429, headers={"Retry-After": "1"}, json={"detail": "rate limited"})
    )
    with pytest.raises(RateLimited) as info:
        make(handler, max_retries=2).claim("claims")
    assert len(seen) == 3 and len(sleeps) == 2
    assert info.value.retry_after == 1


def test_post_is_retried_on_503_because_nothing_was_done(sleeps) -> None:
    handler, seen = sequence(httpx.Response(503), httpx.Response(201, json=CASE))
    assert make(handler).send_case("claims", {"x": 1}) == CASE
    assert len(seen) == 2


def connection_failure(then: httpx.Response | None = None):
    calls: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        if len(calls) == 1 or then is None:
            raise httpx.ConnectError("refused", request=request)
        return then

    return handler, calls


def test_connection_errors_retry_gets(sleeps) -> None:
    handler, calls = connection_failure(httpx.Response(200, json={"name": "claims"}))
    assert make(handler).get_task("claims") == {"name": "claims"}
    assert len(calls) == 2


def test_connection_errors_retry_idempotent_posts(sleeps) -> None:
    handler, calls = connection_failure(httpx.Response(200, json=CASE))
    make(handler).label("c_1", "a", "l_1")
    assert len(calls) == 2
    handler, calls = connection_failure(httpx.Response(201, json=CASE))
    make(handler).send_case("claims", {"x": 1}, external_id="e1")
    assert len(calls) == 2


def test_connection_errors_do_not_retry_unsafe_posts(sleeps) -> None:
    handler, calls = connection_failure(httpx.Response(201, json=CASE))
    with pytest.raises(Unavailable) as info:
        make(handler).send_case("claims", {"x": 1})
    assert len(calls) == 1 and sleeps == []
    assert info.value.status is None
    assert "cannot reach the tierline API at http://tierline.test" in info.value.message
    handler, calls = connection_failure(httpx.Response(200, json={"results": []}))
    with pytest.raises(Unavailable):
        make(handler).send_cases("claims", [{"features": {"x": 1}}])
    assert len(calls) == 1


def test_persistent_outage_raises_unavailable(sleeps) -> None:
    handler, calls = connection_failure()
    with pytest.raises(Unavailable):
        make(handler, max_retries=3).me()
    assert len(calls) == 4 and len(sleeps) == 3


def test_readyz_does_not_wait(sleeps) -> None:
    handler, seen = sequence(
        httpx.Response(503, headers={"Retry-After": "5"}, json={"detail": "loading models"})
    )
    with pytest.raises(Unavailable, match="loading models"):
        make(handler).readyz()
    assert len(seen) == 1 and sleeps == []


def test_wait_ready_polls_until_ready(sleeps) -> None:
    handler, seen = sequence(
        httpx.Response(503), httpx.Response(503), httpx.Response(200, json={"status": "ready"})
    )
    assert make(handler).wait_ready(timeout=10) == {"status": "ready"}
    assert len(seen) == 3


# --- frames -----------------------------------------------------------------------------
def test_cases_frame_expands_features_and_proba() -> None:
    frame = cases_frame(
        [
            {
                **CASE,
                "features": {"amount": 10.0},
                "proba": {"a": 0.9, "b": 0.1},
                "created_at": "2030-01-01T00:00:00+00:00",
            },
        ]
    )
    assert {"features.amount", "proba.a", "proba.b"} <= set(frame.columns)
    assert frame.loc["c_1", "features.amount"] == 10.0
    assert str(frame["created_at"].dtype).startswith("datetime64")
    assert cases_frame([]).empty


def test_curve_frame_has_columns_even_when_empty() -> None:
    empty = curve_frame({"points": []})
    assert empty.empty and "accuracy" in empty.columns
    frame = curve_frame(
        [{"labels": 5, "cases": 10, "accuracy": 0.8, "at": "2030-01-01T00:00:00+00:00"}]
    )
    assert frame.loc[0, "labels"] == 5 and frame["threshold"].isna().all()


def test_metrics_frame_shapes() -> None:
    one = {"cases": 10, "automation_rate": 0.5}
    assert len(metrics_frame(one)) == 1
    by_task = metrics_frame({"claims": one, "other": {**one, "cases": 3}})
    assert list(by_task.index) == ["claims", "other"] and by_task.index.name == "task"
    assert len(metrics_frame([one, one])) == 2


def test_to_dataframe_unwraps_envelopes() -> None:
    frame = to_dataframe(
        {"data": [{"id": "k_1", "created_at": "2030-01-01T00:00:00Z"}], "count": 1}
    )
    assert list(frame["id"]) == ["k_1"]


def test_client_doctests() -> None:
    import doctest

    assert doctest.testmod(client_module).failed == 0


def test_governance_methods_call_their_routes():
    handler, seen = sequence(httpx.Response(200, json={"data": [], "count": 0}))
    with make(handler) as client:
        client.audit(limit=5, task="claims", action="case.routed", before=9)
        client.models("claims")
        client.activate_model("claims", 25)
        client.rotate_key("k_1", grace_seconds=60)
    audit, models, activate, rotate = seen
    assert audit.url.path == "/v1/audit"
    assert dict(audit.url.params) == {
        "task": "claims",
        "action": "case.routed",
        "limit": "5",
        "before": "9",
    }
    assert (models.method, models.url.path) == ("GET", "/v1/tasks/claims/models")
    assert (activate.method, activate.url.path) == ("POST", "/v1/tasks/claims/models/25/activate")
    assert rotate.url.path == "/v1/keys/k_1/rotate"
    assert json.loads(rotate.content) == {"grace_seconds": 60}
    handler, seen = sequence(httpx.Response(204))
    with make(handler) as client:
        client.erase_case("c_1")
    assert (seen[0].method, seen[0].url.path) == ("DELETE", "/v1/cases/c_1")


def test_keys_scoped_and_lead_and_the_gold_list_have_their_methods():
    """An outside probe: the client could not create a scoped or lead key, nor list gold."""
    handler, seen = sequence(
        httpx.Response(201, json={"id": "k_1", "key": "tl_x"}),
        httpx.Response(200, json={"data": [{"id": 1}], "count": 1}),
    )
    with make(handler) as client:
        client.create_key("lead of claims", "reviewer", lead=True, tasks=["claims"])
        assert client.gold("claims") == [{"id": 1}]
    create, gold = seen
    assert json.loads(create.content) == {
        "name": "lead of claims", "role": "reviewer", "lead": True, "tasks": ["claims"]
    }  # fmt: skip
    assert (gold.method, gold.url.path) == ("GET", "/v1/tasks/claims/gold")
