"""Certification over several evidence windows, and its cheap per-label scan."""

from __future__ import annotations

import pickle
import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from learner import Evidence, LearnerError, RiskController, weighted_upper_at_most
from learner.controller import DEFAULT_WINDOWS, _upper_at_most

FAST = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def review(confidence: float, correct: bool) -> Evidence:
    return Evidence(confidence, correct, propensity=1.0, audit=False, route="review")


def audit(confidence: float, correct: bool, rate: float = 0.05) -> Evidence:
    return Evidence(confidence, correct, propensity=rate, audit=True, route="auto")


@FAST
@given(
    n=st.floats(0.0, 50_000.0),
    rate=st.floats(0.0, 1.0),
    level=st.sampled_from([0.05, 0.025, 0.0125, 0.004]),
    target=st.sampled_from([0.01, 0.02, 0.05, 0.2]),
)
def test_tabled_test_agrees_with_the_incomplete_beta(n, rate, level, target):
    errors = rate * n
    assert _upper_at_most(errors, n, level, target) == weighted_upper_at_most(
        errors, n, level, target
    )


def random_evidence(rng: random.Random, n: int) -> list[tuple[str, Evidence]]:
    items = []
    for i in range(n):
        c = rng.choice([0.55, 0.7, 0.9, 0.96, 0.99, 0.999])
        right = rng.random() > (1.0 - c) * rng.choice([0.5, 1.0, 2.0])
        if c >= 0.96 and rng.random() < 0.5:
            items.append((f"k{rng.randrange(n)}", audit(c, right)))  # keys repeat: relabels
        else:
            items.append((f"k{i}", review(c, right)))
    return items


@FAST
@given(seed=st.integers(0, 10_000), n=st.integers(1, 700))
def test_one_pass_scan_matches_the_two_pass_definition(seed, n):
    controller = RiskController(target_error=0.05, windows=(50, 200, 800))
    for key, evidence in random_evidence(random.Random(seed), n):
        controller.observe(key, evidence)
    m = len(controller._active())
    for j in controller._active():
        win = controller._wins[j]
        regions = controller._regions(win)
        fused_regions, fused_scan = controller._analyse(win, m)
        assert fused_regions == regions
        assert fused_scan == controller._scan(win, regions, m)


@FAST
@given(seed=st.integers(0, 10_000), n=st.integers(1, 400))
def test_each_window_holds_its_most_recent_distinct_keys(seed, n):
    rng = random.Random(seed)
    sizes = (7, 30, 120)
    controller = RiskController(target_error=0.05, windows=sizes)
    log: list[tuple[str, Evidence]] = []
    for key, evidence in random_evidence(rng, n):
        controller.observe(key, evidence)
        log = [(k, e) for k, e in log if k != key] + [(key, evidence)]
        if rng.random() < 0.1:  # a correction of a random recent key
            k, e = log[rng.randrange(len(log))]
            controller.correct(k, not e.correct)
            log = [
                (k2, Evidence(e.confidence, not e.correct, e.propensity, e.audit, e.route))
                if k2 == k
                else (k2, e2)
                for k2, e2 in log
            ]
    for size, win in zip(sizes, controller._wins, strict=True):
        expected = RiskController(target_error=0.05, window=size)
        for key, evidence in log[-size:]:
            expected.observe(key, evidence)
        assert win.count == min(size, len(log))
        assert win.labelled == expected._wins[0].labelled
        assert win.errors == expected._wins[0].errors
        assert win.arrivals == expected._wins[0].arrivals


def test_a_flat_error_at_the_target_is_certified_at_most_delta_of_the_time():
    """Errors at exactly 5% everywhere, target 5% (the worst case of the null): over 100
    seeded streams a threshold is certified in at most delta of them (plus Monte Carlo
    slack), although three windows and every threshold were tried."""
    certified = 0
    for seed in range(100):
        rng = random.Random(seed)
        controller = RiskController(target_error=0.05, windows=(60, 250, 1000))
        for i in range(1000):
            confidence = rng.choice([0.6, 0.8, 0.95, 0.99])
            controller.observe(f"c{i}", review(confidence, rng.random() >= 0.05))
        certified += controller.certify().threshold is not None
    assert certified <= 11  # delta = 0.05: at most 5 expected; 11 is 3 sigma above


def test_a_short_window_certifies_after_the_model_improved():
    """Old evidence from a worse model (20% errors) fills the long window; the short one
    sees only the recent 1% and certifies from it."""
    controller = RiskController(target_error=0.05, windows=(400, 4000))
    for i in range(3000):
        controller.observe(f"old{i}", review(0.95, i % 5 != 0))
    for i in range(400):
        controller.observe(f"new{i}", review(0.95, i % 100 != 0))
    certificate = controller.certify()
    assert certificate.threshold == 0.95 and certificate.n == 400
    assert "last 400 labels" in certificate.reason
    assert RiskController(target_error=0.05, window=4000).certify().threshold is None


def test_a_long_window_certifies_a_noise_floor_stream():
    """4% errors everywhere (label noise), target 5%: 1,000 labels cannot tell that from
    5%, 12,000 can."""
    rng = random.Random(3)
    items = [review(rng.choice([0.6, 0.8, 0.95]), rng.random() >= 0.04) for _ in range(12_000)]
    short = RiskController(target_error=0.05, window=1000)
    both = RiskController(target_error=0.05, windows=(1000, 12_000))
    for i, evidence in enumerate(items):
        short.observe(f"c{i}", evidence)
        both.observe(f"c{i}", evidence)
    assert short.certify().threshold is None
    certificate = both.certify()
    assert certificate.threshold == 0.6 and certificate.n == 12_000  # every case


def test_windows_as_long_as_the_evidence_are_tested_once():
    controller = RiskController(target_error=0.05)  # DEFAULT_WINDOWS
    for i in range(300):
        controller.observe(f"c{i}", review(0.99, True))
    assert controller._active() == [len(DEFAULT_WINDOWS) - 1]
    one = RiskController(target_error=0.05, window=DEFAULT_WINDOWS[-1])
    for i in range(300):
        one.observe(f"c{i}", review(0.99, True))
    assert controller.certify() == one.certify()


def test_windows_state_round_trips_and_pickles():
    controller = RiskController(target_error=0.02, windows=(10, 40))
    for i, (key, evidence) in enumerate(random_evidence(random.Random(1), 100)):
        controller.observe(key, evidence)
        if i % 9 == 0:
            controller.correct(key, not evidence.correct)
    rebuilt = RiskController.from_state(controller.to_state())
    assert rebuilt.to_state() == controller.to_state()
    assert rebuilt.certify() == controller.certify()
    copy = pickle.loads(pickle.dumps(controller))
    assert copy.certify() == controller.certify() and copy.n_window == 40


def test_a_controller_pickled_before_windows_loads():
    controller = RiskController(target_error=0.05, window=50)
    for i in range(80):
        controller.observe(f"c{i}", review(0.9, i % 7 != 0))
    from collections import OrderedDict

    old_state = {  # the attributes a single-window controller pickled
        "target_error": 0.05,
        "delta": 0.05,
        "window": 50,
        "seed": 0,
        "grid": list(controller.grid),
        "start_rates": list(controller.start_rates),
        "point_min_n": 30,
        "n_observed": 80,
        "_evidence": OrderedDict((k, (0, e)) for k, e in controller._evidence()),
    }
    loaded = RiskController.__new__(RiskController)
    loaded.__setstate__(old_state)
    assert loaded.windows == (50,) and loaded.certify() == controller.certify()


def test_window_options_are_checked():
    with pytest.raises(LearnerError, match="not both"):
        RiskController(target_error=0.05, window=10, windows=(10, 20))
    with pytest.raises(LearnerError, match="window must be >= 1"):
        RiskController(target_error=0.05, windows=(0, 20))
