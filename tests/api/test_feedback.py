"""Downstream feedback: stored beside the case, learned, counted, but never evidence."""

from __future__ import annotations

import random

from fastapi.testclient import TestClient

from api.main import create_app
from api.settings import Settings
from tests.utils.factories import Api, claims_case


def governor_state(client: TestClient, task: str = "claims") -> dict:
    store = client.app.state.tierline.store
    live = store.get(store.tasks.get(task))
    return {
        "controller": live.governor.controller.to_state(),
        "n_labels": live.governor.n_labels,
        "mode": live.governor.mode,
    }


def labelled_task(api: Api) -> list[str]:
    """A fixed-threshold task out of its cold start; the ids of its decided cases."""
    api.create_task(min_labels=5, threshold=0.6, audit_rate=0.5)
    api.teach("claims", 12, seed=4)
    rng = random.Random(8)
    sent = [api.send("claims", claims_case(rng)[0]) for _ in range(10)]
    return [c["id"] for c in sent if c["status"] == "decided"] + [
        c["id"] for c in sent if c["status"] == "pending"
    ]


def test_feedback_is_learned_and_counted_but_kept_out_of_the_evidence(
    settings: Settings,
) -> None:
    with TestClient(create_app(settings)) as client:
        after, evidence, proba = _give_feedback(client)
    # a restart replays the label log, feedback included, to the same model and evidence
    with TestClient(create_app(settings)) as restarted:
        assert governor_state(restarted) == evidence
        again = Api(restarted)
        predicted = again.client.post(
            "/v1/tasks/claims/predict", json={"features": PROBE}, headers=again.admin
        )
        assert predicted.json()["proba"] == proba
        metrics = again.client.get("/v1/tasks/claims/metrics", headers=again.admin).json()
        assert metrics["model_version"] == after["model_version"]
        assert metrics["feedback"] == 3


PROBE = {"amount": 12_000.0, "country": "es", "note": "stolen phone abroad", "vip": False}


def test_erasing_a_case_known_only_by_its_feedback_writes_a_snapshot_past_it(
    api: Api,
) -> None:
    """A decided case whose only labels are feedback reports: once its features are erased,
    a restart (even ``kill -9``, which writes no snapshot) must start after those reports
    rather than replay them on empty features."""
    from sqlmodel import col, func, select

    from api.tables import Label, ModelSnapshot

    labelled_task(api)
    rng = random.Random(3)
    decided = [c for c in (api.send("claims", claims_case(rng)[0]) for _ in range(30))
               if c["status"] == "decided"][:3]  # fmt: skip
    assert decided
    for case in decided:
        wrong = "reject" if case["decision"] == "approve" else "approve"
        api.client.post(
            f"/v1/cases/{case['id']}/feedback", json={"label": wrong}, headers=api.as_("service")
        ).raise_for_status()
    db = api.client.app.state.tierline.db
    for case in decided:
        assert api.client.delete(f"/v1/cases/{case['id']}", headers=api.admin).status_code == 204
        with db.read() as session:
            newest = session.exec(select(func.max(ModelSnapshot.last_label_id))).one()
            reports = session.exec(
                select(func.max(Label.id)).where(col(Label.case_id) == case["id"])
            ).one()
        assert newest is not None and newest >= reports


def _give_feedback(client: TestClient) -> tuple[dict, dict, dict]:
    api = Api(client)
    labelled_task(api)
    decided = [
        c
        for c in (
            api.client.get(f"/v1/cases/{cid}", headers=api.admin).json()
            for cid in _all_case_ids(api)
        )
        if c["status"] == "decided"
    ]
    assert decided
    before = api.client.get("/v1/tasks/claims/metrics", headers=api.admin).json()
    evidence = governor_state(client)
    curve_before = api.client.get("/v1/tasks/claims/curve", headers=api.admin).json()["points"]

    service = api.as_("service")
    for case in decided[:3]:
        wrong = "reject" if case["decision"] == "approve" else "approve"
        response = api.client.post(
            f"/v1/cases/{case['id']}/feedback",
            json={"label": wrong, "source": "appeals", "comment": "overturned on appeal"},
            headers=service,
        )
        assert response.status_code == 201, response.text
        body = response.json()
        assert body["agrees"] is False and body["decision"] == case["decision"]
        assert body["source"] == "appeals" and body["reported_by"] == "test-service"

    after = api.client.get("/v1/tasks/claims/metrics", headers=api.admin).json()
    assert after["feedback"] == before["feedback"] + 3 == 3
    assert after["model_version"] == before["model_version"] + 3  # learned
    assert after["labels"] == before["labels"]  # not a review label
    assert after["auto_error_estimate"] == before["auto_error_estimate"]
    assert governor_state(client) == evidence  # not evidence
    curve_after = api.client.get("/v1/tasks/claims/curve", headers=api.admin).json()["points"]
    assert curve_after == curve_before

    # the case keeps its decision; the report sits beside it
    case = api.client.get(f"/v1/cases/{decided[0]['id']}", headers=api.admin).json()
    assert case["decision"] == decided[0]["decision"]
    listed = api.client.get(f"/v1/cases/{decided[0]['id']}/feedback", headers=api.admin).json()
    assert listed["count"] == 1 and listed["data"][0]["comment"] == "overturned on appeal"

    proba = api.client.post(
        "/v1/tasks/claims/predict", json={"features": PROBE}, headers=service
    ).json()["proba"]
    return after, governor_state(client), proba


def _all_case_ids(api: Api) -> list[str]:
    state = api.client.app.state.tierline
    from sqlmodel import select

    from api.tables import Case

    with state.db.read() as session:
        return list(session.exec(select(Case.id)).all())


def test_feedback_rules(api: Api) -> None:
    labelled_task(api)
    ids = _all_case_ids(api)
    cases = [api.client.get(f"/v1/cases/{i}", headers=api.admin).json() for i in ids]
    decided = next(c for c in cases if c["status"] == "decided")
    pending = next(c for c in cases if c["status"] == "pending")
    url = f"/v1/cases/{decided['id']}/feedback"
    body = {"label": "approve", "external_id": "appeal-17"}

    assert api.client.post(url, json=body, headers=api.as_("reviewer")).status_code == 403
    assert api.client.post(url, json=body, headers=api.as_("analyst")).status_code == 403
    bad = api.client.post(url, json={"label": "maybe"}, headers=api.admin)
    assert bad.status_code == 422 and bad.json()["detail"][0]["loc"] == ["body", "label"]
    assert api.client.post(url, json={"lbl": "approve"}, headers=api.admin).status_code == 422
    assert (
        api.client.post("/v1/cases/c_nope/feedback", json=body, headers=api.admin).status_code
        == 404
    )
    waiting = api.client.post(
        f"/v1/cases/{pending['id']}/feedback", json={"label": "approve"}, headers=api.admin
    )
    assert waiting.status_code == 409

    first = api.client.post(url, json=body, headers=api.as_("service"))
    assert first.status_code == 201
    repeat = api.client.post(url, json=body, headers=api.as_("service"))
    assert repeat.status_code == 200 and repeat.json()["id"] == first.json()["id"]
    other = next(c for c in cases if c["status"] == "decided" and c["id"] != decided["id"])
    clash = api.client.post(
        f"/v1/cases/{other['id']}/feedback", json=body, headers=api.as_("service")
    )
    assert clash.status_code == 409
    metrics = api.client.get("/v1/tasks/claims/metrics", headers=api.admin).json()
    assert metrics["feedback"] == 1


def test_the_cold_start_counts_labelled_cases_not_their_corrections_or_reports(api):
    """Ten corrections of a case, or ten reports on it, are still one labelled case: a
    service key's feedback could otherwise take a fixed-threshold task out of its cold
    start and have it decide cases while the task said "assist" (an outside probe)."""
    api.create_task(threshold_policy="fixed", threshold=0.0, min_labels=10)
    rng = random.Random(5)
    labelled = []
    for label in ("approve", "reject"):
        api.send("claims", claims_case(rng)[0])
        claim = api.claim("claims")
        assert claim is not None and api.label(claim, label).status_code == 200
        labelled.append(claim["case"]["id"])
    for i in range(12):
        case_id = labelled[i % 2]
        flipped = "approve" if i % 4 < 2 else "reject"
        api.client.post(
            f"/v1/cases/{case_id}/feedback", json={"label": flipped}, headers=api.as_("service")
        ).raise_for_status()
        api.client.post(
            f"/v1/cases/{case_id}/correct", json={"label": flipped}, headers=api.admin
        ).raise_for_status()

    def cold() -> None:
        case = api.send("claims", claims_case(rng)[0])
        assert case["route"] != "auto" and case["threshold"] is None
        assert "cold start: 2 of 10 labels" in case["reasons"][0]
        task = api.client.get("/v1/tasks/claims", headers=api.admin).json()
        assert task["mode"] == "assist" and task["mode_reason"] == "cold start: 2 of 10 labels"

    cold()
    state = api.client.app.state.tierline
    state.store.forget(state.store.tasks.get("claims").id)  # rebuilt from the label log
    cold()
