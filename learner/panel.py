"""Noisy simulated reviewers and the label-quality rules the service applies to them.

A :class:`ReviewPanel` answers review cases the way the API's queue does (see
``api/services/quality.py``): each case gets opinions from *distinct* reviewers — one,
``labels_per_case``, or two when a second opinion is asked for — and the final label is
their strict majority, or a lead's answer when they disagree. A second opinion is asked
when a label contradicts a model at least ``second_opinion_confidence`` sure, or when the
reviewer's recent agreement is below ``second_opinion_agreement``, within a budget of
``second_opinion_share`` of the final labels.

Examples
--------
>>> panel = ReviewPanel([SimulatedReviewer("a"), SimulatedReviewer("b", 1.0)], ["x", "y"],
...                     QualityPolicy(labels_per_case=2), seed=0)
>>> panel.final_label("x", suggestion="x", confidence=0.9)  # a and b disagree: the lead decides
'x'
>>> panel.stats()["escalations"], panel.stats()["opinions"]
(1, 3)
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from learner.agreement import majority
from learner.errors import LearnerError

__all__ = ["ERROR_KINDS", "QualityPolicy", "ReviewPanel", "SimulatedReviewer"]

#: ``"random"``: with probability ``error_rate`` the reviewer gives another label at random;
#: ``"suggestion"`` (automation bias): with probability ``error_rate`` the reviewer takes the
#: model's suggestion unchecked, so they are wrong exactly when that suggestion is.
ERROR_KINDS = ("random", "suggestion")
RECENT = 50  # checked answers behind a reviewer's recent agreement
MIN_RECENT = 10


@dataclass(frozen=True)
class SimulatedReviewer:
    """A reviewer who errs with probability ``error_rate`` (see :data:`ERROR_KINDS`).

    >>> SimulatedReviewer("r", 0.1, "random").answer("a", "a", ["a", "b"], random.Random(1))
    'a'
    >>> careless = SimulatedReviewer("r", 1.0, "suggestion")
    >>> careless.answer("a", "b", ["a", "b", "c"], random.Random(0))
    'b'
    """

    name: str
    error_rate: float = 0.0
    errors: str = "random"

    def __post_init__(self) -> None:
        if not 0.0 <= self.error_rate <= 1.0:
            raise LearnerError(f"error_rate must be in [0, 1], got {self.error_rate}")
        if self.errors not in ERROR_KINDS:
            raise LearnerError(f"errors must be one of {ERROR_KINDS}, got {self.errors!r}")

    def answer(
        self, truth: str, suggestion: str | None, labels: Sequence[str], rng: random.Random
    ) -> str:
        if rng.random() >= self.error_rate:
            return truth
        if self.errors == "suggestion":
            return truth if suggestion is None else suggestion
        wrong = [label for label in labels if label != truth]
        return rng.choice(wrong) if wrong else truth


@dataclass(frozen=True)
class QualityPolicy:
    """The task's label-quality settings (``None`` switches a second-opinion rule off)."""

    labels_per_case: int = 1
    second_opinion_confidence: float | None = None
    second_opinion_agreement: float | None = None
    second_opinion_share: float = 0.1
    gold_rate: float = 0.0  # a reviewer answers a gold case this often per case labelled

    def __post_init__(self) -> None:
        if self.labels_per_case < 1:
            raise LearnerError("labels_per_case must be at least 1")
        if not 0.0 <= self.second_opinion_share <= 1.0:
            raise LearnerError("second_opinion_share must be in [0, 1]")


@dataclass
class ReviewPanel:
    """Simulated reviewers answering cases under a :class:`QualityPolicy`."""

    reviewers: Sequence[SimulatedReviewer]
    labels: Sequence[str]
    policy: QualityPolicy = field(default_factory=QualityPolicy)
    seed: int = 0
    lead: SimulatedReviewer = field(default_factory=lambda: SimulatedReviewer("lead"))

    def __post_init__(self) -> None:
        if not self.reviewers:
            raise LearnerError("a review panel needs at least one reviewer")
        self.rng = random.Random(self.seed)
        self.recent: dict[str, deque[bool]] = {r.name: deque(maxlen=RECENT) for r in self.reviewers}
        self.finals = self.final_errors = self.opinions = 0
        self.second_opinions = self.escalations = 0
        self.answers: dict[str, int] = dict.fromkeys(self.recent, 0)
        self.wrong: dict[str, int] = dict.fromkeys(self.recent, 0)
        self.gold: deque[tuple[str, str | None]] = deque(maxlen=500)  # (truth, suggestion)
        self.gold_answers = self.gold_wrong = 0

    def _agreement(self, name: str) -> float | None:
        seen = self.recent[name]
        return sum(seen) / len(seen) if len(seen) >= MIN_RECENT else None

    def _ask(self, reviewer: SimulatedReviewer, truth: str, suggestion: str | None) -> str:
        label = reviewer.answer(truth, suggestion, self.labels, self.rng)
        self.opinions += 1
        self.answers[reviewer.name] += 1
        self.wrong[reviewer.name] += label != truth
        return label

    def _wants_second(
        self, reviewer: str, label: str, suggestion: str | None, confidence: float
    ) -> bool:
        p = self.policy
        contradicts = (
            p.second_opinion_confidence is not None
            and suggestion is not None
            and label != suggestion
            and confidence >= p.second_opinion_confidence
        )
        agreement = self._agreement(reviewer)
        low = (
            p.second_opinion_agreement is not None
            and agreement is not None
            and agreement < p.second_opinion_agreement
        )
        budget = self.second_opinions + 1 <= p.second_opinion_share * (self.finals + 1)
        return (contradicts or low) and budget and len(self.reviewers) > 1

    def final_label(
        self, truth: str, suggestion: str | None, confidence: float, *, gold: bool = True
    ) -> str:
        """The final label of a case whose true label is ``truth``.

        ``gold``: the case may later serve as a gold case (admins pick hard cases, so the
        simulator passes reviewed cases, not audits of confident automated ones).
        """
        self._serve_gold()
        if gold:
            self.gold.append((truth, suggestion))
        order = list(self.reviewers)
        self.rng.shuffle(order)
        needed = min(self.policy.labels_per_case, len(order))
        given = [(r, self._ask(r, truth, suggestion)) for r in order[:needed]]
        if needed == 1 and self._wants_second(
            given[0][0].name, given[0][1], suggestion, confidence
        ):
            self.second_opinions += 1
            given.append((order[1], self._ask(order[1], truth, suggestion)))
        labels = [label for _, label in given]
        final = majority(labels) if len(labels) > 1 else labels[0]
        if final is None:
            self.escalations += 1
            final = self._lead(truth, suggestion)
        if len(given) > 1:
            for reviewer, label in given:
                self.recent[reviewer.name].append(label == final)
        self.finals += 1
        self.final_errors += final != truth
        return final

    def _serve_gold(self) -> None:
        """At the gold rate, a reviewer answers a gold case (shown like any other)."""
        if not self.gold or self.rng.random() >= self.policy.gold_rate:
            return
        reviewer = self.rng.choice(list(self.reviewers))
        truth, suggestion = self.rng.choice(self.gold)
        label = reviewer.answer(truth, suggestion, self.labels, self.rng)
        self.opinions += 1
        self.gold_answers += 1
        self.gold_wrong += label != truth
        self.recent[reviewer.name].append(label == truth)

    def _lead(self, truth: str, suggestion: str | None) -> str:
        self.opinions += 1
        return self.lead.answer(truth, suggestion, self.labels, self.rng)

    def stats(self) -> dict[str, Any]:
        """Opinions spent, second opinions, escalations, error of final labels, and per
        reviewer the realized error rate."""
        return {
            "final_labels": self.finals,
            "opinions": self.opinions,
            "second_opinions": self.second_opinions,
            "second_opinion_share": self.second_opinions / self.finals if self.finals else 0.0,
            "escalations": self.escalations,
            "gold_answers": self.gold_answers,
            "final_label_error": self.final_errors / self.finals if self.finals else None,
            "reviewer_error": {
                name: self.wrong[name] / n if n else None for name, n in self.answers.items()
            },
        }
