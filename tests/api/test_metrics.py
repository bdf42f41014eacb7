import random

from tests.utils.factories import claims_case

METRIC_FIELDS = {
    "cases",
    "automated",
    "pending",
    "labels",
    "automation_rate",
    "threshold",
    "mode",
    "model_version",
    "auto_error_estimate",
    "auto_error_upper",
    "target_error",
    "queue_depth",
}


def test_metrics_follow_cases_and_labels(api):
    api.create_task(min_labels=10, threshold=0.6, audit_rate=0.5)
    api.teach("claims", 60)
    metrics = api.client.get("/v1/tasks/claims/metrics", headers=api.as_("analyst")).json()
    assert set(metrics) >= METRIC_FIELDS
    assert metrics["cases"] == 60
    assert metrics["labels"] == metrics["model_version"]
    assert metrics["queue_depth"] == 0 and metrics["pending"] == 0
    assert metrics["automated"] + metrics["labels"] - metrics["audited"] == 60
    assert metrics["mode"] == "automated"
    if metrics["audited"]:
        assert 0 <= metrics["auto_error_estimate"] <= metrics["auto_error_upper"] <= 1


def test_curve_has_prequential_points(api):
    api.create_task(min_labels=10)
    api.teach("claims", 40)
    points = api.client.get("/v1/tasks/claims/curve", headers=api.as_("analyst")).json()["points"]
    assert points and points[-1]["labels"] == 40
    assert {
        "labels",
        "cases",
        "automation_rate",
        "accuracy",
        "threshold",
        "auto_error_estimate",
        "auto_error_upper",
        "at",
    } <= set(points[-1])
    assert [p["labels"] for p in points] == sorted(p["labels"] for p in points)


def test_curve_keeps_its_points_when_the_leader_applies_labels_a_poll_at_a_time(
    api, monkeypatch
):
    """Probes on three processes: labels taken by followers reach the leader a poll's
    worth at a time, so the count passed 100, 110, ... between two looks and 48 of 158
    points were never written (a point was due only at exactly the 10th label); then a
    poll that passed several marks wrote one point for them all."""
    from api.lineage import ModelSync
    from api.services.metrics import record_progress

    # on PostgreSQL the app polls too: this test's polls are the only ones
    monkeypatch.setattr(ModelSync, "step", lambda self: None)
    api.create_task(min_labels=10)
    api.teach("claims", 30)
    state = api.client.app.state.tierline
    with monkeypatch.context() as patched:  # labels 31-52 reach the leader in one poll
        patched.setattr(state.store, "apply", lambda *args: False)
        api.teach("claims", 22, seed=2)
    ModelSync(state.db, state.store, record_progress).lead()  # a point for each of 31-50
    counts = [p["labels"] for p in api.client.get(
        "/v1/tasks/claims/curve", headers=api.as_("analyst")
    ).json()["points"]]  # fmt: skip
    assert counts[-20:] == list(range(31, 51)), counts
    with monkeypatch.context() as patched:  # logged as a follower logs them: not applied
        patched.setattr(state.store, "apply", lambda *args: False)
        api.teach("claims", 15, seed=1)
    ModelSync(state.db, state.store, record_progress).lead()  # 67 labels: a point for 60
    points = api.client.get("/v1/tasks/claims/curve", headers=api.as_("analyst")).json()["points"]
    counts = [p["labels"] for p in points]
    assert counts[-2:] == [50, 60], counts  # the mark the poll passed, at its own count
    ModelSync(state.db, state.store, record_progress).lead()  # nothing new: no new point
    again = api.client.get("/v1/tasks/claims/curve", headers=api.as_("analyst")).json()["points"]
    assert again == points


def test_history_records_mode_migrations(api):
    api.create_task(min_labels=5)
    api.teach("claims", 20)
    history = api.client.get("/v1/tasks/claims/history", headers=api.admin).json()
    assert [h["mode"] for h in history["data"]][:2] == ["assist", "automated"]


def test_curve_pages_with_after_and_limit(api):
    api.create_task(min_labels=10)
    api.teach("claims", 30)
    headers = api.as_("analyst")
    whole = api.client.get("/v1/tasks/claims/curve", headers=headers).json()
    assert whole["next_after"] is None
    pages, after = [], None
    while True:
        params = {"limit": 7} | ({"after": after} if after is not None else {})
        page = api.client.get("/v1/tasks/claims/curve", params=params, headers=headers).json()
        pages += page["points"]
        after = page["next_after"]
        if after is None:
            break
        assert len(page["points"]) == 7 and after == page["points"][-1]["labels"]
    assert pages == whole["points"]
    bad = api.client.get("/v1/tasks/claims/curve", params={"limit": 0}, headers=headers)
    assert bad.status_code == 422 and "limit" in bad.text


def test_queue_status_is_what_reviewers_see_of_the_task(api):
    api.create_task(min_labels=50)
    rng = random.Random(3)
    for _ in range(4):
        api.send("claims", claims_case(rng)[0])
    held = api.claim("claims")
    api.label(held, "approve")
    reviewer = api.as_("reviewer")
    status = api.client.get("/v1/tasks/claims/queue", headers=reviewer)
    assert status.status_code == 200
    assert status.json() == {
        "task": "claims",
        "mode": "assist",
        "queue_depth": 3,
        "automation_rate": 0.0,
        "cases": 4,
    }
    # the figures behind it stay with analysts: deny by default (CONTRACT.md's roles)
    assert api.client.get("/v1/tasks/claims/metrics", headers=reviewer).status_code == 403
    assert api.client.get("/v1/tasks/nope/queue", headers=reviewer).status_code == 404
