"""The simulator: the whole loop on seeded streams, its outputs and its CLI."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from learner import LearnerError
from learner.risk import clopper_pearson_upper
from learner.simulate import (
    RECENT_CASES,
    SimulationConfig,
    clairvoyant_automation,
    hindsight_threshold,
    load_drifting_stream,
    main,
    simulate,
    write_outputs,
)


@pytest.mark.parametrize(
    ("dataset", "n", "target", "family"),
    [
        ("phishing", None, 0.05, "linear"),
        ("phishing", None, 0.02, "linear"),
        ("sea", 4000, 0.01, "linear"),
        ("agrawal", 2500, 0.05, "linear"),  # the model does not fit: nothing to automate
    ],
)
def test_certified_automation_stays_within_target_on_small_streams(dataset, n, target, family):
    """Seeded validity: realized error of automated decisions within target (binomial test)."""
    for seed in range(3):
        result = simulate(
            SimulationConfig(dataset, seed=seed, n=n, target_error=target, family=family)
        )
        assert not result.violated, result.summary()
        assert result.labels >= min(result.cases, 50)


def test_certified_policy_automates_an_easy_stream():
    result = simulate(SimulationConfig("sea", n=4000, target_error=0.05))
    assert result.automation_rate > 0.6
    assert result.migrations[0].mode == "automated"
    assert result.curve["mode"].iloc[-1] == "automated"
    assert result.labels_per_1000 < 400


def test_fixed_threshold_breaks_the_target_where_the_model_does_not_fit():
    fixed = simulate(SimulationConfig("randomrbf", n=3000, policy="fixed", target_error=0.05))
    certified = simulate(SimulationConfig("randomrbf", n=3000, target_error=0.05))
    assert fixed.auto_cases > 0 and fixed.violated
    assert certified.auto_cases == 0


def test_same_config_gives_the_same_run():
    config = SimulationConfig("phishing", seed=2, n=600, target_error=0.1)
    a, b = simulate(config), simulate(config)
    pd.testing.assert_frame_equal(a.curve, b.curve)
    assert a.migrations == b.migrations
    assert (a.auto_errors, a.labels) == (b.auto_errors, b.labels)


def test_curve_columns_and_monotone_counts():
    result = simulate(SimulationConfig("phishing", n=500, target_error=0.1, curve_points=50))
    curve = result.curve
    assert list(curve.columns) == [
        "cases",
        "labels",
        "automation_rate",
        "recent_automation",
        "auto_cases",
        "auto_errors",
        "realized_auto_error",
        "estimated_error",
        "bound",
        "threshold",
        "mode",
        "accuracy",
        "recent_accuracy",
    ]
    assert curve["cases"].iloc[-1] == 500 and len(curve) == 50
    assert curve["labels"].is_monotonic_increasing
    assert curve["auto_cases"].is_monotonic_increasing
    assert result.labels + result.auto_cases >= result.cases  # every case decided or labelled
    # "recent" is the last RECENT_CASES cases (rows are 10 cases apart here)
    row = curve.iloc[30]
    last = slice(row["cases"] - RECENT_CASES, row["cases"])
    assert row["recent_automation"] == result.automated[last].mean()
    assert row["recent_accuracy"] == result.correct[last].mean()


@pytest.mark.parametrize("order", ["margin", "fifo", "random"])
def test_limited_capacity_labels_at_most_what_reviewers_can(order):
    result = simulate(SimulationConfig("phishing", n=800, reviewer_capacity=0.2, queue_order=order))
    assert 0.2 * 800 - 2 <= result.labels <= 0.2 * 800 + 1


def test_margin_queue_labels_uncertain_cases_first():
    margin = simulate(SimulationConfig("sea", n=3000, reviewer_capacity=0.2, target_error=0.01))
    fifo = simulate(
        SimulationConfig(
            "sea", n=3000, reviewer_capacity=0.2, target_error=0.01, queue_order="fifo"
        )
    )
    assert margin.accuracy >= fifo.accuracy - 0.01


def test_drift_suspends_and_reports():
    config = SimulationConfig("sea", n=9000, drift_at=6000, target_error=0.05)
    result = simulate(config)
    drift = result.drift_summary()
    assert drift["drift_at"] == 6000
    assert drift["suspended_at"] is not None and drift["suspended_at"] > 6000
    assert drift["auto_before_suspension"] < 1500
    assert result.summary()["suspended_at"] == drift["suspended_at"]
    suspended = [m for m in result.migrations if m.mode == "suspended"]
    assert any("drift detected" in m.reason for m in suspended)


def test_moving_inputs_raise_the_audits_of_automated_cases():
    """On the sweep the evidence always lags the inputs: the input monitor keeps the
    audits raised (every automated case at 5% and a boost of 20), so the evidence keeps
    up; without it, only the audit monitor's warnings raise them."""
    watched = simulate(SimulationConfig("sweep", n=5000, target_error=0.05))
    blind = simulate(SimulationConfig("sweep", n=5000, target_error=0.05, watch_inputs=False))
    assert watched.input_moves >= 10 and blind.input_moves == 0
    assert watched.automated.sum() > 1000 and blind.automated.sum() > 1000
    assert watched.audited.sum() > 0.8 * watched.automated.sum()
    assert blind.audited.sum() < 0.3 * blind.automated.sum()
    assert watched.summary()["input_moves"] == watched.input_moves


def test_drifting_streams_switch_at_the_drift_point():
    _, _, plain = load_drifting_stream("tickets", n=50)
    _, _, rotated = load_drifting_stream("tickets", n=50, drift_at=20)
    assert plain[:20] == rotated[:20]
    rotate = {"refund": "replace", "replace": "reject", "reject": "refund"}
    assert [rotate[y] for _, y in plain[20:]] == [y for _, y in rotated[20:]]
    _, _, switched = load_drifting_stream("sea", n=3000, drift_at=1000)
    after = switched[1000:]
    assert all((x["x0"] + x["x1"] > 9.5) == (y == "True") for x, y in after)
    with pytest.raises(LearnerError):
        load_drifting_stream("phishing", n=100, drift_at=50, drift_kind="concept")


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.tuples(st.floats(0.3, 1.0), st.booleans()), min_size=1, max_size=40),
    st.sampled_from([0.0, 0.1, 0.3]),
)
def test_hindsight_threshold_is_the_best_fixed_threshold(cases, target):
    confidence = np.array([c for c, _ in cases])
    correct = np.array([z for _, z in cases])
    threshold, share = hindsight_threshold(confidence, correct, target)
    best = 0.0
    for t in sorted(set(confidence)):
        region = confidence >= t
        if (~correct[region]).sum() <= target * region.sum():
            best = max(best, region.mean())
    assert share == pytest.approx(best)
    if threshold is not None:
        region = confidence >= threshold
        assert region.mean() == pytest.approx(share)


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.tuples(st.sampled_from([0.5, 0.8, 0.95, 0.99]), st.booleans()), max_size=60),
    st.sampled_from([0.05, 0.2, 0.4]),
)
def test_clairvoyant_ceiling_certifies_on_all_earlier_cases(cases, target):
    grid = (0.0, 0.8, 0.95, 0.99)
    automated = 0
    for t, (c, _) in enumerate(cases):  # the definition, case by case
        passing = [
            g
            for g in grid
            if (n := sum(1 for d, _ in cases[:t] if d >= g))
            and clopper_pearson_upper(sum(1 for d, z in cases[:t] if d >= g and not z), n, 0.05)
            <= target
        ]
        automated += bool(passing) and c >= min(passing)
    share = clairvoyant_automation([c for c, _ in cases], [z for _, z in cases], target, 0.05, grid)
    assert share == pytest.approx(automated / len(cases) if cases else 0.0)


def test_a_runs_summary_carries_its_ceiling():
    result = simulate(SimulationConfig("sea", n=3000, target_error=0.05))
    assert result.summary()["ceiling_automation"] == result.ceiling()
    assert 0.5 < result.ceiling() <= 1.0


def test_outputs_have_a_csv_and_a_png(tmp_path):
    result = simulate(SimulationConfig("phishing", n=300, target_error=0.1, curve_points=30))
    csv_path, png_path = write_outputs(result, tmp_path / "out")
    assert pd.read_csv(csv_path).shape[0] == 30
    assert png_path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cli_runs_seeds_and_writes_files(tmp_path, capsys):
    assert (
        main(
            [
                "--dataset",
                "phishing",
                "--target-error",
                "0.1",
                "--seeds",
                "2",
                "--n",
                "300",
                "--reviewer-capacity",
                "0.5",
                "--out",
                str(tmp_path),
            ]
        )
        == 0
    )
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].split()[:3] == ["seed", "cases", "labels"]
    assert len(lines) == 3
    assert len(list(tmp_path.glob("*.csv"))) == 2 and len(list(tmp_path.glob("*.png"))) == 2


@pytest.mark.parametrize(
    "fields",
    [
        {"dataset": "nope"},
        {"dataset": "sea", "policy": "magic"},
        {"dataset": "sea", "queue_order": "lifo"},
        {"dataset": "sea", "reviewer_capacity": 0.0},
        {"dataset": "sea", "target_error": 1.5},
        {"dataset": "sea", "family": "deep"},
    ],
)
def test_config_is_validated(fields):
    with pytest.raises(LearnerError):
        SimulationConfig(**fields)


def test_every_policy_runs():
    for policy, dataset in itertools.product(["certified", "fixed", "point"], ["phishing"]):
        result = simulate(SimulationConfig(dataset, n=400, policy=policy, target_error=0.1))
        assert result.cases == 400
