"""Routing: tiers, reasons, audits, propensities and the review-queue order."""

from __future__ import annotations

import math
import random
import statistics

import pytest
from hypothesis import given
from hypothesis import strategies as st

from learner import (
    ROUTES,
    LearnerError,
    RoutingPolicy,
    audit_draw,
    confidence,
    entropy,
    id_draw,
    margin,
    queue_priority,
    route_case,
    suggestion,
)

POLICY = RoutingPolicy(threshold=0.93)
CONFIDENT = {"ok": 0.97, "fraud": 0.03}
UNSURE = {"ok": 0.71, "fraud": 0.29}


def route(proba, policy=POLICY, n_labels=80, case_key="c1"):
    return route_case(proba, policy=policy, n_labels=n_labels, task="fraud", case_key=case_key)


def key_with_draw(below: bool, rate: float) -> str:
    """A case key whose audit draw is below (or not below) ``rate``."""
    return next(k for k in map(str, range(10_000)) if (audit_draw("fraud", k) < rate) == below)


def test_route_case_confident_goes_to_auto():
    decision = route(CONFIDENT, case_key=key_with_draw(False, 0.05))
    assert (decision.route, decision.suggestion, decision.audit) == ("auto", "ok", False)
    assert decision.reasons == ["confidence 0.97 >= threshold 0.93"]
    assert decision.propensity == 0.05
    assert decision.threshold == 0.93
    assert decision.confidence == 0.97
    assert math.isclose(decision.margin, 0.94)
    assert decision.proba is CONFIDENT


def test_route_case_unsure_goes_to_review():
    decision = route(UNSURE)
    assert (decision.route, decision.suggestion, decision.audit) == ("review", "ok", False)
    assert decision.reasons == ["confidence 0.71 < threshold 0.93"]
    assert decision.propensity == 1.0


def test_route_case_cold_start_goes_to_assist():
    decision = route(CONFIDENT, n_labels=12)
    assert decision.route == "assist"
    assert decision.reasons == ["cold start: 12 of 50 labels"]
    assert decision.suggestion == "ok"
    assert decision.propensity == 1.0


def test_route_case_kill_switch_goes_to_assist():
    policy = RoutingPolicy(threshold=0.93, automation_on=False)
    decision = route(CONFIDENT, policy=policy, n_labels=12)
    assert decision.route == "assist"
    assert decision.reasons == ["automation switched off by an admin"]


def test_route_case_audits_a_sample_of_auto_cases():
    decision = route(CONFIDENT, case_key=key_with_draw(True, 0.05))
    assert (decision.route, decision.audit) == ("auto", True)
    assert decision.reasons == ["confidence 0.97 >= threshold 0.93", "audit sample (rate 0.05)"]
    assert decision.propensity == 0.05


def test_route_case_audit_rate_one_audits_everything():
    policy = RoutingPolicy(threshold=0.5, audit_rate=1.0)
    assert all(route(CONFIDENT, policy=policy, case_key=str(i)).audit for i in range(50))


def test_route_case_audit_share_matches_rate():
    audited = [route(CONFIDENT, case_key=f"case-{i}").audit for i in range(4000)]
    assert 0.04 < statistics.mean(audited) < 0.06


def test_route_case_uses_threshold_note():
    policy = RoutingPolicy(threshold=0.93, threshold_note="certified threshold")
    decision = route(UNSURE, policy=policy)
    assert decision.reasons == ["confidence 0.71 < certified threshold 0.93"]


def test_route_case_without_model_goes_to_assist():
    decision = route({})
    assert (decision.route, decision.suggestion, decision.confidence, decision.margin) == (
        "assist",
        None,
        0.0,
        0.0,
    )
    assert decision.reasons == ["no model to score the case"]


def test_route_case_threshold_at_confidence_is_auto():
    assert route({"ok": 0.93, "fraud": 0.07}).route == "auto"


def test_route_case_reason_shows_enough_decimals_to_see_the_gap():
    decision = route({"ok": 0.9296, "fraud": 0.0704})
    assert decision.reasons == ["confidence 0.9296 < threshold 0.9300"]
    assert route({"ok": 0.9712, "fraud": 0.0288}).reasons[0] == (
        "confidence 0.971 >= threshold 0.93"
    )


def test_route_case_ties_go_to_first_label():
    assert route({"a": 0.5, "b": 0.5}).suggestion == "a"


@pytest.mark.parametrize(
    "kwargs",
    [
        {"threshold": math.nan},
        {"threshold": 0.9, "audit_rate": 0.0},
        {"threshold": 0.9, "audit_rate": 1.5},
        {"threshold": 0.9, "min_labels": -1},
    ],
)
def test_routing_policy_rejects_bad_values(kwargs):
    with pytest.raises(LearnerError):
        RoutingPolicy(**kwargs)


def test_audit_draw_is_deterministic_uniform():
    assert audit_draw("t", "k") == audit_draw("t", "k")
    assert audit_draw("t", "k") != audit_draw("u", "k")
    draws = [audit_draw("t", str(i)) for i in range(5000)]
    assert all(0.0 <= d < 1.0 for d in draws)
    assert 0.48 < statistics.mean(draws) < 0.52


def test_id_draw_reads_a_random_tail_as_a_uniform_draw():
    rng = random.Random(3)
    ids = [f"c_{i:012x}{rng.getrandbits(64):016x}" for i in range(5000)]
    draws = [id_draw(i) for i in ids]
    assert all(0.0 <= d < 1.0 for d in draws)
    assert 0.48 < statistics.mean(draws) < 0.52
    assert id_draw("c_000000000000" + "f" * 16) == 1.0 - 2.0**-52  # never 1


@given(st.floats(0.0, 1.0, exclude_max=True), st.sampled_from([0.05, 0.5]))
def test_a_given_draw_decides_the_audit_and_the_sample(draw, rate):
    policy = RoutingPolicy(threshold=0.9, audit_rate=rate, sample_rate=rate)
    auto = route_case({"a": 0.95, "b": 0.05}, policy=policy, n_labels=80, task="t",
                      case_key="k", draw=draw)  # fmt: skip
    review = route_case({"a": 0.6, "b": 0.4}, policy=policy, n_labels=80, task="t",
                        case_key="k", draw=draw)  # fmt: skip
    assert auto.audit == review.sample == (draw < rate)


# --- invariants -------------------------------------------------------------------------------

labels = st.lists(st.text(min_size=1, max_size=5), min_size=1, max_size=6, unique=True)


@st.composite
def probas(draw):
    names = draw(labels)
    weights = draw(st.lists(st.floats(0.0, 1.0), min_size=len(names), max_size=len(names)))
    total = sum(weights)
    if total == 0:
        return dict.fromkeys(names, 1 / len(names))
    return {name: w / total for name, w in zip(names, weights, strict=True)}


policies = st.builds(
    RoutingPolicy,
    threshold=st.floats(0.0, 1.0),
    min_labels=st.integers(0, 100),
    audit_rate=st.floats(0.001, 1.0),
    automation_on=st.booleans(),
)


@given(probas() | st.just({}), policies, st.integers(0, 200), st.text(max_size=10))
def test_route_case_invariants(proba, policy, n_labels, case_key):
    d = route_case(proba, policy=policy, n_labels=n_labels, task="t", case_key=case_key)
    assert d.route in ROUTES
    assert 0.0 < d.propensity <= 1.0
    assert d.propensity == (policy.audit_rate if d.route == "auto" else 1.0)
    assert not d.audit or d.route == "auto"
    assert d.reasons
    assert 0.0 <= d.margin <= 1.0
    learned = n_labels > 0 and bool(proba)  # a model that has learned nothing suggests nothing
    automatable = policy.automation_on and n_labels >= policy.min_labels and learned
    assert (d.route == "auto") == (automatable and d.confidence >= policy.threshold)
    if proba:
        assert d.suggestion == (suggestion(proba) if learned else None)
        assert d.confidence == confidence(proba)
        assert d.margin == margin(proba)
    else:
        assert (d.suggestion, d.confidence, d.margin) == (None, 0.0, 0.0)


@given(probas())
def test_uncertainty_measures_are_consistent(proba):
    assert confidence(proba) == proba[suggestion(proba)]
    assert 0.0 <= margin(proba) <= confidence(proba) or len(proba) == 1
    assert -1e-12 <= entropy(proba) <= math.log(len(proba)) + 1e-9


def test_margin_of_a_single_label_is_one():
    assert margin({"only": 1.0}) == 1.0


def test_suggestion_of_nothing_is_an_error():
    with pytest.raises(LearnerError):
        suggestion({})


# --- queue order --------------------------------------------------------------------------------


def test_queue_priority_serves_uncertain_cases_first():
    assert queue_priority(0.1, 1000.0) < queue_priority(0.6, 1000.0)


def test_queue_priority_ageing_lets_old_cases_overtake():
    old_sure = queue_priority(0.9, 0.0)
    new_unsure = queue_priority(0.05, 3600.0)
    assert old_sure < new_unsure


def test_queue_priority_audits_count_as_margin_zero():
    assert queue_priority(0.99, 100.0, audit=True) == queue_priority(0.0, 100.0)


def test_route_case_draws_a_review_sample_of_cases_for_people():
    policy = RoutingPolicy(threshold=0.93, sample_rate=0.1)
    unsure = {"ok": 0.6, "fraud": 0.4}
    decisions = [route(unsure, policy=policy, case_key=f"case-{i}") for i in range(4000)]
    assert 0.08 < statistics.mean(d.sample for d in decisions) < 0.12
    sampled = next(d for d in decisions if d.sample)
    assert sampled.route == "review" and sampled.propensity == 1.0
    assert sampled.reasons[-1] == "review sample (rate 0.1): served first"
    automated = [route(CONFIDENT, policy=policy, case_key=f"case-{i}") for i in range(500)]
    assert not any(d.sample for d in automated)  # audits sample those
    assert not any(route(unsure, case_key=f"case-{i}").sample for i in range(500))  # rate 0


def test_queue_priority_serves_the_review_sample_first_under_a_backlog():
    backlog_head = 0.0  # the oldest case still waiting arrived at 0 s
    sampled_new = queue_priority(0.99, 7200.0, sample=True, oldest=backlog_head)
    unsure_old = queue_priority(0.0, 0.0, oldest=backlog_head)
    assert sampled_new < unsure_old


def test_queue_priority_rejects_non_positive_ageing():
    with pytest.raises(LearnerError):
        queue_priority(0.5, 0.0, ageing_seconds=0.0)


rows = st.lists(
    st.tuples(st.floats(0.0, 1.0), st.floats(0.0, 1e6), st.booleans()), min_size=2, max_size=20
)


@given(rows, st.floats(1e6, 2e6), st.floats(60.0, 86400.0))
def test_queue_priority_order_matches_margin_minus_age(rows, now, ageing):
    static = [queue_priority(m, t, ageing_seconds=ageing, audit=a) for m, t, a in rows]
    dynamic = [(0.0 if a else m) - (now - t) / ageing for m, t, a in rows]
    for i in range(len(rows)):
        for j in range(len(rows)):
            if dynamic[i] < dynamic[j] - 1e-6:  # clearly ahead now -> ahead in the index
                assert static[i] < static[j]
