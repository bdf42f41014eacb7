"""The Python client against a real ``tierline serve`` process: every route, typed errors
carrying the API's detail, and data frames."""

from __future__ import annotations

import random
import time

import pandas as pd
import pytest

from api.client import (
    Conflict,
    Forbidden,
    InvalidInput,
    NotFound,
    TierlineClient,
    Unauthorized,
    Unavailable,
    cases_frame,
    curve_frame,
    labels_frame,
    metrics_frame,
    to_dataframe,
)
from tests.utils.factories import ADMIN_KEY, CLAIMS_FEATURES, claims_case
from tests.utils.receiver import WebhookReceiver
from tests.utils.server import ServerProcess, free_port

pytestmark = pytest.mark.slow


@pytest.fixture
def server(fresh_database_url, tmp_path):
    env = {
        "TIERLINE_DATABASE_URL": fresh_database_url(),
        "TIERLINE_ADMIN_KEY": ADMIN_KEY,
        "TIERLINE_ENV": "dev",
        "TIERLINE_WEBHOOK_POLL_SECONDS": "0.1",
    }
    running = ServerProcess(env, log=tmp_path / "server.log").start()
    yield running
    assert running.stop() == 0


def test_client_drives_every_route_of_a_real_server(server: ServerProcess, tmp_path) -> None:
    admin = TierlineClient(server.url, ADMIN_KEY)
    assert admin.healthz() == {"status": "ok"}
    assert admin.wait_ready()["status"] == "ready"
    assert admin.me()["role"] == "admin"

    # keys
    keys = {
        role: admin.create_key(f"c-{role}", role) for role in ("service", "reviewer", "analyst")
    }
    service = TierlineClient(server.url, keys["service"]["key"])
    reviewer = TierlineClient(server.url, keys["reviewer"]["key"])
    analyst = TierlineClient(server.url, keys["analyst"]["key"])
    assert {k["name"] for k in admin.list_keys()} >= {"c-service", "c-reviewer", "c-analyst"}

    # tasks
    task = admin.create_task("claims", ["approve", "reject"], CLAIMS_FEATURES, min_labels=5)
    assert task["mode"] == "assist" and task["automation"] == "on"
    with pytest.raises(Conflict, match="already exists"):
        admin.create_task("claims", ["approve", "reject"])
    with pytest.raises(Forbidden):
        service.create_task("other", ["a", "b"])
    with pytest.raises(InvalidInput, match="labels"):
        admin.create_task("bad", ["only"])
    assert [t["name"] for t in analyst.list_tasks()] == ["claims"]
    assert admin.update_task("claims", threshold=0.75)["threshold"] == 0.75
    with pytest.raises(NotFound):
        analyst.get_task("nope")

    # cases
    rng = random.Random(1)
    truth = {}
    for i in range(30):
        features, label = claims_case(rng)
        case = service.send_case("claims", features, external_id=f"e{i}")
        truth[case["id"]] = label
    again = service.send_case("claims", features, external_id="e29")
    assert again["id"] == case["id"]  # idempotent
    batch = service.send_cases(
        "claims", [{"features": claims_case(rng)[0], "external_id": f"b{i}"} for i in range(5)]
    )
    assert len(batch) == 5
    with pytest.raises(InvalidInput) as bad:
        service.send_case("claims", {"amount": "a lot", "country": "fr", "note": "x", "vip": True})
    assert bad.value.status == 422 and "features.amount" in str(bad.value)
    assert service.predict("claims", features)["model_version"] == 0
    assert service.get_case(case["id"])["features"] == features
    with pytest.raises(NotFound):
        service.get_case("c_missing")
    with pytest.raises(Unauthorized):
        TierlineClient(server.url, "tl_wrong").me()

    # review
    claim = reviewer.claim("claims")
    reviewer.release(claim["case"]["id"], claim["lease_id"])
    labelled = 0
    while (claim := reviewer.claim("claims")) is not None:
        case_id = claim["case"]["id"]
        done = reviewer.label(case_id, truth.get(case_id, "approve"), claim["lease_id"])
        assert done["label"] == truth.get(case_id, "approve")
        labelled += 1
    assert labelled == 35
    corrected = reviewer.correct(
        case["id"], "reject" if truth[case["id"]] == "approve" else "approve"
    )
    assert corrected["label"] != truth[case["id"]]

    # feedback from downstream
    decided = service.get_case(case["id"])
    report = service.feedback(case["id"], "approve", source="appeals", external_id="appeal-1")
    assert report["decision"] == decided["decision"]
    assert service.feedback(case["id"], "approve", external_id="appeal-1")["id"] == report["id"]
    assert [f["source"] for f in analyst.list_feedback(case["id"])] == ["appeals"]

    # metrics, curve, history and exports as data frames
    metrics = analyst.metrics("claims")
    assert (metrics["cases"], metrics["labels"], metrics["feedback"]) == (35, 35, 1)
    assert metrics["model_version"] == 35 + 1 + 1  # labels, the correction, the feedback
    curve = curve_frame(analyst.curve("claims"))
    assert len(curve) > 0 and str(curve["at"].dtype).startswith("datetime64")
    assert len(to_dataframe(analyst.history("claims"))) >= 1
    assert metrics_frame({"claims": metrics}).loc["claims", "cases"] == 35
    labels = labels_frame(analyst.labels("claims"))
    assert len(labels) == 35 and "features.amount" in labels and labels["correct"].dtype == bool
    cases = cases_frame(analyst.cases("claims"))
    assert len(cases) == 35 and set(cases["external_id"].dropna()) >= {"e0", "b4"}
    parquet = analyst.export_to("claims", tmp_path / "labels.parquet")
    assert len(pd.read_parquet(parquet)) == 35
    with pytest.raises(Forbidden):
        reviewer.labels("claims")

    # webhooks
    with WebhookReceiver() as receiver:
        hook = admin.set_webhook("claims", receiver.url, ["case.decided", "task.mode_changed"])
        assert admin.get_webhook("claims")["events"] == hook["events"]
        ping = admin.ping_webhook("claims")
        receiver.wait_for(lambda r: len(r.delivered()) == 1)
        assert receiver.delivered()[0].event["type"] == "ping"
        # the receiver answers before the outbox records the delivery: wait for the record
        deadline = time.monotonic() + 10
        while (events := admin.webhook_events("claims"))[0]["status"] != "delivered":
            assert time.monotonic() < deadline, events
            time.sleep(0.05)
        assert events[0]["id"] == ping["id"]
        assert admin.webhook_deliveries("claims", event=ping["id"])[0]["ok"] is True
        with pytest.raises(Forbidden):
            analyst.webhook_events("claims")
        admin.delete_webhook("claims")
        with pytest.raises(NotFound):
            admin.get_webhook("claims")

    admin.revoke_key(keys["analyst"]["id"])
    with pytest.raises(Unauthorized):
        TierlineClient(server.url, keys["analyst"]["key"], max_retries=0).me()


def test_client_says_plainly_when_no_server_answers() -> None:
    client = TierlineClient(f"http://127.0.0.1:{free_port()}", ADMIN_KEY, max_retries=0)
    with pytest.raises(Unavailable, match="cannot reach the tierline API"):
        client.me()
