"""Label quality: overlap, lead decisions, second opinions, gold cases, reviewer figures."""

from __future__ import annotations

import itertools
import random
import threading
import time
from collections import Counter
from datetime import UTC, datetime

import pytest
from sqlmodel import select

from api.tables import Case, Opinion
from tests.utils.factories import auth, claims_case

CASE = {"amount": 120.5, "country": "fr", "note": "windscreen repair", "vip": False}


def _labels(api, task: str = "claims") -> list[dict]:
    response = api.client.get(f"/v1/tasks/{task}/export?what=labels", headers=api.admin)
    assert response.status_code == 200, response.text
    return [line for line in response.text.splitlines() if line.strip()]


def _version(api, task: str = "claims") -> int:
    return api.client.get(f"/v1/tasks/{task}", headers=api.admin).json()["model_version"]


def _metrics(api, task: str = "claims") -> dict:
    response = api.client.get(f"/v1/tasks/{task}/metrics", headers=api.admin)
    assert response.status_code == 200, response.text
    return response.json()


def _make_lead(api, name: str) -> None:
    api.key("reviewer", name)
    keys = api.client.get("/v1/keys", headers=api.admin).json()["data"]
    key_id = next(k["id"] for k in keys if k["name"] == name)
    response = api.client.patch(f"/v1/keys/{key_id}", json={"lead": True}, headers=api.admin)
    assert response.status_code == 200 and response.json()["lead"] is True


def _lease_of(api, case_id: str) -> str:
    db = api.client.app.state.tierline.db
    with db.read() as session:
        return session.exec(select(Case.lease_id).where(Case.id == case_id)).one()


def _opinions(client) -> list[Opinion]:
    db = client.app.state.tierline.db
    with db.read() as session:
        return list(session.exec(select(Opinion)).all())


# --- overlap -----------------------------------------------------------------------------
def test_a_rotated_key_is_the_same_reviewer_to_the_overlap_rule(api):
    """A probe rotated a reviewer's key and answered an overlap case again under the new
    one: one person's two answers made the final label."""
    api.create_task(labels_per_case=2)
    case = api.send("claims", CASE)
    assert api.label(api.claim("claims", "alice"), "reject", "alice").status_code == 200
    key_id = api.client.get("/v1/me", headers=api.as_("reviewer", "alice")).json()["id"]
    rotated = api.client.post(
        f"/v1/keys/{key_id}/rotate", json={"grace_seconds": 0}, headers=api.admin
    ).json()
    again = rotated["key"]
    twice = api.client.post("/v1/tasks/claims/queue/claim", headers=auth(again))
    assert twice.status_code == 204  # the case waits for someone else
    assert api.claim("claims", "bob")["case"]["id"] == case["id"]


def test_overlap_case_goes_to_distinct_reviewers_and_only_final_label_trains(api):
    api.create_task(labels_per_case=2)
    case = api.send("claims", CASE)
    alice = api.claim("claims", "alice")
    response = api.label(alice, "reject", "alice")
    assert response.status_code == 200
    body = response.json()
    assert body["label"] is None and body["status"] == "pending"
    assert _version(api) == 0 and _labels(api) == []  # an opinion is not a label
    assert api.claim("claims", "alice") is None  # never twice to the same reviewer
    bob = api.claim("claims", "bob")
    assert bob["case"]["id"] == case["id"]
    final = api.label(bob, "reject", "bob").json()
    assert final["label"] == "reject" and final["status"] == "decided"
    assert _version(api) == 1 and len(_labels(api)) == 1
    assert api.claim("claims", "carol") is None


def test_repeated_opinion_call_is_idempotent(api):
    api.create_task(labels_per_case=2)
    api.send("claims", CASE)
    alice = api.claim("claims", "alice")
    first = api.label(alice, "approve", "alice")
    again = api.label(alice, "approve", "alice")
    assert again.status_code == 200 and again.json()["label"] is None
    assert api.label(alice, "reject", "alice").status_code == 409
    assert len(_opinions(api.client)) == 1 and first.status_code == 200


def test_disagreement_goes_to_a_lead_who_decides(api):
    api.create_task(labels_per_case=2)
    api.send("claims", CASE)
    api.label(api.claim("claims", "alice"), "approve", "alice")
    api.label(api.claim("claims", "bob"), "reject", "bob")
    assert _labels(api) == [] and _metrics(api)["escalated"] == 1
    assert api.claim("claims", "carol") is None  # not a lead
    _make_lead(api, "lena")
    me = api.client.get("/v1/me", headers=api.as_("reviewer", "lena")).json()
    assert me["lead"] is True
    assert api.client.get("/v1/me", headers=api.admin).json()["lead"] is True  # admins decide
    assert api.client.get("/v1/me", headers=api.as_("reviewer", "carol")).json()["lead"] is False
    made = api.client.post(
        "/v1/keys", json={"name": "lea", "role": "reviewer", "lead": True}, headers=api.admin
    ).json()
    assert made["lead"] is True  # the answer says what was made
    lead = api.claim("claims", "lena")
    assert lead is not None
    # the lead sees what each reviewer answered: a disagreement is not decided blind
    assert lead["disagreement"] == [
        {"reviewer": "alice", "label": "approve"},
        {"reviewer": "bob", "label": "reject"},
    ]
    decided = api.label(lead, "reject", "lena").json()
    assert decided["label"] == "reject" and decided["labelled_by"] == "lena"
    assert _version(api) == 1
    agrees = {o.reviewer: o.agrees for o in _opinions(api.client)}
    assert agrees == {"alice": False, "bob": True, "lena": True}


def test_majority_of_three_is_final_and_logged_under_a_reviewer_who_gave_it(api):
    api.create_task(labels_per_case=3)
    api.send("claims", CASE)
    api.label(api.claim("claims", "alice"), "approve", "alice")
    api.label(api.claim("claims", "bob"), "approve", "bob")
    final = api.label(api.claim("claims", "carol"), "reject", "carol").json()
    assert final["label"] == "approve" and final["labelled_by"] == "alice"
    assert _version(api) == 1


def test_lead_who_gave_an_opinion_is_not_handed_the_escalation(api):
    api.create_task(labels_per_case=2)
    _make_lead(api, "lena")
    api.send("claims", CASE)
    api.label(api.claim("claims", "lena"), "approve", "lena")
    api.label(api.claim("claims", "bob"), "reject", "bob")
    assert api.claim("claims", "lena") is None
    assert api.client.post("/v1/tasks/claims/queue/claim", headers=api.admin).status_code == 200


# --- second opinions -----------------------------------------------------------------------
def _teach_one(api):
    """One label first: before it there is no model, hence no suggestion to contradict."""
    api.send("claims", dict(CASE, amount=12.0))
    assert api.label(api.claim("claims", "zed"), "approve", "zed").json()["label"] == "approve"


def test_contradicting_a_confident_model_asks_a_second_reviewer(api):
    api.create_task(second_opinion_confidence=0.0, second_opinion_share=1.0)
    _teach_one(api)
    api.send("claims", CASE)
    api.send("claims", dict(CASE, amount=99.0))
    alice = api.claim("claims", "alice")
    bob = api.claim("claims", "bob")  # another reviewer is at work: a second opinion is possible
    suggestion = alice["case"]["suggestion"]
    other = "reject" if suggestion == "approve" else "approve"
    first = api.label(alice, other, "alice").json()
    assert first["label"] is None and _version(api) == 1
    assert _metrics(api)["second_opinions"] == 1
    assert api.claim("claims", "alice") is None  # her other option is bob's leased case
    api.release(bob, "bob")
    second = api.claim("claims", "bob")
    while second["case"]["id"] != alice["case"]["id"]:
        api.label(second, second["case"]["suggestion"], "bob")
        second = api.claim("claims", "bob")
    final = api.label(second, other, "bob").json()
    assert final["label"] == other
    rest = api.claim("claims", "bob")
    if rest is not None:
        assert api.label(rest, rest["case"]["suggestion"], "bob").json()["label"] is not None
    metrics = _metrics(api)
    assert metrics["second_opinions"] == 1 and metrics["labels"] == 3
    assert metrics["second_opinion_share"] == pytest.approx(1 / 3)


def test_a_lone_reviewers_contradiction_stands(api):
    api.create_task(second_opinion_confidence=0.0, second_opinion_share=1.0)
    case = api.send("claims", CASE)
    other = "reject" if case["suggestion"] == "approve" else "approve"
    final = api.label(api.claim("claims", "alice"), other, "alice").json()
    assert final["label"] == other and _metrics(api)["second_opinions"] == 0


def test_agreeing_with_the_model_needs_no_second_opinion(api):
    api.create_task(second_opinion_confidence=0.0, second_opinion_share=1.0)
    _teach_one(api)
    case = api.send("claims", CASE)
    final = api.label(api.claim("claims", "alice"), case["suggestion"], "alice").json()
    assert final["label"] == case["suggestion"] and _metrics(api)["second_opinions"] == 0


def test_share_of_second_opinions_is_bounded_by_the_task_setting(api):
    api.create_task(second_opinion_confidence=0.0, second_opinion_share=0.25)
    _teach_one(api)
    rng = random.Random(3)
    for _ in range(24):
        api.send("claims", claims_case(rng)[0])
    names = ["alice", "bob", "carol"]
    for turn in itertools.count():  # three reviewers take turns, each contradicting the model
        order = names[turn % 3 :] + names[: turn % 3]
        claimed = ((n, api.claim("claims", n)) for n in order)
        name, claim = next(((n, c) for n, c in claimed if c is not None), (None, None))
        if claim is None:
            break
        label = "reject" if claim["case"]["suggestion"] == "approve" else "approve"
        assert api.label(claim, label, name).status_code == 200
    metrics = _metrics(api)
    assert metrics["labels"] == 25
    assert 0 < metrics["second_opinions"] <= 0.25 * 26
    assert metrics["second_opinion_share"] <= 0.25 + 1e-9


def test_low_recent_agreement_sends_labels_to_a_second_reviewer(api, monkeypatch):
    from api.services import review

    monkeypatch.setattr(review, "_gold_draws", random.Random(0))
    api.create_task(gold_rate=0.5, second_opinion_confidence=1.0, second_opinion_share=1.0)
    golds = [{"features": dict(CASE, amount=float(i)), "label": "reject"} for i in range(10)]
    created = api.client.post("/v1/tasks/claims/gold", json={"cases": golds}, headers=api.admin)
    assert created.status_code == 201 and created.json()["count"] == 10
    gold_ids = {g["case_id"] for g in created.json()["data"]}

    _always_gold(monkeypatch)
    for _ in range(10):  # alice gets every gold case wrong
        claim = api.claim("claims", "alice")
        assert claim["case"]["id"] in gold_ids
        assert claim["case"]["label"] is None and claim["case"]["status"] == "pending"
        answered = api.label(claim, "approve", "alice").json()
        assert answered["label"] == "approve" and answered["status"] == "decided"
    assert _labels(api) == [] and _version(api) == 0  # gold answers never train
    monkeypatch.setattr(review, "_gold_draws", random.Random(0))
    api.client.patch("/v1/tasks/claims", json={"gold_rate": 0.0}, headers=api.admin)
    case = api.send("claims", CASE)
    api.claim("claims", "bob")  # bob is at work (and holds the case for now)
    api.client.post(
        f"/v1/cases/{case['id']}/release",
        json={"lease_id": _lease_of(api, case["id"])},
        headers=api.as_("reviewer", "bob"),
    )
    assert case["suggestion"] is None  # gold answers never train: no model yet
    first = api.label(api.claim("claims", "alice"), "approve", "alice").json()
    assert first["label"] is None  # her recent agreement is 0: a second reviewer checks
    final = api.label(api.claim("claims", "bob"), "approve", "bob").json()
    assert final["label"] == "approve"
    listed = api.client.get("/v1/tasks/claims/gold", headers=api.admin).json()
    assert sum(g["answers"] for g in listed["data"]) == 10
    assert sum(g["correct"] for g in listed["data"]) == 0
    reviewers = api.client.get("/v1/tasks/claims/reviewers", headers=api.as_("analyst")).json()[
        "data"
    ]
    alice = next(r for r in reviewers if r["reviewer"] == "alice")
    assert alice["gold_answers"] == 10 and alice["gold_accuracy"] == 0.0
    assert alice["second_opinions_triggered"] == 1


def _always_gold(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Every claim draws gold (when a gold case is left for the reviewer)."""
    from api.services import review

    class AlwaysGold(random.Random):
        def random(self) -> float:
            return 0.0

    monkeypatch.setattr(review, "_gold_draws", AlwaysGold(0))


def _gold_served_at_every_claim(api, monkeypatch) -> dict:
    """A task whose every claim draws gold, and its one gold case (``CASE``, "approve")."""
    _always_gold(monkeypatch)
    api.create_task(gold_rate=0.5)
    return api.client.post(
        "/v1/tasks/claims/gold",
        json={"cases": [{"features": CASE, "label": "approve"}]},
        headers=api.admin,
    ).json()["data"][0]


def test_gold_case_is_served_once_per_reviewer(api, monkeypatch):
    gold = _gold_served_at_every_claim(api, monkeypatch)
    alice, bob = api.claim("claims", "alice"), api.claim("claims", "bob")
    assert alice["case"]["id"] == bob["case"]["id"] == gold["case_id"]  # at the same time
    assert api.label(alice, "approve", "alice").status_code == 200
    assert api.claim("claims", "alice") is None  # nothing else waits
    assert api.label(bob, "reject", "bob").status_code == 200
    listed = api.client.get("/v1/tasks/claims/gold", headers=api.admin).json()["data"][0]
    assert listed["answers"] == 2 and listed["correct"] == 1


def test_a_gold_case_is_served_scored_by_todays_model(api, monkeypatch):
    """A probe told gold cases apart: they kept the scoring of when they were added (model
    version 0, "cold start" in the reasons, no suggestion, an old creation time)."""
    from api.services import review

    class Draws(random.Random):
        gold = False

        def random(self) -> float:
            return 0.0 if self.gold else 1.0

    draws = Draws(0)
    monkeypatch.setattr(review, "_gold_draws", draws)
    api.create_task(gold_rate=0.5, min_labels=5)
    gold = api.client.post(
        "/v1/tasks/claims/gold",
        json={"cases": [{"features": CASE, "label": "approve"}]},
        headers=api.admin,
    ).json()["data"][0]
    api.teach("claims", 20)
    draws.gold = True
    before = time.time()
    claim = api.claim("claims", "alice")
    case = claim["case"]
    assert case["id"] == gold["case_id"]
    task = api.client.get("/v1/tasks/claims", headers=api.admin).json()
    assert case["model_version"] == task["model_version"] == 20
    assert case["suggestion"] is not None and case["proba"]
    assert not any("cold start" in reason for reason in case["reasons"]), case["reasons"]
    assert case["created_at"] >= datetime.fromtimestamp(before - 1, UTC).isoformat()
    assert api.label(claim, "approve", "alice").status_code == 200
    listed = api.client.get("/v1/tasks/claims/gold", headers=api.admin).json()["data"][0]
    assert listed["answers"] == 1 and listed["correct"] == 1


def test_gold_is_shown_created_within_the_queues_age(api, monkeypatch):
    """Served out of a backlog of hour-old cases, gold shown as created just now stood out."""
    gold = _gold_served_at_every_claim(api, monkeypatch)
    backlog = [api.send("claims", CASE) for _ in range(2)]
    api.client.app.state.tierline.store.oldest_queued.forget()  # read at most 30 s late
    claim = api.claim("claims", "alice")["case"]
    assert claim["id"] == gold["case_id"]
    served = datetime.fromisoformat(claim["created_at"])
    first, second = (datetime.fromisoformat(case["created_at"]) for case in backlog)
    assert first <= served < second  # drawn as 0: the oldest waiting case's time


def test_an_erased_gold_case_is_served_no_more(api, monkeypatch):
    """A probe erased a gold case and was handed it with no features, its answer scored."""
    gold = _gold_served_at_every_claim(api, monkeypatch)
    assert api.client.delete(f"/v1/cases/{gold['case_id']}", headers=api.admin).status_code == 204
    assert api.claim("claims", "alice") is None


def test_gold_is_admin_only_and_checks_its_labels(api):
    api.create_task()
    body = {"cases": [{"features": CASE, "label": "maybe"}]}
    bad = api.client.post("/v1/tasks/claims/gold", json=body, headers=api.admin)
    assert bad.status_code == 422 and "label" in bad.text
    body = {"cases": [{"features": CASE, "label": "approve"}]}
    denied = api.client.post("/v1/tasks/claims/gold", json=body, headers=api.as_("reviewer"))
    assert denied.status_code == 403
    assert api.client.get("/v1/tasks/claims/gold", headers=api.as_("reviewer")).status_code == 403


# --- reviewer figures and agreement -----------------------------------------------------------
def test_reviewers_route_reports_agreement_speed_and_is_for_analysts(api):
    api.create_task(labels_per_case=2)
    for i in range(4):
        api.send("claims", dict(CASE, amount=float(100 + i)))
    plan = {"alice": ["approve"] * 4, "bob": ["approve", "approve", "approve", "reject"]}
    for name, labels in plan.items():
        for label in labels:
            assert api.label(api.claim("claims", name), label, name).status_code == 200
    response = api.client.get("/v1/tasks/claims/reviewers", headers=api.as_("analyst"))
    assert response.status_code == 200
    rows = {r["reviewer"]: r for r in response.json()["data"]}
    assert rows["alice"]["labels"] == 4 and rows["bob"]["labels"] == 4
    assert rows["alice"]["checked"] == 3 and rows["alice"]["agreement_with_final"] == 1.0
    assert rows["bob"]["final_labels"] == 3
    assert rows["alice"]["seconds_per_case"] is not None
    assert rows["alice"]["seconds_per_case"] >= 0
    assert rows["alice"]["labels_per_hour"] is None or rows["alice"]["labels_per_hour"] > 0
    denied = api.client.get("/v1/tasks/claims/reviewers", headers=api.as_("reviewer"))
    assert denied.status_code == 403


def test_correcting_ones_own_label_is_no_check_on_oneself(api):
    """A reviewer who corrects their own label changed their answer: it does not count
    against their agreement (nor send their next labels to a second opinion); a
    correction by someone else does."""
    api.create_task()
    _make_lead(api, "lead")
    for i in range(3):
        api.send("claims", dict(CASE, amount=float(100 + i)))
    ids = []
    for _ in range(3):
        claim = api.claim("claims", "alice")
        ids.append(claim["case"]["id"])
        assert api.label(claim, "approve", "alice").status_code == 200
    for case_id, who in ((ids[0], "alice"), (ids[1], "alice"), (ids[2], "lead")):
        response = api.client.post(
            f"/v1/cases/{case_id}/correct",
            json={"label": "reject"},
            headers=api.as_("reviewer", who),
        )
        assert response.status_code == 200, response.text
    rows = {r["reviewer"]: r for r in api.client.get(
        "/v1/tasks/claims/reviewers", headers=api.admin).json()["data"]}  # fmt: skip
    assert rows["alice"]["checked"] == 1 and rows["alice"]["agreement_with_final"] == 0.0
    assert rows["alice"]["audited"] == 1  # the lead's correction only
    mine = {o.case_id: o.label for o in _opinions(api.client) if o.reviewer == "alice"}
    assert mine == {ids[0]: "reject", ids[1]: "reject", ids[2]: "approve"}


def test_agreement_route_and_metrics_report_kappa_and_confusion(api):
    api.create_task(labels_per_case=2)
    for i in range(4):
        api.send("claims", dict(CASE, amount=float(100 + i)))
    alice = ["approve", "approve", "reject", "reject"]
    bob = ["approve", "reject", "reject", "reject"]
    given: dict[str, str] = {}
    for label in alice:
        claim = api.claim("claims", "alice")
        given[claim["case"]["id"]] = label
        api.label(claim, label, "alice")
    order = list(given)
    for _ in bob:
        claim = api.claim("claims", "bob")
        api.label(claim, bob[order.index(claim["case"]["id"])], "bob")
    agreement = api.client.get("/v1/tasks/claims/agreement", headers=api.as_("analyst")).json()
    assert agreement["cases"] == 4 and agreement["pairs"] == 4
    assert agreement["raw_agreement"] == 0.75
    assert agreement["confusion"] == [[2, 1], [1, 4]]
    assert agreement["cohen_kappa"] == pytest.approx(0.4667, abs=1e-3)
    assert agreement["fleiss_kappa"] == pytest.approx(0.4667, abs=1e-3)
    assert agreement["label_pairs"] == [
        {"a": "approve", "b": "approve", "pairs": 1},
        {"a": "approve", "b": "reject", "pairs": 1},
        {"a": "reject", "b": "reject", "pairs": 2},
    ]
    assert agreement["per_label_kappa"]["approve"] == pytest.approx(0.4667, abs=1e-3)
    assert agreement["reviewer_pairs"][0]["cases"] == 4
    assert agreement["reviewer_pairs"][0]["cohen_kappa"] == pytest.approx(0.5)
    metrics = _metrics(api)
    assert metrics["agreement"] == 0.75 and metrics["escalated"] == 1
    assert metrics["kappa"] == pytest.approx(0.4667, abs=1e-3)
    prometheus = api.client.get("/metrics", headers=api.as_("analyst")).text
    assert 'tierline_reviewer_agreement{task="claims"} 0.75' in prometheus
    assert 'tierline_escalated_cases{task="claims"} 1.0' in prometheus


# --- settings, keys, bad input --------------------------------------------------------------
def test_quality_settings_are_validated_and_shown(api):
    bad = api.client.post(
        "/v1/tasks",
        json={"name": "bad", "labels": ["a", "b"], "labels_per_case": 0},
        headers=api.admin,
    )
    assert bad.status_code == 422 and "labels_per_case" in bad.text
    task = api.create_task(labels_per_case=3, second_opinion_share=0.2)
    assert task["labels_per_case"] == 3 and task["second_opinion_share"] == 0.2
    assert task["second_opinion_confidence"] == 0.98 and task["gold_rate"] == 0.0
    patched = api.client.patch(
        "/v1/tasks/claims", json={"second_opinion_confidence": 1.5}, headers=api.admin
    )
    assert patched.status_code == 422 and "second_opinion_confidence" in patched.text
    patched = api.client.patch("/v1/tasks/claims", json={"labels_per_case": 1}, headers=api.admin)
    assert patched.json()["labels_per_case"] == 1


def test_lead_flag_is_admin_granted(api):
    api.key("reviewer", "rita")
    keys = api.client.get("/v1/keys", headers=api.admin).json()["data"]
    rita = next(k for k in keys if k["name"] == "rita")
    assert rita["lead"] is False
    own = api.client.patch(
        f"/v1/keys/{rita['id']}", json={"lead": True}, headers=api.as_("reviewer", "rita")
    )
    assert own.status_code == 403
    assert (
        api.client.patch("/v1/keys/k_nope", json={"lead": True}, headers=api.admin).status_code
        == 404
    )
    assert (
        api.client.patch(
            f"/v1/keys/{rita['id']}", json={"lead": "x"}, headers=api.admin
        ).status_code
        == 422
    )
    created = api.client.post(
        "/v1/keys", json={"name": "lou", "role": "reviewer", "lead": True}, headers=api.admin
    )
    me = api.client.get("/v1/me", headers={"Authorization": f"Bearer {created.json()['key']}"})
    assert me.json()["lead"] is True


# --- the invariant under concurrent claims --------------------------------------------------
def test_concurrent_claims_never_hand_a_case_twice_to_one_reviewer(api):
    api.create_task(labels_per_case=3)
    rng = random.Random(5)
    n_cases = 12
    for _ in range(n_cases):
        api.send("claims", claims_case(rng)[0])
    names = [f"r{i}" for i in range(5)]
    for name in names:
        api.key("reviewer", name)
    errors: list[str] = []

    deadline = time.monotonic() + 60

    def work(name: str) -> None:
        while True:
            claim = api.claim("claims", name)
            if claim is None:  # what waits is leased, or this reviewer's answered it
                if _metrics(api)["queue_depth"] == 0 or time.monotonic() > deadline:
                    return
                time.sleep(0.01)
                continue
            response = api.label(claim, "approve", name)
            if response.status_code != 200:
                errors.append(response.text)

    threads = [threading.Thread(target=work, args=(name,)) for name in names for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors
    opinions = _opinions(api.client)
    pairs = Counter((o.case_id, o.key_id) for o in opinions)
    assert max(pairs.values()) == 1
    per_case = Counter(o.case_id for o in opinions)
    assert len(per_case) == n_cases and set(per_case.values()) == {3}
    assert len(_labels(api)) == n_cases and _version(api) == n_cases


def test_replaying_the_label_log_rebuilds_the_same_model(api, settings):
    from fastapi.testclient import TestClient

    from api.main import create_app

    api.create_task(labels_per_case=2)
    for i in range(3):
        api.send("claims", dict(CASE, amount=float(500 + i)))
    for name, label in [("alice", "reject"), ("alice", "approve"), ("alice", "reject")]:
        api.label(api.claim("claims", name), label, name)
    for _ in range(3):
        api.label(api.claim("claims", "bob"), "reject", "bob")
    _make_lead(api, "lena")
    api.label(api.claim("claims", "lena"), "reject", "lena")
    before = api.client.post(
        "/v1/tasks/claims/predict", json={"features": CASE}, headers=api.admin
    ).json()
    assert before["model_version"] == 3 and len(_opinions(api.client)) == 7
    with TestClient(create_app(settings)) as restarted:
        after = restarted.post(
            "/v1/tasks/claims/predict", json={"features": CASE}, headers=api.admin
        ).json()
    assert after["model_version"] == 3 and after["proba"] == before["proba"]


def test_reviewer_may_change_an_opinion_until_the_case_is_final(api):
    api.create_task(labels_per_case=2)
    case = api.send("claims", CASE)
    api.label(api.claim("claims", "alice"), "approve", "alice")
    body = {"label": "reject"}
    changed = api.client.post(
        f"/v1/cases/{case['id']}/correct", json=body, headers=api.as_("reviewer", "alice")
    )
    assert changed.status_code == 200 and changed.json()["label"] is None
    other = api.client.post(
        f"/v1/cases/{case['id']}/correct", json=body, headers=api.as_("reviewer", "bob")
    )
    assert other.status_code == 409
    final = api.label(api.claim("claims", "bob"), "reject", "bob").json()
    assert final["label"] == "reject"  # alice's changed opinion agrees with bob's


def test_gold_answer_repeat_is_idempotent_and_gold_stays_out_of_exports(api, monkeypatch):
    _always_gold(monkeypatch)
    api.create_task(gold_rate=0.5)
    api.send("claims", CASE)
    api.client.post(
        "/v1/tasks/claims/gold",
        json={"cases": [{"features": CASE, "label": "approve"}]},
        headers=api.admin,
    )
    gold = api.claim("claims", "alice")
    real = api.claim("claims", "alice")  # a prefetch: the held gold case is not served twice
    assert real["case"]["id"] != gold["case"]["id"]
    first = api.label(gold, "reject", "alice")
    again = api.label(gold, "reject", "alice")
    assert first.status_code == again.status_code == 200
    assert again.json()["labelled_at"] == first.json()["labelled_at"]
    assert api.label(gold, "approve", "alice").status_code == 409
    exported = api.client.get("/v1/tasks/claims/export?what=cases", headers=api.admin).text
    assert gold["case"]["id"] not in exported and real["case"]["id"] in exported


def test_a_gold_case_is_released_and_corrected_like_any_other(api, monkeypatch):
    """A reviewer must not tell gold from other cases: skipping (release) and undoing
    (correct) a gold answer answer as they do elsewhere, and the audit trail records both."""
    _always_gold(monkeypatch)
    api.create_task(gold_rate=0.5)
    api.client.post(
        "/v1/tasks/claims/gold",
        json={"cases": [{"features": CASE, "label": "approve"}]},
        headers=api.admin,
    )
    alice = api.as_("reviewer", "alice")
    gold = api.claim("claims", "alice")
    case_id = gold["case"]["id"]
    release = {"lease_id": gold["lease_id"]}
    assert (
        api.client.post(f"/v1/cases/{case_id}/release", json=release, headers=alice).status_code
        == 204
    )
    assert (
        api.client.post(f"/v1/cases/{case_id}/release", json=release, headers=alice).status_code
        == 204
    )
    assert api.label(gold, "approve", "alice").status_code == 409  # released: claim again
    skipped = api.client.post(
        "/v1/tasks/claims/queue/claim", json={"exclude": [case_id]}, headers=alice
    )
    assert skipped.status_code == 204  # a skipped case is passed over, gold or not
    gold = api.claim("claims", "alice")
    assert gold["case"]["id"] == case_id
    assert api.label(gold, "reject", "alice").status_code == 200
    corrected = api.client.post(
        f"/v1/cases/{case_id}/correct", json={"label": "approve"}, headers=alice
    )
    assert corrected.status_code == 200 and corrected.json()["label"] == "approve"
    seen = api.client.get(f"/v1/cases/{case_id}", headers=alice).json()
    assert (seen["status"], seen["label"], seen["labelled_by"]) == ("decided", "approve", "alice")
    listed = api.client.get("/v1/tasks/claims/gold", headers=api.admin).json()["data"][0]
    assert listed["answers"] == 1 and listed["correct"] == 1
    trail = api.client.get(f"/v1/audit?subject={case_id}", headers=api.admin).json()["data"]
    actions = [row["action"] for row in trail]
    assert {"case.released", "case.opinion", "case.corrected"} <= set(actions)


def test_a_changed_opinion_is_in_the_audit_trail(api):
    api.create_task(labels_per_case=2)
    case = api.send("claims", CASE)
    api.label(api.claim("claims", "alice"), "approve", "alice")
    changed = api.client.post(
        f"/v1/cases/{case['id']}/correct",
        json={"label": "reject"},
        headers=api.as_("reviewer", "alice"),
    )
    assert changed.status_code == 200
    trail = api.client.get(f"/v1/audit?subject={case['id']}", headers=api.admin).json()["data"]
    [row] = [r for r in trail if r["action"] == "case.corrected"]
    assert row["before"] == {"label": "approve"} and row["after"]["label"] == "reject"


def test_a_rejected_gold_upload_fixes_no_schema(api):
    created = api.client.post(
        "/v1/tasks", json={"name": "free", "labels": ["a", "b"]}, headers=api.admin
    )
    assert created.status_code == 201
    bad = api.client.post(
        "/v1/tasks/free/gold",
        json={"cases": [{"features": {"x": 1}, "label": "zzz"}]},
        headers=api.admin,
    )
    assert bad.status_code == 422
    assert api.client.get("/v1/tasks/free", headers=api.admin).json()["features"] is None


def test_an_erased_waiting_case_leaves_the_queue_and_teaches_nothing(api):
    api.create_task(min_labels=1_000)
    waiting = api.send("claims", CASE)
    leased = api.send("claims", CASE)
    claim = api.claim("claims", "alice")
    assert claim["case"]["id"] == waiting["id"] or claim["case"]["id"] == leased["id"]
    before = _metrics(api)
    for case in (waiting, leased):
        assert api.client.delete(f"/v1/cases/{case['id']}", headers=api.admin).status_code == 204
    assert api.claim("claims", "bob") is None
    assert api.label(claim, "approve", "alice").status_code == 409
    after = _metrics(api)
    assert after["queue_depth"] == before["queue_depth"] - 2 == 0
    assert after["pending"] == before["pending"] and _version(api) == 0
    detail = api.client.get(f"/v1/cases/{waiting['id']}", headers=api.admin).json()
    assert detail["status"] == "pending" and detail["features"] == {}
    erased = api.client.get(
        "/v1/audit", params={"action": "case.erased"}, headers=api.admin
    ).json()["data"]
    assert [row["after"]["dequeued"] for row in erased] == [True, True]


def test_a_labelled_case_once_erased_takes_no_correction_nor_feedback(api):
    api.create_task(min_labels=1_000)
    case = api.send("claims", CASE)
    assert api.label(api.claim("claims", "alice"), "approve", "alice").status_code == 200
    assert api.client.delete(f"/v1/cases/{case['id']}", headers=api.admin).status_code == 204
    again = api.client.post(
        f"/v1/cases/{case['id']}/correct",
        json={"label": "reject"},
        headers=api.as_("reviewer", "alice"),
    )
    assert again.status_code == 409 and "erased" in again.text
    feedback = api.client.post(
        f"/v1/cases/{case['id']}/feedback",
        json={"label": "reject", "source": "chargeback"},
        headers=api.as_("service"),
    )
    assert feedback.status_code == 409 and "erased" in feedback.text  # nothing to learn from
    assert _version(api) == 1


def test_a_case_waiting_for_more_reviewers_than_answer_is_decided_after_lowering_the_setting(api):
    """labels_per_case above the reviewers at hand holds cases; lowering it applies at the
    case's next opinion, from any reviewer who has not answered it yet."""
    api.create_task(labels_per_case=5)
    case = api.send("claims", CASE)
    for name in ("alice", "bob"):
        assert api.label(api.claim("claims", name), "approve", name).json()["label"] is None
    assert api.claim("claims", "alice") is None and api.claim("claims", "bob") is None
    lowered = api.client.patch("/v1/tasks/claims", json={"labels_per_case": 2}, headers=api.admin)
    assert lowered.status_code == 200
    final = api.label(api.claim("claims", "carol"), "approve", "carol").json()
    assert final["id"] == case["id"] and final["label"] == "approve"
    assert _metrics(api)["queue_depth"] == 0 and _version(api) == 1


def test_agreement_names_the_bootstrap_admin_like_any_key(api):
    api.create_task(labels_per_case=2)
    api.send("claims", CASE)
    api.label(api.claim("claims", "alice"), "approve", "alice")
    claim = api.client.post("/v1/tasks/claims/queue/claim", headers=api.admin).json()
    response = api.client.post(
        f"/v1/cases/{claim['case']['id']}/label",
        json={"label": "approve", "lease_id": claim["lease_id"]},
        headers=api.admin,
    )
    assert response.status_code == 200
    [pair] = api.client.get("/v1/tasks/claims/agreement", headers=api.admin).json()[
        "reviewer_pairs"
    ]
    assert {pair["a"], pair["b"]} == {"alice", "admin (TIERLINE_ADMIN_KEY)"}
