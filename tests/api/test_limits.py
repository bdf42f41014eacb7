"""Abuse limits: per-key rate limits (429 + Retry-After), sizes and counts (413/422),
slow request bodies (408), and no default secret outside dev."""

from __future__ import annotations

import asyncio

import pytest
from fastapi.testclient import TestClient
from starlette.requests import Request
from starlette.responses import JSONResponse

from api.main import create_app
from api.observability import BodyLimitMiddleware
from api.settings import Settings
from tests.utils.factories import ADMIN_KEY, Api, auth

GOOD = {"amount": 120.5, "country": "fr", "note": "windscreen repair", "vip": False}


def test_rate_limit_answers_429_with_retry_after_per_key(settings):
    limited = settings.model_copy(update={"rate_limit_per_second": 0.1, "rate_limit_burst": 3})
    with TestClient(create_app(limited)) as client:
        api = Api(client)
        key = api.key("analyst")  # (its creation spent admin tokens, not this key's)
        answers = [client.get("/v1/me", headers=auth(key)) for _ in range(4)]
        assert [a.status_code for a in answers[:3]] == [200, 200, 200]
        refused = answers[3]
        assert refused.status_code == 429
        assert int(refused.headers["retry-after"]) >= 1
        assert "rate limit" in refused.json()["detail"]
        other = client.get("/v1/me", headers=auth(api.key("reviewer")))
        assert other.status_code == 200  # buckets are per key


def test_rate_limit_is_off_by_default(api):
    key = api.key("analyst")
    assert all(api.client.get("/v1/me", headers=auth(key)).status_code == 200 for _ in range(50))


def test_unauthenticated_requests_are_refused_before_any_work(client):
    # no key: 401 even for an oversized batch (authentication runs before validation)
    response = client.post("/v1/tasks/claims/cases/batch", json={"cases": [{}] * 2000})
    assert response.status_code == 401


@pytest.fixture
def ready(api):
    api.create_task()
    return api


def test_too_many_features_is_422(ready):
    features = {f"f{i}": 1 for i in range(513)}
    response = ready.client.post(
        "/v1/tasks/claims/cases", json={"features": features}, headers=ready.as_("service")
    )
    assert response.status_code == 422 and "features" in str(response.json()["detail"])


def test_overlong_comment_and_lease_are_422(ready):
    ready.send("claims", GOOD)
    claim = ready.claim("claims")
    for body, field in [
        ({"label": "approve", "lease_id": claim["lease_id"], "comment": "x" * 2001}, "comment"),
        ({"label": "approve", "lease_id": "l" * 65}, "lease_id"),
        ({"label": "x" * 129, "lease_id": claim["lease_id"]}, "label"),
    ]:
        response = ready.client.post(
            f"/v1/cases/{claim['case']['id']}/label", json=body, headers=ready.as_("reviewer")
        )
        assert response.status_code == 422 and field in str(response.json()["detail"])


@pytest.mark.parametrize(
    ("path", "params"),
    [
        ("/v1/audit", {"limit": 1001}),
        ("/v1/audit", {"limit": 0}),
        ("/v1/audit", {"action": "x" * 33}),
        ("/v1/tasks/claims/webhook/events", {"limit": 100_000}),
    ],
)
def test_page_sizes_and_filters_are_bounded(ready, path, params):
    response = ready.client.get(path, params=params, headers=ready.admin)
    assert response.status_code == 422
    assert next(iter(params)) in str(response.json()["detail"])


def test_a_body_that_does_not_arrive_in_time_is_408():
    async def app(scope, receive, send):  # reads the body, as a route would
        await Request(scope, receive).body()
        await JSONResponse({"ok": True})(scope, receive, send)

    middleware = BodyLimitMiddleware(app, max_bytes=1024, timeout=0.05)
    sent: list[dict] = []

    async def stalled() -> dict:
        await asyncio.sleep(3600)  # a client that never sends its body
        return {}

    async def send(message: dict) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": "/", "headers": []}
    asyncio.run(asyncio.wait_for(middleware(scope, stalled, send), 5))
    assert sent[0]["status"] == 408
    assert b"not received" in sent[1]["body"]


def test_a_streamed_body_over_the_limit_is_413():
    async def app(scope, receive, send):
        await Request(scope, receive).body()
        await JSONResponse({"ok": True})(scope, receive, send)

    chunks = [{"type": "http.request", "body": b"x" * 600, "more_body": True}] * 3
    sent: list[dict] = []

    async def receive() -> dict:
        return chunks.pop(0)

    async def send(message: dict) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": "/", "headers": []}
    asyncio.run(BodyLimitMiddleware(app, max_bytes=1024, timeout=5)(scope, receive, send))
    assert sent[0]["status"] == 413


# --- secrets and defaults ----------------------------------------------------------------
def test_production_refuses_to_start_without_a_secret(database_url):
    prod = Settings(database_url=database_url, admin_key=ADMIN_KEY, env="prod", secret=None)
    with pytest.raises(RuntimeError, match="TIERLINE_SECRET"), TestClient(create_app(prod)):
        pass


def test_production_starts_with_a_secret_and_signs_with_it(database_url):
    secret = "s3cret-" * 5
    prod = Settings(database_url=database_url, admin_key=ADMIN_KEY, env="prod", secret=secret)
    assert prod.signing_secret == secret.encode()
    with TestClient(create_app(prod)) as client:
        assert client.get("/readyz").status_code == 200


def test_the_dev_secret_is_only_for_dev():
    assert Settings(env="dev", secret=None).signing_secret  # make demo sets TIERLINE_ENV=dev
    with pytest.raises(RuntimeError):
        _ = Settings(env="prod", secret=None).signing_secret


@pytest.mark.parametrize(
    ("field", "value", "named"),
    [
        ("secret", "short", "TIERLINE_SECRET"),
        ("webhook_secret", "x" * 31, "TIERLINE_WEBHOOK_SECRET"),
        ("admin_key", "a", "TIERLINE_ADMIN_KEY"),
    ],
)
def test_production_refuses_weak_secrets_and_dev_takes_them(field, value, named):
    """A probe started production with TIERLINE_ADMIN_KEY=a and TIERLINE_SECRET=short."""
    settings = {"secret": "s" * 32, field: value}
    with pytest.raises(ValueError, match=f"{named} must be at least"):
        Settings(env="prod", **settings)
    assert Settings(env="dev", **settings)


def test_serve_says_in_one_line_what_is_missing(monkeypatch):
    """Without a secret, ``tierline serve`` printed a 76-line traceback."""
    from typer.testing import CliRunner

    from api.cli import app as cli
    from api.settings import get_settings

    monkeypatch.setenv("TIERLINE_ENV", "prod")
    monkeypatch.delenv("TIERLINE_SECRET", raising=False)
    get_settings.cache_clear()
    try:
        missing = CliRunner().invoke(cli, ["serve"])
        monkeypatch.setenv("TIERLINE_SECRET", "short")
        get_settings.cache_clear()
        weak = CliRunner().invoke(cli, ["serve"])
    finally:
        get_settings.cache_clear()
    assert missing.exit_code == 2 and missing.output.count("\n") == 1, missing.output
    assert "TIERLINE_SECRET must be set" in missing.output
    assert weak.exit_code == 2 and "TIERLINE_SECRET must be at least 32" in weak.output
