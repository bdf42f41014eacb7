"""After drift: the challenger model, the governor's reset and its raised audit rate."""

from __future__ import annotations

import pickle

import pytest

from learner import Evidence, LearnerError, TaskGovernor, TaskModel, parse_schema
from learner.challenger import Challenger, challenger_for

SCHEMA = parse_schema({"v": "number"})


def concept(i: int, rotated: bool) -> tuple[dict, str]:
    """``v > 0`` means "b" (rotated: "a")."""
    v = (i * 7 % 41) - 20.0
    positive = v > 0
    return {"v": v}, ("a" if positive else "b") if rotated else ("b" if positive else "a")


def trained(n: int = 400) -> TaskModel:
    model = TaskModel(["a", "b"], SCHEMA)
    for i in range(n):
        model.learn_one(*concept(i, rotated=False))
    return model


def test_a_challenger_takes_over_when_every_label_rotated():
    live = trained()
    challenger = Challenger(live)
    for i in range(300):
        x, y = concept(i, rotated=True)
        verdict = challenger.observe(live, x, y)
        live.learn_one(x, y)
        if verdict is not None:
            break
    assert verdict == "promote" and challenger.n < 100
    model = challenger.promote(live)
    assert model.n_learned == live.n_learned  # versions keep rising
    x, y = concept(5, rotated=True)
    assert max(model.predict_proba_one(x), key=model.predict_proba_one(x).get) == y


def test_a_challenger_that_is_no_better_is_dropped():
    live = trained()
    challenger = Challenger(live, max_labels=200)
    verdicts = []
    for i in range(200):
        x, y = concept(i, rotated=False)  # no change: the live model is right already
        verdicts.append(challenger.observe(live, x, y))
        live.learn_one(x, y)
    assert "promote" not in verdicts and verdicts[-1] == "drop"
    assert challenger.wins <= challenger.losses


def test_challenger_settings_are_checked():
    with pytest.raises(LearnerError):
        Challenger(trained(10), min_labels=10, max_labels=5)
    with pytest.raises(LearnerError):
        Challenger(trained(10), level=0.0)


def sure(i: int, right: bool, *, audited: bool = True) -> Evidence:
    if audited:
        return Evidence(0.99, right, propensity=0.05, audit=True, route="auto")
    return Evidence(0.99, right, propensity=1.0, audit=False, route="review")


def automated_governor() -> TaskGovernor:
    gov = TaskGovernor(target_error=0.05, min_labels=50, window=2000)
    for i in range(600):
        gov.observe(f"r{i}", sure(i, i % 100 != 0, audited=False))
    assert gov.mode == "automated"
    return gov


def test_model_replaced_suspends_and_forgets_the_old_models_evidence():
    gov = automated_governor()
    moves = gov.model_replaced("model replaced by one trained since the drift alarm (40 labels)")
    assert [m.mode for m in moves] == ["suspended"]
    assert moves[0].reason == (
        "suspended: model replaced by one trained since the drift alarm (40 labels)"
    )
    assert gov.controller.n_window == 0 and gov.threshold is None
    for i in range(600):  # fresh evidence about the new model certifies it again
        gov.observe(f"n{i}", sure(i, i % 100 != 0, audited=False))
    assert gov.mode == "automated"


def test_audits_are_raised_while_errors_may_be_rising_and_drop_back():
    gov = automated_governor()
    assert gov.audit_rate(0.05) == 0.05
    for i in range(100):  # audits, all right
        gov.observe(f"a{i}", sure(i, True))
    assert gov.audit_rate(0.05) == 0.05
    gov.observe("bad", sure(0, False))  # one audited error after none: a warning
    assert gov.audit_monitor.warning and gov.audit_rate(0.01) == pytest.approx(0.2)
    assert gov.audit_rate(0.05) == 1.0  # never above 1: every automated case
    for i in range(40):
        gov.observe(f"b{i}", sure(i, True))
    assert not gov.audit_monitor.warning and gov.audit_rate(0.05) == 0.05


def test_no_raised_audits_unless_automated():
    gov = TaskGovernor(target_error=0.05)
    for _ in range(50):
        gov.audit_monitor.observe(False)
    gov.audit_monitor.observe(True)
    assert gov.audit_monitor.warning and gov.audit_rate(0.05) == 0.05


def test_a_governor_pickled_before_audit_boosts_loads():
    gov = automated_governor()
    state = gov.__dict__.copy()
    del state["audit_boost"]
    monitor_state = gov.audit_monitor.__dict__.copy()
    del monitor_state["warn_fraction"]
    state["audit_monitor"] = gov.audit_monitor.__class__.__new__(gov.audit_monitor.__class__)
    state["audit_monitor"].__setstate__(monitor_state)
    old = TaskGovernor.__new__(TaskGovernor)
    old.__setstate__(state)
    assert old.audit_rate(0.05) == 0.05 and old.audit_boost == 8.0
    assert pickle.loads(pickle.dumps(old)).mode == "automated"


def test_a_replacement_names_what_started_the_challenger():
    """A challenger started by a suspension (the bound broke) is not said to follow a drift
    alarm that never was (an outside probe read "since the drift" with no drift in sight)."""
    live = TaskModel(["a", "b"], parse_schema({"v": "number"}))
    on_drift, on_suspension = challenger_for(live, True), challenger_for(live, False)
    assert on_drift.replacement_reason.endswith("since the drift alarm (0 labels)")
    assert on_suspension.replacement_reason.endswith("since the suspension (0 labels)")
