"""Replay a labelled stream through the whole loop with a simulated reviewer.

Each case is scored by the real :class:`~learner.model.TaskModel`, routed by
:func:`~learner.routing.route_case` with the threshold in force, and either decided
automatically (a deterministic audit sample also goes to a person) or queued for a
person, the queue ordered by :func:`~learner.routing.queue_priority` (or FIFO, or at
random). A simulated reviewer labels up to ``reviewer_capacity`` cases per arriving
case with the stream's true label; each label trains the model and is fed, with what
was recorded at routing time, to the :class:`~learner.controller.TaskGovernor`, whose
mode and threshold route the next cases.

Run ``python -m learner.simulate --dataset phishing --target-error 0.05 --seeds 3`` for
learning curves (CSV and PNG per seed).
"""

from __future__ import annotations

import argparse
import heapq
import logging
import math
import random
from collections import deque
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy.special import betainc
from scipy.stats import binom

from learner.challenger import Challenger, challenger_for, starts_challenger
from learner.controller import (
    DEFAULT_GRID,
    MIN_DELTA,
    MIN_TARGET_ERROR,
    AuditTally,
    Evidence,
    Migration,
    TaskGovernor,
)
from learner.datasets import STREAM_NAMES, SYNTHETIC_DEFAULT_N, load_stream
from learner.errors import LearnerError
from learner.inputs import InputMonitor
from learner.model import MODEL_FAMILIES, TaskModel
from learner.panel import QualityPolicy, ReviewPanel, SimulatedReviewer
from learner.routing import (
    MIN_AUDIT_RATE,
    RoutingPolicy,
    queue_priority,
    review_sample_rate,
    route_case,
)

__all__ = [
    "DRIFT_KINDS",
    "POLICIES",
    "QUEUE_ORDERS",
    "SimulationConfig",
    "SimulationResult",
    "clairvoyant_automation",
    "hindsight_threshold",
    "load_drifting_stream",
    "main",
    "simulate",
    "write_outputs",
]

log = logging.getLogger(__name__)

POLICIES = ("certified", "fixed", "point")
QUEUE_ORDERS = ("margin", "fifo", "random")
DRIFT_KINDS = ("auto", "concept", "rotate")
#: Streams whose generator can switch to a different concept at the drift point.
_CONCEPT_DRIFT = ("hyperplane", "randomrbf", "sea")
#: How long after a drift the realized error of automated decisions is reported.
POST_DRIFT_CASES = 2000
#: The learning curve's ``recent_*`` columns cover at least this many cases
RECENT_CASES = 100


@dataclass
class SimulationConfig:
    """One simulated run.

    Parameters
    ----------
    dataset
        A stream of :func:`learner.datasets.load_stream`.
    seed
        Seeds the stream (its shuffle or generator), the model and the random queue.
    n
        Cases (default: the whole file, or 30 000 synthetic cases).
    target_error, delta, audit_rate, min_labels
        The task's settings.
    reviewer_capacity
        Cases a reviewer labels per arriving case (1.0: every routed case at once).
    queue_order
        ``"margin"`` (:func:`~learner.routing.queue_priority`: least certain first, with
        ageing), ``"fifo"`` or ``"random"``.
    policy
        ``"certified"`` (the governor), ``"fixed"`` (automate at ``fixed_threshold``
        after the cold start, as a fixed confidence rule does) or ``"point"`` (the lowest
        threshold whose importance-weighted *point* estimate is within the target).
    family
        The model family (``"linear"`` or ``"forest"``).
    drift_at
        Abrupt drift at this case: ``drift_kind`` ``"concept"`` switches the generator to
        a different concept (Hyperplane and RandomRBF: another seed; SEA: variant 3,
        ``x0 + x1 > 9.5`` instead of ``> 8``); ``"rotate"`` maps every label to the next
        one; ``"auto"`` picks ``"concept"`` where the stream has one, else ``"rotate"``.
    bounded_ageing
        Pass the queue's head to :func:`~learner.routing.queue_priority` (ageing bounded
        by the backlog, as the service does); ``False``: unbounded ageing.
    review_sample
        Draw a review sample at the audit rate while the queue is behind, served first in
        the margin order (as the service does; :func:`~learner.routing.review_sample_rate`);
        ``False``: none.
    challenger
        On a drift alarm, race a fresh model trained on later labels only against the
        live one (:class:`~learner.challenger.Challenger`), as the service does.
    watch_inputs
        Raise the audit rate for a while when the numeric inputs move
        (:class:`~learner.inputs.InputMonitor`), as the service does.
    window, ageing_seconds, curve_points, tuning
        Controller window (labels; default: the controller's windows, 3,000 labels for the
        point-estimate baseline), queue ageing (one case arrives per second), rows in
        the learning curve, extra governor tuning (see :class:`TaskGovernor`).
    """

    dataset: str
    seed: int = 0
    n: int | None = None
    target_error: float = 0.05
    delta: float = 0.05
    audit_rate: float = 0.05
    min_labels: int = 50
    reviewer_capacity: float = 1.0
    queue_order: str = "margin"
    policy: str = "certified"
    fixed_threshold: float = 0.9
    family: str = "linear"
    drift_at: int | None = None
    drift_kind: str = "auto"
    window: int | None = None
    challenger: bool = True
    watch_inputs: bool = True
    bounded_ageing: bool = True
    review_sample: bool = True
    ageing_seconds: float = 3600.0
    curve_points: int = 200
    tuning: dict[str, Any] = field(default_factory=dict)
    reviewers: tuple[SimulatedReviewer, ...] = ()  # empty: one reviewer who is never wrong
    quality: QualityPolicy | None = None  # overlap and second opinions among ``reviewers``

    def __post_init__(self) -> None:
        if self.dataset not in STREAM_NAMES:
            raise LearnerError(
                f"unknown dataset {self.dataset!r}; expected one of {', '.join(STREAM_NAMES)}"
            )
        checks = [
            (self.policy in POLICIES, f"policy must be one of {', '.join(POLICIES)}"),
            (self.queue_order in QUEUE_ORDERS, f"queue_order must be one of {QUEUE_ORDERS}"),
            (self.family in MODEL_FAMILIES, f"family must be one of {MODEL_FAMILIES}"),
            (self.drift_kind in DRIFT_KINDS, f"drift_kind must be one of {DRIFT_KINDS}"),
            (0.0 < self.reviewer_capacity <= 1.0, "reviewer_capacity must be in (0, 1]"),
            (
                MIN_TARGET_ERROR <= self.target_error < 1.0,
                f"target_error must be in [{MIN_TARGET_ERROR:g}, 1)",
            ),
            (MIN_DELTA <= self.delta < 1.0, f"delta must be in [{MIN_DELTA:g}, 1)"),
            (
                MIN_AUDIT_RATE <= self.audit_rate <= 1.0,
                f"audit_rate must be in [{MIN_AUDIT_RATE:g}, 1]",
            ),
            (self.n is None or self.n > 0, "n must be positive"),
            (self.drift_at is None or self.drift_at > 0, "drift_at must be positive"),
        ]
        for ok, message in checks:
            if not ok:
                raise LearnerError(message)

    @property
    def label(self) -> str:
        """A file-name-safe name of the run."""
        drift = f"-drift{self.drift_at}" if self.drift_at else ""
        audit = f"-audit{self.audit_rate:g}" if self.audit_rate != 0.05 else ""
        audit += "" if self.review_sample else "-nosample"
        return (
            f"{self.dataset}-{self.policy}-t{self.target_error:g}-cap{self.reviewer_capacity:g}"
            f"-{self.queue_order}{audit}{drift}-s{self.seed}"
        )


@dataclass
class SimulationResult:
    """A run's learning curve, its per-case record and its summary figures.

    ``curve`` has one row per ``cases // curve_points`` cases: ``cases``, ``labels``,
    ``automation_rate`` (cumulative share of cases decided automatically),
    ``recent_automation`` (share of the last :data:`RECENT_CASES` cases, or of the cases
    since the previous row where that is more), ``auto_cases``,
    ``auto_errors``, ``realized_auto_error`` (cumulative error of automated decisions),
    ``estimated_error`` and ``bound`` (the governor's current certificate: the region in
    force, or before anything is automated and while suspended the best region's),
    ``threshold`` (in force; NaN when nothing is automated), ``mode``, ``accuracy``
    (prequential, cumulative) and ``recent_accuracy`` (over the same recent cases).
    """

    config: SimulationConfig
    curve: pd.DataFrame
    confidence: np.ndarray
    correct: np.ndarray
    automated: np.ndarray
    audited: np.ndarray  # automated cases drawn for an audit
    labels_so_far: np.ndarray  # labels spent after each case
    migrations: list[Migration]
    migration_cases: list[int]  # the case index at which each migration happened
    cases: int
    labels: int
    auto_cases: int
    auto_errors: int
    accuracy: float
    drift_detections: list[int] = field(default_factory=list)  # case index of each
    input_moves: int = 0  # moves of the inputs that raised the audit rate (InputMonitor)
    review: dict[str, Any] = field(default_factory=dict)  # ReviewPanel.stats() (noisy reviewers)

    @property
    def automation_rate(self) -> float:
        return self.auto_cases / self.cases if self.cases else 0.0

    @property
    def realized_auto_error(self) -> float | None:
        return self.auto_errors / self.auto_cases if self.auto_cases else None

    @property
    def labels_per_1000(self) -> float:
        return 1000.0 * self.labels / self.cases if self.cases else 0.0

    @property
    def violation_pvalue(self) -> float:
        """One-sided binomial p-value of the automated errors against the target."""
        if not self.auto_cases:
            return 1.0
        sf = binom.sf(self.auto_errors - 1, self.auto_cases, self.config.target_error)
        return float(sf)

    @property
    def violated(self) -> bool:
        """Realized error above the target by more than binomial noise (test at 5%)."""
        return self.violation_pvalue < 0.05

    def hindsight(self, target_error: float | None = None) -> tuple[float | None, float]:
        """The best fixed threshold in hindsight on this run's predictions, and its automation."""
        target = self.config.target_error if target_error is None else target_error
        return hindsight_threshold(self.confidence, self.correct, target)

    def ceiling(self, target_error: float | None = None) -> float:
        """:func:`clairvoyant_automation` on this run's predictions."""
        target = self.config.target_error if target_error is None else target_error
        return clairvoyant_automation(self.confidence, self.correct, target, self.config.delta)

    def drift_summary(self) -> dict[str, Any]:
        """Reaction to the drift at ``config.drift_at`` (empty without drift).

        ``suspended_at``: first case after the change with no automation in force (a
        suspension); ``auto_before_suspension``: automated cases between the change and
        then; ``auto_before_audited_error``: automated cases between the change and the
        first audit that found a wrong automated decision (an audit-based detector that
        does not raise false alarms cannot suspend sooner; ``None`` when no audit found
        one); ``post_change_auto_error``: realized error of automated decisions in the
        :data:`POST_DRIFT_CASES` cases after the change; ``recertified_at``: first
        automated case after the suspension.
        """
        k = self.config.drift_at
        if k is None or k >= self.cases:
            return {}
        auto = self.automated
        suspended_at = None
        for m, at in zip(self.migrations, self.migration_cases, strict=True):
            if m.mode == "suspended" and at >= k:
                suspended_at = at
                break
        stop = suspended_at if suspended_at is not None else self.cases
        recertified_at = None
        if suspended_at is not None:
            later = np.nonzero(auto[suspended_at + 1 :])[0]
            recertified_at = int(suspended_at + 1 + later[0]) if len(later) else None
        found = np.flatnonzero(self.audited[k:] & ~self.correct[k:])
        before_found = int(auto[k : k + found[0] + 1].sum()) if len(found) else None
        window = slice(k, min(k + POST_DRIFT_CASES, self.cases))
        post_auto = int(auto[window].sum())
        post_errors = int((auto[window] & ~self.correct[window]).sum())
        return {
            "drift_at": k,
            "auto_before_drift_rate": float(auto[max(0, k - 2000) : k].mean()) if k else 0.0,
            "suspended_at": suspended_at,
            "auto_before_suspension": int(auto[k:stop].sum()),
            "auto_before_audited_error": before_found,
            "post_change_auto_cases": post_auto,
            "post_change_auto_error": post_errors / post_auto if post_auto else None,
            "recertified_at": recertified_at,
        }

    def summary(self) -> dict[str, Any]:
        """The run's figures as one flat dict (for tables)."""
        threshold, hindsight = self.hindsight()
        row = {
            "dataset": self.config.dataset,
            "policy": self.config.policy,
            "seed": self.config.seed,
            "target_error": self.config.target_error,
            "cases": self.cases,
            "labels": self.labels,
            "labels_per_1000": self.labels_per_1000,
            "auto_cases": self.auto_cases,
            "auto_errors": self.auto_errors,
            "automation_rate": self.automation_rate,
            "realized_auto_error": self.realized_auto_error,
            "violated": self.violated,
            "accuracy": self.accuracy,
            "hindsight_threshold": threshold,
            "hindsight_automation": hindsight,
            "ceiling_automation": self.ceiling(),
            "migrations": len(self.migrations),
            "suspensions": sum(m.mode == "suspended" for m in self.migrations),
            "drift_detections": len(self.drift_detections),
            "input_moves": self.input_moves,
        }
        row.update(self.drift_summary())
        return row


def hindsight_threshold(
    confidence: np.ndarray | list[float], correct: np.ndarray | list[bool], target_error: float
) -> tuple[float | None, float]:
    """The best fixed threshold in hindsight: the largest automation within the target.

    Among thresholds ``t`` (cutting between distinct confidences), the one automating the
    most cases (``confidence >= t``) whose error rate is at most ``target_error``.

    Returns
    -------
    tuple
        The threshold (``None`` when no threshold meets the target) and the share of
        cases it automates.

    Examples
    --------
    >>> hindsight_threshold([0.99, 0.95, 0.9, 0.8, 0.6], [True, True, False, True, False], 0.3)
    (0.8, 0.8)
    >>> hindsight_threshold([0.9, 0.8], [False, False], 0.05)
    (None, 0.0)
    """
    c = np.asarray(confidence, dtype=float)
    z = np.asarray(correct, dtype=bool)
    if not len(c):
        return None, 0.0
    order = np.argsort(-c, kind="stable")
    cs, errors = c[order], np.cumsum(~z[order])
    count = np.arange(1, len(c) + 1)
    # Only cut after the last case of a tie: a threshold automates all equal confidences.
    last_of_tie = np.append(cs[1:] < cs[:-1], True)
    ok = (errors <= target_error * count) & last_of_tie
    if not ok.any():
        return None, 0.0
    best = int(np.nonzero(ok)[0].max())
    return float(cs[best]), (best + 1) / len(c)


def clairvoyant_automation(
    confidence: np.ndarray | list[float],
    correct: np.ndarray | list[bool],
    target_error: float,
    delta: float = 0.05,
    grid: tuple[float, ...] = DEFAULT_GRID,
) -> float:
    """An optimistic ceiling on certified automation: the share a clairvoyant certifier takes.

    Each case is automated when its confidence reaches the lowest grid threshold whose
    region, over *every* earlier case as if each had been labelled, has a Clopper-Pearson
    upper bound at most ``target_error`` at the full ``delta``. That is more evidence
    than any run gathers (automated cases are only audited), tested with no correction
    for the many thresholds tried, so a valid certifier on the same predictions is not
    expected to reach it; it shows how much of the hindsight optimum any certificate
    can take on a stream (label noise close to the target, or a short stream, leave
    little).

    Examples
    --------
    >>> confidence, correct = [0.99] * 2000, [i % 100 != 0 for i in range(2000)]
    >>> clairvoyant_automation(confidence, correct, 0.05)  # 1% wrong: soon certified
    0.942
    >>> clairvoyant_automation(confidence, correct, 0.01)  # exactly at the target: never
    0.0
    """
    c = np.asarray(confidence, dtype=float)
    wrong = ~np.asarray(correct, dtype=bool)
    if not len(c):
        return 0.0
    thresholds = np.asarray(grid, dtype=float)
    bins = np.searchsorted(thresholds, c, side="right") - 1  # the highest grid point <= c
    n = np.zeros(len(thresholds))  # region "confidence >= grid[j]": cases and errors so far
    errors = np.zeros(len(thresholds))
    automated, lowest = 0, len(thresholds)  # lowest certified grid index (none yet)
    for b, w in zip(bins, wrong, strict=True):
        automated += int(b >= lowest)
        if b < 0:
            continue
        n[: b + 1] += 1.0
        errors[: b + 1] += w
        right = n - errors
        # the bound is <= target exactly when I_target(errors + 1, right) >= 1 - delta
        beta = betainc(errors + 1.0, np.maximum(right, 1.0), target_error)
        ok = (right > 0) & (beta >= 1.0 - delta)
        passing = np.flatnonzero(ok)
        lowest = int(passing[0]) if len(passing) else len(thresholds)
    return float(automated / len(c))


# --- streams --------------------------------------------------------------------------------


def _sea_rows(variant: int, seed: int) -> Iterator[tuple[dict, str]]:
    from river.datasets import synth

    for x, y in synth.SEA(variant=variant, seed=seed):
        yield {f"x{k}": float(v) for k, v in x.items()}, str(y)


def load_drifting_stream(
    dataset: str,
    *,
    seed: int = 0,
    n: int | None = None,
    drift_at: int | None = None,
    drift_kind: str = "auto",
) -> tuple[list[str], dict, list[tuple[dict, str]]]:
    """A stream's labels, schema and rows, with an abrupt drift composed at ``drift_at``.

    (river 0.26's ``ConceptDriftStream`` overflows far from its change point, so the drift
    is composed here.) See :class:`SimulationConfig` for the kinds of drift.

    Examples
    --------
    >>> labels, schema, rows = load_drifting_stream("sea", n=6, drift_at=3)
    >>> len(rows), sorted(schema)
    (6, ['x0', 'x1', 'x2'])
    >>> _, _, rotated = load_drifting_stream("phishing", n=4, drift_at=2, drift_kind="rotate")
    >>> _, _, plain = load_drifting_stream("phishing", n=4)
    >>> [a[1] == b[1] for a, b in zip(rotated, plain)]
    [True, True, False, False]
    """
    stream = load_stream(dataset, seed=seed, n=n)
    rows = list(stream.rows)
    if drift_at is None or drift_at >= len(rows):
        return stream.labels, stream.schema, rows
    kind = drift_kind
    if kind == "auto":
        kind = "concept" if dataset in _CONCEPT_DRIFT else "rotate"
    tail = len(rows) - drift_at
    if kind == "concept":
        if dataset not in _CONCEPT_DRIFT:
            raise LearnerError(f"{dataset} has no concept to switch to; use drift_kind='rotate'")
        if dataset == "sea":
            new = _sea_rows(3, seed)
        else:
            new = load_stream(dataset, seed=seed + 7919, n=tail).rows
        after = [next(new) for _ in range(tail)]
    else:
        nxt = {
            label: stream.labels[(i + 1) % len(stream.labels)]
            for i, label in enumerate(stream.labels)
        }
        after = [(x, nxt[y]) for x, y in rows[drift_at:]]
    return stream.labels, stream.schema, rows[:drift_at] + after


# --- the loop ---------------------------------------------------------------------------------


def simulate(config: SimulationConfig) -> SimulationResult:
    """Replay ``config.dataset`` through model, routing, queue, reviewer and governor.

    Examples
    --------
    >>> result = simulate(SimulationConfig("phishing", n=400, target_error=0.1))
    >>> result.cases, result.labels >= 50, 0.0 <= result.automation_rate <= 1.0
    (400, True, True)
    >>> list(result.curve.columns)[:5]
    ['cases', 'labels', 'automation_rate', 'recent_automation', 'auto_cases']
    """
    labels, schema, rows = load_drifting_stream(
        config.dataset,
        seed=config.seed,
        n=config.n,
        drift_at=config.drift_at,
        drift_kind=config.drift_kind,
    )
    model = TaskModel(labels, schema, config.family, config.seed)
    governor = TaskGovernor(
        target_error=config.target_error,
        delta=config.delta,
        min_labels=config.min_labels,
        window=3000 if config.window is None and config.policy == "point" else config.window,
        seed=config.seed,
        **config.tuning,
    )
    task = f"sim-{config.dataset}-{config.seed}"
    # the certified policy's audits carry the exact count of cases they stand for, as in
    # the service; the point-estimate baseline keeps the plain importance weights
    certified = config.policy == "certified"
    tally = AuditTally(governor.controller.grid) if certified else None
    rng = random.Random(config.seed)
    panel = _review_panel(config, labels)
    suggested: dict[int, str | None] = {}  # the suggestion at routing time (noisy reviewers)
    unsuggested: set[int] = set()  # cases routed before anything was learned
    n_cases = len(rows)
    step = max(1, n_cases // max(1, config.curve_points))

    confidence = np.zeros(n_cases)
    correct = np.zeros(n_cases, dtype=bool)
    automated = np.zeros(n_cases, dtype=bool)
    audited = np.zeros(n_cases, dtype=bool)
    labels_so_far = np.zeros(n_cases, dtype=np.int64)
    migrations: list[Migration] = []
    migration_cases: list[int] = []
    drift_cases: list[int] = []
    queue: list[tuple[float, int]] = []
    waiting: deque[int] = deque()  # queued cases in arrival order (labelled ones dropped lazily)
    pending: dict[int, tuple[dict, str, Evidence]] = {}
    credit = 0.0
    challenger: Challenger | None = None
    n_labels = auto_cases = auto_errors = n_correct = 0
    curve: list[dict[str, Any]] = []

    inputs = InputMonitor(schema) if config.watch_inputs and certified else None
    for i, (x, y) in enumerate(rows):
        # --- route ------------------------------------------------------------------------
        if inputs is not None:
            inputs.observe(x)
        proba = model.predict_proba_one(x)
        if certified:
            on = governor.mode == "automated"
            threshold = governor.threshold if on else None
        elif config.policy == "fixed":
            on, threshold = True, config.fixed_threshold
        else:
            threshold = governor.controller.point_threshold()
            on = threshold is not None
        while waiting and waiting[0] not in pending:  # drop the labelled ones at the head
            waiting.popleft()
        head = float(waiting[0]) if waiting else None  # one case arrives per second
        policy = RoutingPolicy(
            threshold=threshold if threshold is not None else 1.0,
            min_labels=config.min_labels,
            audit_rate=governor.audit_rate(config.audit_rate, inputs.moved if inputs else None)
            if certified
            else config.audit_rate,
            automation_on=on,
            threshold_note="certified threshold",
            sample_rate=review_sample_rate(config.audit_rate, head, float(i))
            if config.review_sample
            else 0.0,
        )
        decision = route_case(
            proba, policy=policy, n_labels=model.n_learned, task=task, case_key=str(i)
        )
        right = decision.suggestion == y
        confidence[i], correct[i] = decision.confidence, right
        n_correct += right
        if decision.route == "auto":
            automated[i] = True
            audited[i] = decision.audit
            auto_cases += 1
            auto_errors += not right
        weight = (
            tally.count(decision.route, decision.audit, decision.confidence, decision.threshold)
            if tally
            else None
        )
        if decision.route != "auto" or decision.audit:
            evidence = Evidence(
                decision.confidence,
                right,
                decision.propensity,
                decision.audit,
                decision.route,
                weight,
            )
            if decision.suggestion is None:  # nothing learned yet: as in the service, its
                unsuggested.add(i)  # label teaches the model but is no evidence about it
            pending[i] = (x, y, evidence)
            waiting.append(i)
            if panel is not None:
                suggested[i] = decision.suggestion
            if config.queue_order == "margin":
                priority = queue_priority(
                    decision.margin,
                    float(i),
                    ageing_seconds=config.ageing_seconds,
                    audit=decision.audit,
                    sample=decision.sample,
                    oldest=float(waiting[0]) if waiting and config.bounded_ageing else None,
                    scored=decision.suggestion is not None,
                )
            elif config.queue_order == "fifo":
                priority = float(i)
            else:
                priority = rng.random()
            heapq.heappush(queue, (priority, i))

        # --- the reviewer labels what capacity allows -------------------------------------
        credit = min(credit + config.reviewer_capacity, 1.0 + config.reviewer_capacity)
        while credit >= 1.0 - 1e-12 and queue:
            _, j = heapq.heappop(queue)
            xj, yj, evidence = pending.pop(j)
            if panel is not None:
                yj, evidence = _panel_label(panel, yj, suggested.pop(j), evidence)
            credit -= 1.0
            verdict = challenger.observe(model, xj, yj) if challenger is not None else None
            model.learn_one(xj, yj)
            n_labels += 1
            moved: list[Migration] = []
            if verdict == "promote":
                assert challenger is not None
                model = challenger.promote(model)
                moved += governor.model_replaced(challenger.replacement_reason)
            if verdict is not None:
                challenger = None
            before = governor.n_detections
            observed = governor.observe(str(j), evidence, n_labels) if j not in unsuggested else []
            moved += observed
            for m in moved:
                migrations.append(m)
                migration_cases.append(i)
            detected = governor.n_detections > before
            if detected:
                drift_cases.append(i)
            racing = config.challenger and certified
            if racing and starts_challenger(detected, challenger, observed):
                challenger = challenger_for(model, detected)

        labels_so_far[i] = n_labels
        # --- curve ----------------------------------------------------------------------
        done = i + 1
        if done % step == 0 or done == n_cases:
            cert = governor.certificate
            recent = slice(max(0, done - max(step, RECENT_CASES)), done)
            curve.append(
                {
                    "cases": done,
                    "labels": n_labels,
                    "automation_rate": auto_cases / done,
                    "recent_automation": float(automated[recent].mean()),
                    "auto_cases": auto_cases,
                    "auto_errors": auto_errors,
                    "realized_auto_error": auto_errors / auto_cases if auto_cases else math.nan,
                    "estimated_error": cert.estimate if cert.estimate is not None else math.nan,
                    "bound": cert.upper if cert.upper is not None else math.nan,
                    "threshold": threshold if on and threshold is not None else math.nan,
                    "mode": governor.mode if certified else config.policy,
                    "accuracy": n_correct / done,
                    "recent_accuracy": float(correct[recent].mean()),
                }
            )

    return SimulationResult(
        config=config,
        curve=pd.DataFrame(curve),
        confidence=confidence,
        correct=correct,
        automated=automated,
        audited=audited,
        labels_so_far=labels_so_far,
        migrations=migrations,
        migration_cases=migration_cases,
        cases=n_cases,
        labels=n_labels,
        auto_cases=auto_cases,
        auto_errors=auto_errors,
        accuracy=n_correct / n_cases if n_cases else 0.0,
        drift_detections=drift_cases,
        input_moves=inputs.n_moves if inputs is not None else 0,
        review=panel.stats() if panel is not None else {},
    )


# --- noisy reviewers (see learner.panel) -------------------------------------------------------


def _review_panel(config: SimulationConfig, labels: list[str]) -> ReviewPanel | None:
    if not config.reviewers:
        return None
    policy = config.quality or QualityPolicy()
    return ReviewPanel(config.reviewers, labels, policy, seed=config.seed + 104729)


def _panel_label(
    panel: ReviewPanel, truth: str, suggestion: str | None, evidence: Evidence
) -> tuple[str, Evidence]:
    """The panel's final label for a case, and the evidence the governor sees from it
    (whether the suggestion matched the *final* label, not the unknown truth)."""
    final = panel.final_label(truth, suggestion, evidence.confidence, gold=not evidence.audit)
    return final, replace(evidence, correct=final == suggestion)


# --- outputs ------------------------------------------------------------------------------------


def write_outputs(result: SimulationResult, out_dir: Path) -> tuple[Path, Path]:
    """Write the learning curve as CSV and as a PNG figure; return both paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    config = result.config
    csv_path = out_dir / f"{config.label}.csv"
    png_path = out_dir / f"{config.label}.png"
    result.curve.to_csv(csv_path, index=False)

    curve = result.curve
    fig, axes = plt.subplots(3, 1, figsize=(9, 10), sharex=True)
    ax = axes[0]
    recent = f"last {RECENT_CASES}+ cases"
    ax.plot(curve["cases"], curve["recent_automation"], label=f"automation rate ({recent})")
    ax.plot(curve["cases"], curve["automation_rate"], label="automation rate (cumulative)")
    ax.plot(curve["cases"], curve["threshold"], label="threshold in force", linestyle="--")
    ax.set_ylabel("share of cases / confidence")
    ax.set_ylim(-0.02, 1.02)
    ax.set_title("Automation and threshold")
    ax.legend(loc="lower right")

    ax = axes[1]
    ax.plot(curve["cases"], curve["realized_auto_error"], label="realized error (cumulative)")
    ax.plot(curve["cases"], curve["estimated_error"], label="estimated error (best region)")
    ax.plot(
        curve["cases"],
        curve["bound"],
        label=f"upper bound, 1 - delta = {1 - config.delta:g} (best region)",
    )
    ax.axhline(config.target_error, color="black", linestyle=":", label="target error")
    if config.drift_at:
        for a in axes:
            a.axvline(config.drift_at, color="red", alpha=0.4)
    top = max(3 * config.target_error, 0.05)
    ax.set_ylim(0, top)
    ax.set_ylabel("error rate of automated decisions")
    ax.set_title("Error of automated decisions")
    ax.legend(loc="upper right")

    ax = axes[2]
    ax.plot(curve["cases"], curve["recent_accuracy"], label=f"prequential accuracy ({recent})")
    ax.set_ylabel("accuracy (share correct)")
    ax.set_ylim(0, 1.02)
    twin = ax.twinx()
    twin.plot(curve["cases"], curve["labels"], color="grey", label="labels spent")
    twin.set_ylabel("labels spent (count)")
    ax.set_xlabel("cases arrived (count)")
    ax.set_title("Model accuracy and labels spent")
    ax.legend(loc="lower left")
    twin.legend(loc="lower right")

    fig.suptitle(
        f"{config.dataset}, {config.policy} policy, target {config.target_error:g}, "
        f"capacity {config.reviewer_capacity:g}, seed {config.seed}: automation "
        f"{result.automation_rate:.1%}, realized error "
        f"{(result.realized_auto_error or 0.0):.2%}"
    )
    fig.tight_layout()
    fig.savefig(png_path, dpi=90)
    plt.close(fig)
    return csv_path, png_path


# --- command line ---------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tierline simulate", description="Replay a labelled stream through tierline's loop."
    )
    parser.add_argument("--dataset", required=True, choices=STREAM_NAMES, help="the stream")
    parser.add_argument(
        "--target-error", type=float, default=0.05, help="the promised error (default 0.05)"
    )
    parser.add_argument("--seeds", type=int, default=1, help="run seeds 0 .. N-1")
    parser.add_argument(
        "--reviewer-capacity",
        type=float,
        default=1.0,
        help="cases a reviewer labels per arriving case (default 1: every routed case)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("simulations"),
        help="directory for the CSV and PNG of each seed (default ./simulations)",
    )
    parser.add_argument(
        "--n",
        type=int,
        default=None,
        help=f"cases (default: whole file, {SYNTHETIC_DEFAULT_N} synthetic)",
    )
    parser.add_argument(
        "--delta", type=float, default=0.05, help="1 - the promise's confidence (default 0.05)"
    )
    parser.add_argument(
        "--audit-rate",
        type=float,
        default=0.05,
        help="share of automated cases sent for an audit (default 0.05)",
    )
    parser.add_argument(
        "--policy",
        choices=POLICIES,
        default="certified",
        help="certified (the service's), fixed (--fixed-threshold) or point (a point "
        "estimate within the target; the unsafe baseline)",
    )
    parser.add_argument(
        "--fixed-threshold", type=float, default=0.9, help="for --policy fixed (default 0.9)"
    )
    parser.add_argument(
        "--queue-order",
        choices=QUEUE_ORDERS,
        default="margin",
        help="order reviewers take cases in (default margin: least certain first)",
    )
    parser.add_argument(
        "--family", choices=MODEL_FAMILIES, default="linear", help="model (default linear)"
    )
    parser.add_argument(
        "--drift-at", type=int, default=None, help="abrupt drift at this case (default none)"
    )
    parser.add_argument(
        "--drift-kind",
        choices=DRIFT_KINDS,
        default="auto",
        help="concept: the generator's concept changes; rotate: every label maps to the "
        "next; auto: concept where the stream has one (default)",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    """``simulate --dataset NAME --target-error E --seeds N [--reviewer-capacity R] [--out DIR]``.

    Writes a CSV and a PNG per seed under ``--out`` and prints one summary row per seed.
    """
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    header = (
        f"{'seed':>4} {'cases':>6} {'labels':>6} {'auto':>6} {'auto err':>8} {'bound':>6} "
        f"{'hindsight':>9} {'ceiling':>7} {'accuracy':>8} {'violated':>8}  files"
    )
    print(header)
    for seed in range(args.seeds):
        config = SimulationConfig(
            dataset=args.dataset,
            seed=seed,
            n=args.n,
            target_error=args.target_error,
            delta=args.delta,
            audit_rate=args.audit_rate,
            reviewer_capacity=args.reviewer_capacity,
            queue_order=args.queue_order,
            policy=args.policy,
            fixed_threshold=args.fixed_threshold,
            family=args.family,
            drift_at=args.drift_at,
            drift_kind=args.drift_kind,
        )
        result = simulate(config)
        csv_path, png_path = write_outputs(result, args.out)
        bound = result.curve["bound"].iloc[-1]
        error = result.realized_auto_error
        print(
            f"{seed:>4} {result.cases:>6} {result.labels:>6} {result.automation_rate:>6.1%} "
            f"{(error if error is not None else math.nan):>8.2%} {bound:>6.3f} "
            f"{result.hindsight()[1]:>9.1%} {result.ceiling():>7.1%} {result.accuracy:>8.1%} "
            f"{result.violated!s:>8}  "
            f"{csv_path}, {png_path}"
        )
    return 0


def summary_row(result: SimulationResult) -> dict[str, Any]:
    """The summary plus the configuration, flat (for benchmark tables)."""
    row = asdict(result.config)
    row.pop("tuning", None)
    row.pop("reviewers", None)
    row.pop("quality", None)
    row.update(result.summary())
    return row


if __name__ == "__main__":
    raise SystemExit(main())
