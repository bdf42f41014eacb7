"""Fuzzing: schemathesis generates requests from the full OpenAPI schema and sends them,
in process (ASGI), with a valid key of each role. No answer may be a 5xx, and every
answer must match what the schema says of that route (status code, content type,
body, headers). At least 1,000 requests in all.

Runs on SQLite only (the PostgreSQL phase of ``make test`` keeps only tests that use
the ``databases`` fixture): what it checks is the HTTP layer, not the database.
"""

from __future__ import annotations

import random
from collections import Counter

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from api.main import create_app
from api.settings import Settings
from tests.utils.factories import ADMIN_KEY, Api, auth, claims_case

ROLES = ("service", "reviewer", "analyst", "admin")
EXAMPLES_PER_OPERATION = 10  # x 41 operations x 4 roles: 1,460 requests (some have fewer)
MIN_REQUESTS = 1000
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]


@pytest.fixture(scope="module")
def target(tmp_path_factory):  # type: ignore[no-untyped-def]
    """A seeded database (a task with cases, a key per role), then the app to fuzz."""
    url = f"sqlite:///{tmp_path_factory.mktemp('fuzz') / 'tierline.db'}"
    config = Settings(database_url=url, admin_key=ADMIN_KEY, env="dev", webhook_dispatch=False)
    with TestClient(create_app(config)) as client:
        api = Api(client)
        api.create_task()
        rng = random.Random(0)
        cases = [api.send("claims", claims_case(rng)[0])["id"] for _ in range(20)]
        keys = {role: api.key(role) for role in ROLES if role != "admin"}
        keys["admin"] = ADMIN_KEY
    app = create_app(config)
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    state = {"schema": schema, "keys": keys, "cases": cases}
    yield {**state, "calls": Counter(), "statuses": Counter()}
    from schemathesis.python.asgi import shutdown_lifespans

    shutdown_lifespans()


def _aim(case, rng: random.Random, cases: list[str]) -> None:  # type: ignore[no-untyped-def]
    """Point most generated paths at things that exist, so the routes' logic runs too."""
    params = case.path_parameters or {}
    if "task" in params and rng.random() < 0.7:
        params["task"] = "claims"
    if "case_id" in params and rng.random() < 0.7:
        params["case_id"] = rng.choice(cases)


@pytest.mark.parametrize("role", ROLES)
def test_fuzz_the_whole_schema_as_each_role(target, role):
    schema, headers = target["schema"], auth(target["keys"][role])
    rng = random.Random(role)
    failures = []
    for result in schema.get_all_operations():
        operation = result.ok()

        @given(
            case=st.one_of(
                operation.as_strategy(GenerationMode.POSITIVE),
                operation.as_strategy(GenerationMode.NEGATIVE),
            )
        )
        @settings(
            max_examples=EXAMPLES_PER_OPERATION,
            deadline=None,
            database=None,
            derandomize=True,
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        def run(case):  # type: ignore[no-untyped-def]
            _aim(case, rng, target["cases"])
            target["calls"][role] += 1
            try:
                response = case.call_and_validate(headers=headers, checks=CHECKS)
                target["statuses"][response.status_code] += 1
            except Exception as exc:  # collect, so one run reports every broken route
                failures.append(f"{case.operation.label}: {str(exc).strip()[:600]}")
                raise

        try:
            run()
        except Exception:
            if not failures:
                raise
    assert not failures, "\n\n".join(failures[:10])
    assert target["calls"][role] >= MIN_REQUESTS / len(ROLES)
