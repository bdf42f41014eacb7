"""Point 8 of the foundation: kill -9 at any point loses nothing acknowledged."""

from __future__ import annotations

import random
import threading
import time

import httpx
import pytest

from tests.utils.factories import ADMIN_KEY, CLAIMS_FEATURES, auth, claims_case
from tests.utils.server import ServerProcess

pytestmark = pytest.mark.slow


def probe_set() -> list[dict]:
    rng = random.Random(99)
    return [claims_case(rng)[0] for _ in range(20)]


def observe(client: httpx.Client) -> dict:
    task = client.get("/v1/tasks/claims").json()
    metrics = client.get("/v1/tasks/claims/metrics").json()
    probes = [
        client.post("/v1/tasks/claims/predict", json={"features": x}).json()["proba"]
        for x in probe_set()
    ]
    return {"version": task["model_version"], "metrics": metrics, "probes": probes}


def test_kill_9_loses_no_acknowledged_case_or_label(tmp_path, database_url):
    env = {
        "TIERLINE_DATABASE_URL": database_url,
        "TIERLINE_ADMIN_KEY": ADMIN_KEY,
        "TIERLINE_ENV": "dev",
        "TIERLINE_SNAPSHOT_EVERY": "30",
    }
    server = ServerProcess(env, log=tmp_path / "server.log").start()
    admin = httpx.Client(base_url=server.url, headers=auth(ADMIN_KEY), timeout=10)
    admin.post(
        "/v1/tasks",
        json={
            "name": "claims",
            "labels": ["approve", "reject"],
            "features": CLAIMS_FEATURES,
            "min_labels": 20,
            "threshold": 0.7,
        },
    ).raise_for_status()
    reviewer = admin.post("/v1/keys", json={"name": "rev", "role": "reviewer"}).json()["key"]
    rev = httpx.Client(base_url=server.url, headers=auth(reviewer), timeout=10)

    rng = random.Random(3)
    truth: dict[str, str] = {}
    for _ in range(120):
        x, y = claims_case(rng)
        truth[admin.post("/v1/tasks/claims/cases", json={"features": x}).json()["id"]] = y
    labelled = {}
    for _ in range(70):  # label part of the queue, leave the rest waiting
        claim = rev.post("/v1/tasks/claims/queue/claim")
        if claim.status_code == 204:
            break
        claim = claim.json()
        case_id = claim["case"]["id"]
        response = rev.post(
            f"/v1/cases/{case_id}/label",
            json={"label": truth[case_id], "lease_id": claim["lease_id"]},
        )
        assert response.status_code == 200
        labelled[case_id] = truth[case_id]

    # keep sending cases while the server is killed; remember what was acknowledged
    acknowledged: list[str] = []
    stop = threading.Event()

    def load() -> None:
        with httpx.Client(base_url=server.url, headers=auth(ADMIN_KEY), timeout=5) as c:
            load_rng = random.Random(5)
            while not stop.is_set():
                try:
                    r = c.post(
                        "/v1/tasks/claims/cases", json={"features": claims_case(load_rng)[0]}
                    )
                except httpx.TransportError:
                    return
                if r.status_code == 201:
                    acknowledged.append(r.json()["id"])

    before = observe(admin)
    sender = threading.Thread(target=load)
    sender.start()
    while len(acknowledged) < 30 and sender.is_alive():
        time.sleep(0.01)
    server.kill()
    stop.set()
    sender.join()

    server.start()
    after = observe(admin)
    assert after["version"] == before["version"] == len(labelled)
    assert after["probes"] == before["probes"]
    for case_id, label in labelled.items():
        case = admin.get(f"/v1/cases/{case_id}").json()
        assert case["label"] == label
    for case_id in acknowledged:
        assert admin.get(f"/v1/cases/{case_id}").status_code == 200
    metrics = after["metrics"]
    assert metrics["cases"] >= 120 + len(acknowledged)  # a case may land unacknowledged
    assert metrics["labels"] == len(labelled)

    # the queue holds the same cases: everything pending before is still claimable
    waiting_before = {c for c in truth if c not in labelled}
    claimed = set()
    while (claim := rev.post("/v1/tasks/claims/queue/claim")).status_code == 200:
        claimed.add(claim.json()["case"]["id"])
    assert {
        c
        for c in waiting_before
        if admin.get(f"/v1/cases/{c}").json()["route"] != "auto"
        or admin.get(f"/v1/cases/{c}").json()["audit"]
    } <= claimed
    assert server.stop() == 0
