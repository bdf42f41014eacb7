"""Rolling a model back to a kept snapshot (``tierline model rollback``)."""

from __future__ import annotations

import random

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from api.cli import app as cli
from api.main import create_app
from api.settings import get_settings
from tests.utils.factories import Api, claims_case

PROBES = [claims_case(random.Random(7))[0] for _ in range(5)]


def served(api: Api) -> tuple[int, list[dict]]:
    answers = [
        api.client.post("/v1/tasks/claims/predict", json={"features": x}, headers=api.admin).json()
        for x in PROBES
    ]
    return answers[0]["model_version"], [a["proba"] for a in answers]


@pytest.fixture
def cli_env(settings, monkeypatch):
    monkeypatch.setenv("TIERLINE_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("TIERLINE_ENV", "dev")
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def test_rollback_restores_a_kept_snapshot_and_learning_goes_on_from_it(settings, cli_env):
    with TestClient(create_app(settings)) as client:  # snapshot_every=25: kept at 25, 50
        api = Api(client)
        api.create_task(min_labels=10, threshold=0.6)
        rng = random.Random(1)
        truth = {}
        for _ in range(60):
            x, y = claims_case(rng)
            truth[api.send("claims", x)["id"]] = y
        at_25 = None
        while (claim := api.claim("claims")) is not None:
            assert api.label(claim, truth[claim["case"]["id"]]).status_code == 200
            if served(api)[0] == 25:
                at_25 = served(api)
        assert at_25 is not None and served(api)[0] == 60
        # refused while a process runs (a probe rolled back under a running SQLite API: the
        # task said assist while the API went on automating, and its snapshot at shutdown
        # undid the rollback)
        result = CliRunner().invoke(cli, ["model", "rollback", "-t", "claims", "--version", "30"])
        assert result.exit_code == 2 and "stop them" in result.output

    result = CliRunner().invoke(cli, ["model", "rollback", "-t", "claims", "--version", "30"])
    assert result.exit_code == 0, result.output
    assert "rolled back to version 25" in result.output

    with TestClient(create_app(settings)) as client:
        api = Api(client)
        assert served(api) == at_25  # the model of version 25, after a restart
        history = client.get("/v1/tasks/claims/history", headers=api.admin).json()["data"]
        assert any("rolled back to version 25" in h["reason"] for h in history)
        trail = client.get(
            "/v1/audit", params={"action": "model.activated"}, headers=api.admin
        ).json()["data"]
        assert [(r["actor"]["id"], r["after"]["version"]) for r in trail] == [("cli", 25)]
        api.teach("claims", 5, seed=9)  # learning continues from the restored model
        version, _ = served(api)
        assert 25 < version < 60
        metrics = client.get("/v1/tasks/claims/metrics", headers=api.admin).json()
        assert metrics["model_version"] == version and metrics["labels"] > version


def test_rollback_to_a_version_without_snapshot_is_refused(settings, cli_env):
    with TestClient(create_app(settings)) as client:
        Api(client).create_task()
    result = CliRunner().invoke(cli, ["model", "rollback", "-t", "claims", "--version", "3"])
    assert result.exit_code == 2 and "no signed snapshot" in result.output
    result = CliRunner().invoke(cli, ["model", "rollback", "-t", "nope", "--version", "3"])
    assert result.exit_code == 2 and "not found" in result.output


def test_after_a_crash_the_rollback_keeps_the_head_it_replaces(settings, cli_env, monkeypatch):
    """The API died before its shutdown snapshot: the head of 40 labels is only in the log.
    The rollback rebuilds and keeps it first, so rolling back to 40 undoes the rollback."""
    from api.live import ModelStore

    with monkeypatch.context() as crash, TestClient(create_app(settings)) as client:
        api = Api(client)
        api.create_task(min_labels=10, threshold=0.6)
        api.teach("claims", 40)
        head = served(api)
        assert head[0] == 40
        crash.setattr(ModelStore, "snapshot_all", lambda self: None)  # no shutdown snapshot
    for version, restored in (("30", 25), ("40", 40)):
        rollback = ["model", "rollback", "-t", "claims", "--version", version]
        result = CliRunner().invoke(cli, rollback)
        assert result.exit_code == 0 and f"rolled back to version {restored}" in result.output
    # nothing left out: the reason names no labels
    assert result.output.strip().endswith("rolled back to version 40 by tierline CLI (root)")
    with TestClient(create_app(settings)) as client:
        assert served(Api(client)) == head
