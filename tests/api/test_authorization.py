"""The authorization matrix: every route of the OpenAPI schema, for every role, for no
key and for a revoked key, gets the documented outcome.

Deny by default: ``RULES`` declares who may call each route, and a route in the schema
without a rule here fails :func:`test_every_route_has_a_declared_rule` (so a new route
cannot ship without a decision on who may call it). The object-level checks follow:
a reviewer labels only under a lease it holds; a scoped key sees only its tasks.
"""

from __future__ import annotations

import random
from collections.abc import Iterator

import pytest
from fastapi import APIRouter
from fastapi.testclient import TestClient

from api.deps import unauthenticated_routes
from api.main import create_app
from api.settings import Settings
from tests.utils.factories import ADMIN_KEY, Api, auth, claims_case

ALL = frozenset({"admin", "service", "reviewer", "analyst"})
ADMIN = frozenset({"admin"})
READERS = ALL  # cases: every role reads them
TASK_READERS = frozenset({"admin", "reviewer", "analyst"})  # a service sends cases only
PUBLIC = "public"  # no key needed

# (METHOD, path template) -> the roles that may call it (the contract, CONTRACT.md)
RULES: dict[tuple[str, str], frozenset[str] | str] = {
    ("GET", "/healthz"): PUBLIC,  # and HEAD, outside the schema (tests/api/test_ops.py)
    ("GET", "/readyz"): PUBLIC,
    ("GET", "/v1/me"): ALL,
    # keys
    ("GET", "/v1/keys"): ADMIN,
    ("POST", "/v1/keys"): ADMIN,
    ("DELETE", "/v1/keys/{key_id}"): ADMIN,
    ("PATCH", "/v1/keys/{key_id}"): ADMIN,
    ("POST", "/v1/keys/{key_id}/rotate"): ADMIN,
    # tasks
    ("GET", "/v1/tasks"): TASK_READERS,
    ("POST", "/v1/tasks"): ADMIN,
    ("GET", "/v1/tasks/{task}"): TASK_READERS,
    ("PATCH", "/v1/tasks/{task}"): ADMIN,
    ("GET", "/v1/tasks/{task}/history"): frozenset({"admin", "analyst"}),
    # cases
    ("POST", "/v1/tasks/{task}/cases"): frozenset({"admin", "service"}),
    ("POST", "/v1/tasks/{task}/cases/batch"): frozenset({"admin", "service"}),
    ("POST", "/v1/tasks/{task}/predict"): frozenset({"admin", "service"}),
    ("GET", "/v1/cases/{case_id}"): READERS,
    ("DELETE", "/v1/cases/{case_id}"): ADMIN,
    ("POST", "/v1/cases/{case_id}/feedback"): frozenset({"admin", "service"}),
    ("GET", "/v1/cases/{case_id}/feedback"): READERS,
    # review
    ("GET", "/v1/tasks/{task}/queue"): TASK_READERS,
    ("POST", "/v1/tasks/{task}/queue/claim"): frozenset({"admin", "reviewer"}),
    ("POST", "/v1/cases/{case_id}/label"): frozenset({"admin", "reviewer"}),
    ("POST", "/v1/cases/{case_id}/correct"): frozenset({"admin", "reviewer"}),
    ("POST", "/v1/cases/{case_id}/release"): frozenset({"admin", "reviewer"}),
    # metrics, exports, label quality
    ("GET", "/v1/tasks/{task}/metrics"): frozenset({"admin", "analyst"}),
    ("GET", "/v1/tasks/{task}/curve"): frozenset({"admin", "analyst"}),
    ("GET", "/v1/tasks/{task}/export"): frozenset({"admin", "analyst"}),
    ("GET", "/v1/tasks/{task}/reviewers"): frozenset({"admin", "analyst"}),
    ("GET", "/v1/tasks/{task}/agreement"): frozenset({"admin", "analyst"}),
    ("POST", "/v1/tasks/{task}/gold"): ADMIN,
    ("GET", "/v1/tasks/{task}/gold"): ADMIN,
    # webhooks
    ("PUT", "/v1/tasks/{task}/webhook"): ADMIN,
    ("GET", "/v1/tasks/{task}/webhook"): ADMIN,
    ("DELETE", "/v1/tasks/{task}/webhook"): ADMIN,
    ("POST", "/v1/tasks/{task}/webhook/ping"): ADMIN,
    ("GET", "/v1/tasks/{task}/webhook/events"): ADMIN,
    ("POST", "/v1/tasks/{task}/webhook/events/{event_id}/retry"): ADMIN,
    ("GET", "/v1/tasks/{task}/webhook/deliveries"): ADMIN,
    # governance
    ("GET", "/v1/audit"): frozenset({"admin", "analyst"}),
    ("GET", "/v1/tasks/{task}/models"): frozenset({"admin", "analyst"}),
    ("POST", "/v1/tasks/{task}/models/{version}/activate"): ADMIN,
}

CALLERS = ["admin", "service", "reviewer", "analyst", "no key", "revoked key"]

# request bodies that pass validation, so an allowed caller reaches the route itself
BODIES: dict[tuple[str, str], object] = {
    ("POST", "/v1/keys"): {"name": "matrix", "role": "analyst"},
    ("PATCH", "/v1/keys/{key_id}"): {"lead": False},
    ("POST", "/v1/keys/{key_id}/rotate"): {"grace_seconds": 0},
    ("POST", "/v1/tasks"): {"name": "other", "labels": ["a", "b"]},
    ("PATCH", "/v1/tasks/{task}"): {"audit_rate": 0.1},
    ("POST", "/v1/tasks/{task}/cases"): {"features": claims_case(random.Random(1))[0]},
    ("POST", "/v1/tasks/{task}/cases/batch"): {
        "cases": [{"features": claims_case(random.Random(2))[0]}]
    },
    ("POST", "/v1/tasks/{task}/predict"): {"features": claims_case(random.Random(3))[0]},
    ("POST", "/v1/cases/{case_id}/feedback"): {"label": "approve"},
    ("POST", "/v1/cases/{case_id}/label"): {"label": "approve", "lease_id": "l_none"},
    ("POST", "/v1/cases/{case_id}/correct"): {"label": "approve"},
    ("POST", "/v1/cases/{case_id}/release"): {"lease_id": "l_none"},
    ("PUT", "/v1/tasks/{task}/webhook"): {"url": "http://127.0.0.1:9/hook"},
    ("POST", "/v1/tasks/{task}/gold"): {"cases": [{"case_id": "c_none", "label": "approve"}]},
}


def schema_routes(app) -> set[tuple[str, str]]:  # type: ignore[no-untyped-def]
    return {
        (method.upper(), path)
        for path, operations in app.openapi()["paths"].items()
        for method in operations
    }


@pytest.fixture(scope="module")
def world(databases, tmp_path_factory) -> Iterator[dict]:  # type: ignore[no-untyped-def]
    """One app, a task with a case, a key of each role and a revoked key (shared by the
    matrix: its calls only need to reach, or be refused by, each route)."""
    url = databases.fresh(tmp_path_factory.mktemp("matrix"))
    settings = Settings(database_url=url, admin_key=ADMIN_KEY, env="dev", webhook_dispatch=False)
    with TestClient(create_app(settings)) as client:
        api = Api(client)
        api.create_task()
        case = api.send("claims", claims_case(random.Random(0))[0])
        headers = {role: api.as_(role) for role in ("service", "reviewer", "analyst")}
        headers["admin"] = api.admin
        headers["no key"] = {}
        revoked = client.post(
            "/v1/keys", json={"name": "gone", "role": "admin"}, headers=api.admin
        ).json()
        assert client.delete(f"/v1/keys/{revoked['id']}", headers=api.admin).status_code == 204
        headers["revoked key"] = auth(revoked["key"])
        victim = client.post(
            "/v1/keys", json={"name": "victim", "role": "analyst"}, headers=api.admin
        ).json()
        params = {
            "task": "claims",
            "case_id": case["id"],
            "key_id": victim["id"],
            "event_id": "evt_1",
            "version": "0",
        }
        yield {"client": client, "headers": headers, "params": params, "app": client.app}


def test_every_route_has_a_declared_rule(world):
    routes = schema_routes(world["app"])
    undeclared = routes - RULES.keys()
    assert not undeclared, f"routes without an authorization rule (add them to RULES): {undeclared}"
    stale = RULES.keys() - routes
    assert not stale, f"rules for routes that no longer exist: {stale}"


def test_every_v1_route_authenticates_and_a_new_one_without_would_be_caught(tmp_path):
    app = create_app(Settings(database_url=f"sqlite:///{tmp_path / 'x.db'}", env="dev"))
    assert unauthenticated_routes(app) == []  # create_app refuses to build otherwise
    leak = APIRouter(prefix="/v1")
    leak.add_api_route("/leak", lambda: {"secret": 1}, methods=["GET"])
    app.include_router(leak)
    assert unauthenticated_routes(app) == ["['GET'] /v1/leak"]


@pytest.mark.parametrize(("method", "path"), sorted(RULES))
def test_route_answers_each_caller_as_documented(world, method, path):
    client, params = world["client"], world["params"]
    url = path.format(**params)
    body = BODIES.get((method, path))
    allowed = RULES[(method, path)]
    for caller in CALLERS:
        response = client.request(
            method,
            url,
            headers=world["headers"][caller],
            **({"json": body} if body is not None else {}),
        )
        status = response.status_code
        if allowed == PUBLIC:
            assert status < 400 or status == 503, (caller, status, response.text)
        elif caller in ("no key", "revoked key"):
            assert status == 401, (caller, status, response.text)
            assert response.headers.get("www-authenticate") == "Bearer"
        elif caller in allowed:
            assert status not in (401, 403), (caller, status, response.text)
            assert status < 500, (caller, status, response.text)
        else:
            assert status == 403, (caller, status, response.text)


# --- object level ----------------------------------------------------------------------
def test_reviewer_labels_only_under_a_lease_it_holds(api):
    api.create_task()
    api.teach("claims", 0)
    api.send("claims", claims_case(random.Random(5))[0])
    held = api.claim("claims", reviewer="alice")
    assert held is not None
    case_id = held["case"]["id"]
    bob = api.as_("reviewer", "bob")
    stolen = api.client.post(  # bob presents alice's lease
        f"/v1/cases/{case_id}/label",
        json={"label": "approve", "lease_id": held["lease_id"]},
        headers=bob,
    )
    assert stolen.status_code == 409
    release = api.client.post(
        f"/v1/cases/{case_id}/release", json={"lease_id": held["lease_id"]}, headers=bob
    )
    assert release.status_code == 409
    assert api.label(held, "approve", reviewer="alice").status_code == 200
    corrected = api.client.post(
        f"/v1/cases/{case_id}/correct", json={"label": "reject"}, headers=bob
    )
    assert corrected.status_code == 403  # only the labeller (or an admin) corrects


def scoped_key(api, role: str, tasks: list[str]) -> dict[str, str]:
    created = api.client.post(
        "/v1/keys",
        json={"name": f"{role}-{'-'.join(tasks)}", "role": role, "tasks": tasks},
        headers=api.admin,
    )
    assert created.status_code == 201, created.text
    assert created.json()["tasks"] == tasks
    return auth(created.json()["key"])


def test_scoped_service_key_acts_on_its_tasks_only(api):
    api.create_task("claims")
    api.create_task("other")
    mine = scoped_key(api, "service", ["claims"])
    features = claims_case(random.Random(1))[0]
    sent = api.client.post("/v1/tasks/claims/cases", json={"features": features}, headers=mine)
    assert sent.status_code == 201
    refused = api.client.post("/v1/tasks/other/cases", json={"features": features}, headers=mine)
    assert refused.status_code == 403 and "other" in refused.json()["detail"]
    foreign = api.send("other", features)  # by an unscoped service key
    assert api.client.get(f"/v1/cases/{sent.json()['id']}", headers=mine).status_code == 200
    hidden = api.client.get(f"/v1/cases/{foreign['id']}", headers=mine)
    assert hidden.status_code == 404  # another task's case: as if it did not exist
    feedback = api.client.post(
        f"/v1/cases/{foreign['id']}/feedback", json={"label": "approve"}, headers=mine
    )
    assert feedback.status_code == 404
    assert api.client.get("/v1/tasks", headers=mine).status_code == 403  # services send cases
    reader = scoped_key(api, "analyst", ["claims"])
    listed = api.client.get("/v1/tasks", headers=reader).json()
    assert [t["name"] for t in listed["data"]] == ["claims"]
    assert api.client.get("/v1/tasks/other", headers=reader).status_code == 403
    me = api.client.get("/v1/me", headers=mine).json()
    assert me["tasks"] == ["claims"]


def test_scoped_reviewer_cannot_claim_or_label_elsewhere(api):
    api.create_task("claims")
    api.create_task("other")
    api.send("other", claims_case(random.Random(2))[0])
    mine = scoped_key(api, "reviewer", ["claims"])
    assert api.client.post("/v1/tasks/other/queue/claim", headers=mine).status_code == 403
    held = api.claim("other")
    assert held is not None
    label = api.client.post(
        f"/v1/cases/{held['case']['id']}/label",
        json={"label": "approve", "lease_id": held["lease_id"]},
        headers=mine,
    )
    assert label.status_code == 404


def test_scoped_analyst_sees_only_its_tasks_in_the_audit_trail(api):
    api.create_task("claims")
    api.create_task("other")
    mine = scoped_key(api, "analyst", ["claims"])
    rows = api.client.get("/v1/audit", headers=mine).json()["data"]
    assert rows and {r["task"] for r in rows} == {"claims"}


def test_scope_names_must_be_task_names(api):
    response = api.client.post(
        "/v1/keys",
        json={"name": "x", "role": "service", "tasks": ["Not A Task!"]},
        headers=api.admin,
    )
    assert response.status_code == 422 and "tasks" in str(response.json()["detail"])
