import time

import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

from api.services import review
from api.services.cases import load_case
from tests.utils.factories import CLAIMS_FEATURES, claims_case  # noqa: F401

CASE = {"amount": 120.5, "country": "fr", "note": "windscreen repair", "vip": False}


def test_claim_label_learns_and_counts_model_version(api):
    api.create_task()
    case = api.send("claims", CASE)
    claim = api.claim("claims")
    assert claim["case"]["id"] == case["id"] and claim["case"]["features"] == CASE
    assert claim["lease_id"] and claim["lease_expires_at"]
    labelled = api.label(claim, "reject")
    assert labelled.status_code == 200
    body = labelled.json()
    assert body["label"] == "reject" and body["labelled_by"] == "test-reviewer"
    assert body["status"] == "decided" and body["decision"] == "reject"
    task = api.client.get("/v1/tasks/claims", headers=api.admin).json()
    assert task["model_version"] == 1
    after = api.client.post(
        "/v1/tasks/claims/predict", json={"features": CASE}, headers=api.admin
    ).json()
    assert after["proba"]["reject"] > case["proba"]["reject"]


def test_cases_sent_before_the_model_learned_anything_wait_behind_scored_ones(api):
    """A probe sent 2,500 cases before the first label: unscored (margin 0), they took
    the first 2,200 labels, none of which is evidence, while scored cases waited."""
    import random

    api.create_task()
    rng = random.Random(7)
    backlog = [api.send("claims", claims_case(rng)[0]) for _ in range(5)]
    assert all(case["suggestion"] is None for case in backlog)
    first = api.claim("claims")
    assert first["case"]["id"] == backlog[0]["id"]  # among unscored ones: oldest first
    assert api.label(first, "approve").status_code == 200
    scored = api.send("claims", claims_case(rng)[0])
    assert scored["suggestion"] is not None
    assert api.claim("claims")["case"]["id"] == scored["id"]


def test_a_claimed_case_carries_todays_scores_and_the_case_keeps_its_routing(api):
    """A probe fed a queue during the cold start: every case still read "no suggestion
    yet" and "cold start: 0 of 5 labels" after 19 labels, while gold cases (scored when
    served) showed a suggestion and stood out."""
    import random

    api.create_task(min_labels=5)
    rng = random.Random(3)
    backlog = [api.send("claims", claims_case(rng)[0]) for _ in range(8)]
    for _ in range(4):
        assert api.label(api.claim("claims"), "approve").status_code == 200
    claim = api.claim("claims")["case"]
    stored = api.client.get(f"/v1/cases/{claim['id']}", headers=api.admin).json()
    assert stored["suggestion"] is None and stored["model_version"] == 0  # as routed
    assert any("cold start: 0 of 5" in reason for reason in stored["reasons"])
    assert claim["model_version"] == 4 and claim["suggestion"] in ("approve", "reject")
    assert claim["proba"] != stored["proba"]
    assert any("cold start: 4 of 5" in reason for reason in claim["reasons"])
    assert claim["route"] == stored["route"] and claim["created_at"] == stored["created_at"]
    assert claim["id"] in {case["id"] for case in backlog}


def test_a_claimed_case_todays_model_would_decide_keeps_the_reasons_it_was_queued_for(api):
    """Today's reasons would read "confidence 0.7 >= threshold 0.5", which is no reason to
    be with a reviewer; an audit is shown as routed (the decision it checks was then)."""
    from api.services.cases import as_claimed

    api.create_task(min_labels=2, threshold=0.5)  # past the cold start, everything is decided
    queued = {case["id"]: case for case in (api.send("claims", CASE) for _ in range(3))}
    for _ in range(2):  # equal cases: made in one millisecond, their order is their ids'
        claimed = api.claim("claims")
        assert api.label(claimed, "approve").status_code == 200
        del queued[claimed["case"]["id"]]
    assert api.send("claims", CASE)["route"] == "auto"
    claim = api.claim("claims")["case"]
    [left] = queued.values()
    assert claim["id"] == left["id"] and claim["reasons"] == left["reasons"]
    assert claim["suggestion"] == "approve" and claim["model_version"] == 2
    state = api.client.app.state.tierline
    with state.db.read() as session:
        task, case, routing = load_case(session, claim["id"])
    audit = routing.model_copy(update={"audit": True})
    assert as_claimed(task, state.store.get(task), case, audit) is audit


def test_a_reviewer_resumes_the_cases_it_holds(api):
    """A probe reloaded the review page: the case on screen and the prefetched one stayed
    leased to it for ten minutes, and the queue read "held by other reviewers"."""
    api.create_task()
    for _ in range(3):
        api.send("claims", CASE)
    first, second = api.claim("claims"), api.claim("claims")
    url, headers = "/v1/tasks/claims/queue/claim", api.as_("reviewer", "test-reviewer")

    def claim(**body):  # type: ignore[no-untyped-def]
        answer = api.client.post(url, json=body, headers=headers)
        return answer.json() if answer.status_code == 200 else None

    again = claim(resume=True)
    assert (again["case"]["id"], again["lease_id"]) == (first["case"]["id"], first["lease_id"])
    assert again["lease_expires_at"] == first["lease_expires_at"]
    assert claim(resume=True, exclude=[first["case"]["id"]])["lease_id"] == second["lease_id"]
    held = [first["case"]["id"], second["case"]["id"]]
    third = claim(resume=True, exclude=held)
    assert third["case"]["id"] not in held  # nothing else held: the queue as usual
    other = api.client.post(url, json={"resume": True}, headers=api.as_("reviewer", "bob"))
    assert other.status_code == 204  # another key's cases are not its to resume
    assert api.label(again, "approve").status_code == 200  # the resumed lease labels


@pytest.mark.parametrize("resume", ["yes", 1, "on", "true", None])
def test_a_claim_whose_resume_is_not_a_json_boolean_is_422(api, resume):
    """A probe sent "yes", 1 and "on": each was taken as true."""
    api.create_task()
    api.send("claims", CASE)
    response = api.client.post(
        "/v1/tasks/claims/queue/claim", json={"resume": resume}, headers=api.as_("reviewer")
    )
    assert response.status_code == 422
    assert "resume" in str(response.json()["detail"])


def test_empty_queue_claim_is_204(api):
    api.create_task()
    response = api.client.post("/v1/tasks/claims/queue/claim", headers=api.as_("reviewer"))
    assert response.status_code == 204


def test_claim_skips_leased_case(api):
    api.create_task()
    api.send("claims", CASE)
    first = api.claim("claims", "alice")
    assert first is not None
    assert api.claim("claims", "bob") is None


def test_label_repeat_is_idempotent_and_other_label_conflicts(api):
    api.create_task()
    api.send("claims", CASE)
    claim = api.claim("claims")
    first = api.label(claim, "approve")
    again = api.label(claim, "approve")
    assert again.status_code == 200 and again.json() == first.json()
    assert api.label(claim, "reject").status_code == 409
    assert api.client.get("/v1/tasks/claims", headers=api.admin).json()["model_version"] == 1
    # the same call from another key is no repeat of its own: that key holds no lease
    assert api.label(claim, "approve", reviewer="mallory").status_code == 409


def test_a_released_lease_labels_nothing(api):
    api.create_task()
    api.send("claims", CASE)
    claim = api.claim("claims")
    assert api.release(claim).status_code == 204
    late = api.label(claim, "approve")  # nobody holds the case, but this lease was given back
    assert late.status_code == 409 and "released" in late.json()["detail"]
    again = api.claim("claims")
    assert api.label(again, "approve").status_code == 200


def test_label_not_in_task_is_422_and_changes_nothing(api):
    api.create_task()
    api.send("claims", CASE)
    claim = api.claim("claims")
    response = api.label(claim, "maybe")
    assert response.status_code == 422 and "label" in response.text
    assert api.label(claim, "approve").status_code == 200


def test_a_label_in_another_unicode_encoding_is_the_same_label(api):
    """A probe's "refusé" written as "e" and a combining accent (as macOS writes it) was
    refused as not a label of the task; a look-alike still is."""
    api.create_task(labels=["refusé", "ok"])
    api.send("claims", CASE)
    claim = api.claim("claims")
    look_alike = {"label": "оk", "lease_id": claim["lease_id"]}  # a Cyrillic "о"
    url = f"/v1/cases/{claim['case']['id']}/label"
    headers = api.as_("reviewer", "test-reviewer")
    assert api.client.post(url, json=look_alike, headers=headers).status_code == 422
    decomposed = {"label": "refuse\u0301", "lease_id": claim["lease_id"]}
    answer = api.client.post(url, json=decomposed, headers=headers)
    assert answer.status_code == 200 and answer.json()["label"] == "refusé"
    assert api.client.post(url, json=decomposed, headers=headers).status_code == 200  # a repeat


def test_label_without_holding_lease_is_409(api):
    api.create_task()
    api.send("claims", CASE)
    claim = api.claim("claims", "alice")
    stolen = dict(claim, lease_id="l_forged")
    assert api.label(stolen, "approve", "alice").status_code == 409
    assert api.label(claim, "approve", "bob").status_code == 409


def _expired_claim(api, client, reviewer: str = "alice") -> dict:  # type: ignore[no-untyped-def]
    """A task with one case, claimed by ``reviewer`` under a lease that has expired since
    (later claims get the usual lease)."""
    settings = client.app.state.tierline.settings
    settings.lease_seconds = 0.05
    api.create_task()
    api.send("claims", CASE)
    claim = api.claim("claims", reviewer)
    time.sleep(0.1)
    settings.lease_seconds = 600
    return claim


def test_expired_lease_returns_case_and_old_holder_gets_409(api, client):
    alice = _expired_claim(api, client)
    bob = api.claim("claims", "bob")
    assert bob["case"]["id"] == alice["case"]["id"]
    assert api.label(alice, "approve", "alice").status_code == 409
    assert api.label(bob, "approve", "bob").status_code == 200


def test_expired_lease_still_labels_when_nobody_else_holds_it(api, client):
    alice = _expired_claim(api, client)
    assert api.label(alice, "approve", "alice").status_code == 200


def test_a_409_says_what_happened_to_the_lease(api, client):
    """A probe was told "another reviewer holds the case" when it had claimed the case
    again itself, and "not held by this key" when giving back a case it had labelled."""
    first = _expired_claim(api, client)
    again = api.claim("claims", "alice")
    assert again["case"]["id"] == first["case"]["id"]
    old = api.label(first, "approve", "alice")
    assert old.status_code == 409 and "you claimed the case again" in old.text
    assert again["lease_id"] in old.text
    assert api.label(again, "approve", "alice").status_code == 200
    done = api.release(again, reviewer="alice")
    assert done.status_code == 409 and "was labelled under lease" in done.text


def test_release_returns_case_to_queue(api):
    api.create_task()
    api.send("claims", CASE)
    claim = api.claim("claims")
    assert api.release(claim).status_code == 204
    again = api.claim("claims", "bob")
    assert again["case"]["id"] == claim["case"]["id"]
    stale = api.release(claim)
    assert stale.status_code == 204  # a repeat of a release already done: no effect
    assert api.label(again, "approve", "bob").status_code == 200
    assert api.release(claim, lease_id="l_forged").status_code == 409


def test_queue_serves_most_uncertain_first(api):
    api.create_task(min_labels=5)
    api.teach("claims", 40)
    sent = [
        api.send("claims", claims_case(__import__("random").Random(i))[0]) for i in range(100, 120)
    ]
    margins = {}
    for c in sent:
        ordered = sorted(c["proba"].values(), reverse=True)
        margins[c["id"]] = ordered[0] - ordered[1]
    waiting = [c["id"] for c in sent if c["status"] == "pending" or c["audit"]]
    claimed = []
    while (claim := api.claim("claims")) is not None:
        claimed.append(claim["case"]["id"])
    pending_order = [m for m in claimed if m in waiting]
    assert [margins[c] for c in pending_order] == sorted(margins[c] for c in pending_order)


def test_behind_its_reviewers_the_queue_serves_a_review_sample_first(api, client):
    api.create_task(min_labels=5, audit_rate=0.5)  # half the cases for people, when behind
    api.teach("claims", 40)
    rng = __import__("random").Random(7)
    keeping_up = [api.send("claims", claims_case(rng)[0]) for _ in range(10)]
    assert not any("review sample" in r for c in keeping_up for r in c["reasons"])
    state = client.app.state.tierline  # the queue falls behind: its oldest case waited 1 h
    with state.db.write() as session:
        session.execute(
            text('UPDATE "case" SET created_at = created_at - 3600 WHERE id = :id'),
            {"id": keeping_up[0]["id"]},
        )
    state.store.oldest_queued.forget()
    sent = [api.send("claims", claims_case(rng)[0]) for _ in range(40)]
    queued = [c for c in sent if c["status"] == "pending"]
    sampled = {c["id"] for c in queued if any("review sample" in r for r in c["reasons"])}
    assert 0 < len(sampled) < len(queued)
    first = [api.claim("claims")["case"]["id"] for _ in range(len(sampled))]
    assert set(first) == sampled


def test_correction_is_appended_and_learned(api):
    api.create_task()
    api.send("claims", CASE)
    claim = api.claim("claims")
    api.label(claim, "approve")
    fixed = api.client.post(
        f"/v1/cases/{claim['case']['id']}/correct",
        json={"label": "reject"},
        headers=api.as_("reviewer"),
    )
    assert fixed.status_code == 200 and fixed.json()["label"] == "reject"
    assert fixed.json()["decision"] == "reject"
    assert api.client.get("/v1/tasks/claims", headers=api.admin).json()["model_version"] == 2
    other = api.client.post(
        f"/v1/cases/{claim['case']['id']}/correct",
        json={"label": "approve"},
        headers=api.as_("reviewer", "mallory"),
    )
    assert other.status_code == 403


def test_repeated_release_is_a_no_op(api):
    api.create_task()
    api.send("claims", CASE)
    claim = api.claim("claims")
    url = f"/v1/cases/{claim['case']['id']}/release"
    body = {"lease_id": claim["lease_id"]}
    assert api.client.post(url, json=body, headers=api.as_("reviewer")).status_code == 204
    assert api.client.post(url, json=body, headers=api.as_("reviewer")).status_code == 204


def test_claim_passes_over_excluded_cases(api):
    api.create_task()
    first = api.send("claims", CASE)
    second = api.send("claims", {**CASE, "amount": 5000})
    response = api.client.post(
        "/v1/tasks/claims/queue/claim", json={"exclude": [first["id"]]}, headers=api.as_("reviewer")
    )
    assert response.json()["case"]["id"] == second["id"]
    nothing = api.client.post(
        "/v1/tasks/claims/queue/claim",
        json={"exclude": [first["id"]]},
        headers=api.as_("reviewer", "bob"),
    )
    assert nothing.status_code == 204


def test_a_repeat_that_raced_the_first_call_answers_as_the_first(api, monkeypatch):
    """Two identical label calls in flight (a client retrying one that timed out): the
    one that read the case before the other's write finds the case changed under it, and
    answers 200 with the case as labelled, as a repeat does, not a false "your lease
    expired"."""
    api.create_task()
    api.send("claims", CASE)
    claim = api.claim("claims")
    state = api.client.app.state.tierline
    with state.db.read() as session:
        before = load_case(session, claim["case"]["id"])  # what the slower call read
    first = api.label(claim, "approve")
    stale = iter([before])
    monkeypatch.setattr(review, "load_case", lambda s, i: next(stale, None) or load_case(s, i))
    again = api.label(claim, "approve")
    assert again.status_code == 200 and again.json() == first.json()

    # on PostgreSQL the loser may instead meet the opinion's unique key
    def unique_key(*args):
        raise IntegrityError("INSERT INTO opinion ...", {}, Exception("uq_opinion_case_key"))

    monkeypatch.setattr(review, "_label_case", unique_key)
    assert api.label(claim, "approve").json() == first.json()
    other = api.label(claim, "reject")  # not a repeat: a conflict, never a 500
    # the same key's own call got there first: say so (not "try again", nor that another
    # reviewer holds the case, as concurrent calls under one lease were told)
    assert other.status_code == 409 and "you already labelled case" in other.text
    assert "'approve'" in other.text
    assert api.client.get("/v1/tasks/claims", headers=api.admin).json()["model_version"] == 1
