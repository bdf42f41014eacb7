"""Noisy simulated reviewers and the label-quality rules in the simulator."""

from __future__ import annotations

import random

import pytest

from learner.errors import LearnerError
from learner.panel import QualityPolicy, ReviewPanel, SimulatedReviewer
from learner.simulate import SimulationConfig, simulate

LABELS = ["a", "b"]


def test_reviewer_error_rate_is_realized():
    rng = random.Random(0)
    noisy = SimulatedReviewer("n", 0.1)
    wrong = sum(noisy.answer("a", "a", LABELS, rng) != "a" for _ in range(20_000))
    assert 0.09 < wrong / 20_000 < 0.11


def test_automation_bias_reviewer_is_wrong_only_with_the_model():
    rng = random.Random(0)
    stamper = SimulatedReviewer("s", 1.0, "suggestion")
    assert stamper.answer("a", "a", LABELS, rng) == "a"
    assert stamper.answer("a", "b", LABELS, rng) == "b"


def test_bad_settings_are_refused():
    with pytest.raises(LearnerError):
        SimulatedReviewer("x", 1.5)
    with pytest.raises(LearnerError):
        SimulatedReviewer("x", 0.1, "sloppy")
    with pytest.raises(LearnerError):
        QualityPolicy(labels_per_case=0)
    with pytest.raises(LearnerError):
        ReviewPanel([], LABELS)


def _team(rate: float = 0.3) -> list[SimulatedReviewer]:
    return [SimulatedReviewer("a"), SimulatedReviewer("b"), SimulatedReviewer("noisy", rate)]


def test_overlap_of_three_outvotes_one_noisy_reviewer():
    panel = ReviewPanel(_team(), LABELS, QualityPolicy(labels_per_case=3), seed=1)
    finals = [panel.final_label("a", "a", 0.6) for _ in range(500)]
    assert finals == ["a"] * 500
    stats = panel.stats()
    assert stats["opinions"] == 1500 and stats["final_label_error"] == 0.0
    assert 0.2 < stats["reviewer_error"]["noisy"] < 0.4


def test_single_labels_carry_the_noisy_reviewers_errors():
    panel = ReviewPanel(_team(), LABELS, QualityPolicy(), seed=1)
    for _ in range(900):
        panel.final_label("a", "a", 0.6)
    assert 0.05 < panel.stats()["final_label_error"] < 0.15


def test_second_opinions_on_confident_contradictions_stay_within_their_share():
    policy = QualityPolicy(second_opinion_confidence=0.9, second_opinion_share=0.05)
    panel = ReviewPanel(_team(1.0), LABELS, policy, seed=2)
    for _ in range(1000):
        panel.final_label("a", "a", 0.99)
    stats = panel.stats()
    assert 0 < stats["second_opinions"] <= 0.05 * 1001
    assert stats["second_opinion_share"] <= 0.05 + 1e-9


def test_gold_cases_flag_a_low_agreement_reviewer_for_second_opinions():
    policy = QualityPolicy(second_opinion_agreement=0.9, second_opinion_share=1.0, gold_rate=0.5)
    panel = ReviewPanel(_team(0.5), LABELS, policy, seed=3)
    for _ in range(600):
        panel.final_label("a", "a", 0.6)
    stats = panel.stats()
    assert stats["gold_answers"] > 200 and stats["second_opinions"] > 50
    plain = ReviewPanel(_team(0.5), LABELS, QualityPolicy(), seed=3)
    for _ in range(600):
        plain.final_label("a", "a", 0.6)
    assert stats["final_label_error"] < plain.stats()["final_label_error"]


def test_simulator_trains_on_final_labels_of_noisy_reviewers():
    team = tuple(_team(0.4))
    noisy = simulate(SimulationConfig("phishing", n=400, reviewers=team))
    voted = simulate(
        SimulationConfig(
            "phishing", n=400, reviewers=team, quality=QualityPolicy(labels_per_case=3)
        )
    )
    clean = simulate(SimulationConfig("phishing", n=400))
    assert noisy.review["final_label_error"] > 0.05
    assert voted.review["final_label_error"] == 0.0
    assert voted.review["opinions"] == 3 * voted.labels
    assert clean.review == {}
    assert voted.accuracy == pytest.approx(clean.accuracy)  # majority = the truth here
