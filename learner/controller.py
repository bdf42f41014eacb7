"""Certified automation: the risk controller, the drift monitor and the tier governor.

The promise: *automated decisions are wrong at most ``target_error`` of the time, with
probability at least 1 - delta*. Three pieces keep it.

:class:`RiskController`
    Picks the lowest confidence threshold whose automated region has a finite-sample
    upper bound on its error at or below the target, from the labelled evidence recorded
    at routing time (prequential), the most recent ``window`` labels only.
:class:`DriftMonitor`
    ADWIN, and a CUSUM against the target, on the audited outcomes; fires when the error
    rate rises.
:class:`TaskGovernor`
    The tier-migration state machine of a task: ``assist`` -> ``automated`` ->
    ``suspended`` -> ``automated`` ..., each move a :class:`Migration` with its reason.

How the bound is built
----------------------
*Evidence is biased.* A person labels every reviewed case (propensity 1) but only an
audit sample (propensity ``audit_rate``) of the automated ones, so the labelled cases
over-represent uncertain ones. Confidence is cut into bins whose edges are the
candidate thresholds (the *grid*). Thresholds in force always sit on the grid, so
within a bin every case was routed alike at any one time: whether it was labelled
depended on the time and its bin only, never on whether the model was right. Within a
bin the labelled cases are therefore a plain random sample of the bin's cases, and its
error rate is estimated without weights (pre-automation reviews and later audits count
alike, which keeps far more evidence than weighting each case by ``1 / propensity``).
The bins of a region are mixed in proportion to the number of cases that arrived in
each: the labels' :attr:`Evidence.stands_for` summed, where an audit counts the automated
cases of its bin since the bin's previous audit (:class:`AuditTally`, exact) or, when
not counted, ``1 / propensity`` (their expectation: unbiased, but noisy with few audits).

*The bound.* The region's error estimate is the weighted mean of its labelled cases'
errors with case weights ``arrivals_b / labelled_b`` (constant within a bin). Its upper
bound is Clopper-Pearson on an effective sample size
(:func:`learner.risk.weighted_clopper_pearson_upper`): Kish's ``(sum w) ** 2 / sum w **
2``, or, where smaller, Korn and Graubard's ``p (1 - p) / var(p)`` with the stratified
variance of the estimate (:func:`_bound_size`). With equal weights (all cases reviewed,
or all from one bin) that is the exact binomial bound; with unequal weights it is the
standard survey-sampling bound (Kish 1965, Korn & Graubard 1998). Kish's size alone
assumes the errors spread like the cases and undercovers when they sit in the heavily
weighted bins; the design-effect size widens the bound there as soon as those errors
are seen. What no pooled bound can see is errors the audits have not found yet: the
bound then rests on the assumption that the heavy cases, audits of the most confident
bins, err no more than the lighter ones (the rarest errors sit there in a model that
fits; after drift the :class:`DriftMonitor` watches exactly those audits). The
simulated coverage tests and ``bench/policy_bench.py`` check it on real streams.

*Many thresholds.* Candidate regions are nested (``confidence >= g`` for each grid
point ``g``) and are tested in Learn-then-Test *fixed sequences*: from a start down the
grid, each region at the sequence's level, stopping at the first failure. A sequence
started at the top, where the region is tiny, stops at once when it sees a couple of
errors and never certifies anything; so each sequence starts at the highest grid point
whose region holds enough evidence: an effective sample large enough that an observed
error rate of ``start_rates[j] * target`` would certify. The starts are chosen from
sample counts alone, never from errors, which keeps the sequences valid. Three starts
(by default, at 0.2, 0.5 and 0.85 of the target) guard against a model that is only
good near the top, against a start that happens to see a few errors, and against a
region in the middle that is a little worse than the wider one below it (label noise
close to the target: a sequence from the top stops there, one started at the wide
region tests it directly); they split delta (Bonferroni), and with the
*fallback* rule (Wiens 2003) a sequence that reaches the next start while still
passing hands its level on, so that start is tested at the sum. Only grid points
whose bin holds evidence are candidates, and the certified threshold is the lowest one
that passed.

*The threshold in force* is a single hypothesis fixed before the next label arrives,
so the governor checks it on its own at the full delta after every label (it stays
while that bound is at or below the target), and uses the scan only to choose where to
move. Checking after every label on a sliding window is a repeated test: the guarantee
is per check, not simultaneous over the whole life of a task. What users care about,
the error of all the decisions that were automated, is what ``bench/policy_bench.py``
measures (it stays within the target up to binomial noise in at least 95% of runs).

*Recent evidence, several windows.* Only recent labels count, because the model keeps
learning and the world drifts; but how recent is a trade-off: a short window follows a
model that got better, a long one is what proves a region whose error sits just under
the target (a stream with label noise needs thousands of labels for that). So the
scans run on several windows side by side (the last 1,000, 4,000 and 16,000 labels by
default, :data:`DEFAULT_WINDOWS`), each at ``delta / m`` for the ``m`` windows tested,
and the lowest threshold any of them certifies is taken: a union bound over windows x
scans. A window at least as long as the evidence holds the same labels as the longest,
so it is tested once (chosen from counts alone). The check of the threshold in force
splits delta the same way and passes when any window's bound does. Older evidence was
produced by a worse model, which makes it conservative; a drift detector
(:class:`DriftMonitor`) guards the other direction, and after drift the governor
restarts every window.

*Cost.* A label moves a handful of bin counts; the regions are then summed and scanned
in one pass from the top of the grid (:meth:`RiskController._analyse`), and most bound
tests are settled by a shared table of critical error counts at sample sizes
``1.02 ** k`` (:func:`_upper_at_most`) instead of an incomplete-beta evaluation, with the
same outcome. Each window keeps its last pass and redoes only the bins between the
highest and the lowest that changed (further down only while the sums differ), so a
label costs a fraction of a full pass, with the same results.

Examples
--------
>>> controller = RiskController(target_error=0.05)
>>> for i in range(800):  # half the cases sure and 2% wrong, half unsure and 40% wrong
...     sure = i % 2 == 0
...     controller.observe(f"c{i}", Evidence(confidence=0.97 if sure else 0.6,
...                                          correct=i % 100 != 0 if sure else i % 5 > 1,
...                                          propensity=1.0, audit=False, route="review"))
>>> certificate = controller.certify()
>>> certificate.threshold, certificate.n, certificate.errors
(0.97, 400, 8)
>>> certificate.reason
'certified threshold 0.97 (bound 0.036 <= 0.05, n=400, 8 errors)'
"""

from __future__ import annotations

import bisect
import functools
import logging
import math
import operator
import threading
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Any, NamedTuple

from river.drift import ADWIN

from learner.errors import LearnerError
from learner.risk import weighted_clopper_pearson_upper, weighted_upper_at_most
from learner.routing import ROUTES

__all__ = [
    "DEFAULT_GRID",
    "DEFAULT_WINDOWS",
    "MIN_DELTA",
    "MIN_TARGET_ERROR",
    "MODES",
    "AuditTally",
    "Certificate",
    "DriftMonitor",
    "Evidence",
    "Migration",
    "RegionStats",
    "RiskController",
    "TaskGovernor",
    "format_bound",
]

log = logging.getLogger(__name__)

#: Candidate thresholds, finer near 1 where automation of easy streams lives.
# fmt: off
DEFAULT_GRID: tuple[float, ...] = (
    0.0, 0.4, 0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.825, 0.85, 0.875, 0.9, 0.91, 0.92,
    0.93, 0.94, 0.95, 0.96, 0.965, 0.97, 0.975, 0.98, 0.985, 0.99, 0.9925, 0.995, 0.9965,
    0.9975, 0.9985, 0.999, 0.9995, 0.9998, 0.9999,
)
# fmt: on
#: Where the fixed-sequence scans start: the highest region where an observed error rate of
#: these shares of the target would certify (see the module notes).
DEFAULT_START_RATES: tuple[float, ...] = (0.2, 0.5, 0.85)
#: Evidence windows (labels) certified side by side by default (see the module notes).
DEFAULT_WINDOWS: tuple[int, ...] = (1000, 4000, 16000)
#: A task's automation modes.
MODES = ("assist", "automated", "suspended")
#: The smallest target error a task may promise: certifying 1e-4 already takes some 30,000
#: clean labels, and below it the evidence a stream gives never suffices.
MIN_TARGET_ERROR = 1e-4
#: The smallest delta: 1e-6 costs a bound only a few times the labels of 0.05, and smaller
#: values add nothing a deployment could tell apart.
MIN_DELTA = 1e-6


def _fmt(value: float) -> str:
    """A threshold or target the way people write it: ``0.93``, ``0.9995``, ``0.05``."""
    return f"{value:.6g}"


def format_bound(upper: float, target: float) -> str:
    """A bound as a reason quotes it beside the target: 3 decimals, more where 3 would
    read as the target itself ("bound 0.050 > target 0.05" said nothing).

    >>> [format_bound(b, 0.05) for b in (0.0412, 0.05031, 0.0499, 0.05)]
    ['0.041', '0.0503', '0.0499', '0.050']
    """
    text = f"{upper:.3f}"
    digits = 3
    while upper != target and float(text) == target and digits < 8:
        digits += 1
        text = f"{upper:.{digits}f}"
    return text


def _check_rate(name: str, value: float, low: float = 0.0) -> None:
    if not (0.0 < value < 1.0 and value >= low):
        span = f"[{low:g}, 1)" if low else "(0, 1)"
        raise LearnerError(f"{name} must be in {span}, got {value}")


# --- records ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Evidence:
    """One labelled case, as recorded at routing time (prequential).

    Parameters
    ----------
    confidence
        Model confidence (max probability) at routing time.
    correct
        Whether the suggestion equals the final human label.
    propensity
        Probability that the case was sent to a person: 1.0 for review and assist, the
        audit rate for an automated case.
    audit
        Whether this is an audit of an automated case.
    route
        ``"auto"``, ``"review"`` or ``"assist"``.
    weight
        The cases of its confidence bin this label stands for: for an audit, the
        automated cases of its bin routed since the previous audit there, itself
        included (:class:`AuditTally`); ``None``: ``1 / propensity``, the number's
        expectation (:attr:`stands_for`).

    Examples
    --------
    >>> Evidence(confidence=0.97, correct=True, propensity=0.05, audit=True, route="auto")
    Evidence(confidence=0.97, correct=True, propensity=0.05, audit=True, route='auto', weight=None)
    >>> Evidence(0.97, True, 0.05, True, "auto").stands_for
    20.0
    >>> Evidence(0.97, True, 0.05, True, "auto", weight=7).stands_for
    7.0
    >>> Evidence(confidence=0.97, correct=True, propensity=0.0, audit=True, route="auto")
    Traceback (most recent call last):
    ...
    learner.errors.LearnerError: propensity must be in (0, 1], got 0.0
    """

    confidence: float
    correct: bool
    propensity: float
    audit: bool
    route: str
    weight: float | None = None

    def __post_init__(self) -> None:
        if not 0.0 <= self.confidence <= 1.0:
            raise LearnerError(f"confidence must be in [0, 1], got {self.confidence}")
        if not 0.0 < self.propensity <= 1.0:
            raise LearnerError(f"propensity must be in (0, 1], got {self.propensity}")
        if self.route not in ROUTES:
            raise LearnerError(f"route must be one of {', '.join(ROUTES)}, got {self.route!r}")
        if self.weight is not None and not self.weight >= 1.0:
            raise LearnerError(f"weight must be >= 1, got {self.weight}")

    @property
    def stands_for(self) -> float:
        """The cases of its bin this label stands for (``weight``, else ``1 / propensity``)."""
        return 1.0 / self.propensity if self.weight is None else float(self.weight)

    def __reduce__(self) -> tuple[type[Evidence], tuple]:
        # Pickled as its constructor's arguments: a snapshot holds thousands, and this is a
        # third smaller and faster to write than the default (which still loads).
        args = (self.confidence, self.correct, self.propensity, self.audit, self.route)
        return Evidence, args if self.weight is None else (*args, self.weight)


def grid_bin(grid: tuple[float, ...], confidence: float) -> int:
    """The confidence bin a case falls in: the index of the highest grid point at or below
    its confidence (``-1`` below the grid).

    >>> grid_bin((0.0, 0.5, 0.9), 0.9), grid_bin((0.0, 0.5, 0.9), 0.89)
    (2, 1)
    """
    return bisect.bisect_right(grid, confidence) - 1


class AuditTally:
    """Counts the automated cases of each confidence bin since that bin's last audit, so
    an audit's label can say how many cases it stands for (:attr:`Evidence.weight`).

    The controller mixes its bins in proportion to the cases that arrived in each. An
    audit drawn at rate ``r`` stands for ``1 / r`` automated cases on average, but the
    actual gaps between audits vary widely (from 1 to 60 and more at 5%): with a few
    audits in a bin, that noise made the bins' weights unequal and the bound wide for
    nothing (a task could be suspended on right audits). The tally gives the exact
    count instead. It is kept per process: each process's audits stand for its own
    cases, so the counts of several processes add up. It starts again whenever the
    threshold in force changes (the bins automated change with it); cases automated after
    a bin's last audit are counted by its next one.

    Examples
    --------
    >>> tally = AuditTally()
    >>> [tally.count("auto", False, 0.97, 0.9) for _ in range(6)]
    [None, None, None, None, None, None]
    >>> tally.count("auto", True, 0.972, 0.9)  # the same bin: six cases and itself
    7
    >>> tally.count("auto", True, 0.97, 0.9), tally.count("review", False, 0.5, 0.9)
    (1, None)
    >>> tally.count("auto", False, 0.97, 0.9), tally.count("auto", True, 0.97, 0.85)
    (None, 1)
    """

    def __init__(self, grid: tuple[float, ...] | list[float] = DEFAULT_GRID) -> None:
        self.grid = tuple(grid)
        self._threshold: float | None = None
        self._since: dict[int, int] = {}
        self._lock = threading.Lock()

    def count(
        self, route: str, audit: bool, confidence: float, threshold: float | None
    ) -> int | None:
        """Count one routed case; for an audit, the automated cases of its bin it stands
        for (itself included), else ``None``."""
        if route != "auto":
            return None
        b = grid_bin(self.grid, confidence)
        with self._lock:
            if threshold != self._threshold:
                self._threshold, self._since = threshold, {}
            n = self._since.get(b, 0) + 1
            self._since[b] = 0 if audit else n
        return n if audit else None


@dataclass(frozen=True)
class Certificate:
    """A certified threshold and the evidence behind it.

    From :meth:`RiskController.certify`: the lowest certified threshold; from
    :meth:`RiskController.certificate_at`: one given threshold. ``threshold`` is ``None``
    when nothing is certified (no automation); ``estimate`` and ``upper`` then describe
    the region that failed (``None`` without evidence). ``n`` and ``errors`` count the
    labelled cases in the region; ``upper`` is at most the target when certified.
    """

    threshold: float | None
    estimate: float | None
    upper: float | None
    n: int
    errors: int
    reason: str
    n_effective: float = 0.0  # the effective sample its bound was taken at ...
    level: float = 0.0  # ... and the level its test passed at

    def survives(self, target: float, errors: int) -> bool:
        """Whether the certified bound would stay within ``target`` after ``errors`` more
        labelled errors in the region (the governor's hysteresis)."""
        if self.threshold is None or not self.level:
            return False
        return _survives(self.estimate, self.n_effective, self.level, target, errors)


@dataclass(frozen=True)
class RegionStats:
    """Evidence about the automated region ``confidence >= threshold``.

    ``arrivals`` is the importance-weighted number of cases that arrived in the region
    during the window, ``n_effective`` Kish's effective sample size (from the weights
    alone: it picks the scan's starts), ``estimate`` the bin-stratified error estimate
    and ``n_bound`` the effective size its bound is taken at (Kish's, or smaller where the
    errors sit in heavily weighted bins: :func:`_bound_size`).
    """

    threshold: float
    n: int
    errors: int
    arrivals: float
    n_effective: float
    estimate: float | None
    n_bound: float


class _Scan(NamedTuple):
    """The regions tested (grid indices, highest threshold first) and the level at which
    each passed one passed."""

    tests: tuple[int, ...]
    passed: dict[int, float]


@dataclass(frozen=True)
class Migration:
    """A change of a task's mode or of the threshold in force, with its reason.

    ``at_label`` is the number of labels the governor had seen when it happened.
    """

    mode: str
    threshold: float | None
    reason: str
    n: int
    errors: int
    upper: float | None
    at_label: int = 0


# --- the risk controller ------------------------------------------------------------------


class _Window:
    """Per-bin counts of the most recent ``size`` labelled cases.

    ``start`` is the sequence number of the oldest log entry the window may hold and
    ``count`` the live entries it holds. ``touched`` holds the bins changed since
    :meth:`RiskController._analyse` last read the window, ``memo`` that reading (neither
    is pickled: a window unpickles unread).
    """

    _STATE = ("arrivals", "by_weight", "count", "errors", "labelled", "size", "start")
    __slots__ = (*_STATE, "memo", "touched")

    def __init__(self, size: int, bins: int, start: int = 0) -> None:
        self.size, self.start, self.count = size, start, 0
        self.labelled = [0] * bins
        self.errors = [0] * bins
        self.by_weight: list[dict[float, int]] = [{} for _ in range(bins)]
        self.arrivals = [0.0] * bins
        self.memo: _Analysis | None = None
        self.touched: set[int] = set()

    def add(self, b: int, evidence: Evidence, sign: int) -> None:
        self.count += sign
        if b < 0:
            return
        self.touched.add(b)
        self.labelled[b] += sign
        self.errors[b] += sign * (not evidence.correct)
        counts = self.by_weight[b]
        w = evidence.stands_for
        counts[w] = counts.get(w, 0) + sign
        if not counts[w]:
            del counts[w]
        # Recomputed from counts (not updated in place) so that float rounding never
        # depends on the order in which evidence came and went.
        self.arrivals[b] = sum(count * w for w, count in sorted(counts.items()))

    def __getstate__(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self._STATE}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.memo, self.touched = None, set()
        if "by_propensity" in state:  # pickled before weights: counts by propensity
            old = state.pop("by_propensity")
            state["by_weight"] = [{1.0 / q: c for q, c in counts.items()} for counts in old]
        for name, value in state.items():
            setattr(self, name, value)


class _Analysis:
    """A window's last :meth:`RiskController._analyse`: the settings and bin counts it
    read, its answer, and the running state of the pass before each bin (to resume at)."""

    __slots__ = ("answer", "before", "bins", "key", "passed", "tests")

    def __init__(self, key: tuple[int, int, float, float, float], bins: int, start: tuple) -> None:
        self.key = key
        # per bin as last read: labelled, errors, arrivals, and what the bin adds to the
        # sums of squares, weighted errors and spread
        self.bins: list[tuple] = [(-1, 0, 0.0, 0.0, 0.0, 0.0)] * bins
        self.before: list[tuple] = [start] * bins
        self.tests: list[int] = []
        self.passed: dict[int, float] = {}
        self.answer: tuple[list[tuple], _Scan] = ([()] * bins, _Scan((), {}))


#: The shape of the pass state an :class:`_Analysis` saves; a pickled controller whose
#: saved passes have another shape recomputes them.
_PASS_FORMAT = 2


def _spread(arrivals: float, errors: int, labelled: int) -> float:
    """A bin's term of the stratified variance of a region's error estimate, times the
    region's arrivals squared: ``arrivals ** 2 * p (1 - p) / labelled``, ``p`` the bin's
    error rate (the binomial variance, so that one bin alone gets Clopper-Pearson's own
    size)."""
    return arrivals * arrivals * errors * (labelled - errors) / (labelled * labelled * labelled)


def _bound_size(n_kish: float, estimate: float, arrivals: float, spread: float) -> float:
    """The effective sample size a region's bound is taken at: Kish's, or Korn and
    Graubard's ``p (1 - p) / var(p)`` from the stratified variance where that is smaller.

    Kish's size reads the weights alone and assumes the errors are spread like the
    cases; when they sit in the heavily weighted bins (errors found by audits of the
    automated region) the estimate varies more than that size says, and the bound would
    undercover. The design-effect size measures that variance; it is only ever used to
    widen the bound (a bin whose errors went unseen has no variance to show).

    Examples
    --------
    Errors only among 83 audits (weight 10) beside 495 clean reviews (weight 1):

    >>> arrivals, estimate = 495.0 + 830.0, 5 / 83 * 830.0 / 1325.0
    >>> spread = _spread(495.0, 0, 495) + _spread(830.0, 5, 83)
    >>> n_kish = arrivals**2 / (495.0 + 830.0**2 / 83)
    >>> round(n_kish), round(_bound_size(n_kish, estimate, arrivals, spread))
    (200, 136)
    >>> _bound_size(200.0, 0.0, 1327.0, 0.0)
    200.0
    """
    if spread <= 0.0 or not 0.0 < estimate < 1.0:
        return n_kish
    return min(n_kish, estimate * (1.0 - estimate) * arrivals * arrivals / spread)


def _counts(n: int, errors: int, n_bound: float) -> str:
    """A certificate's evidence as its reason states it: the labels and errors counted, and
    the effective sample the bound was taken at where the weights of audited cases make it
    clearly smaller (one error in 131 labels can fail when those count as 90).

    >>> _counts(400, 8, 400.0), _counts(131, 1, 92.4)
    ('n=400, 8 errors', 'n=131, 1 errors, effective n 92')
    """
    text = f"n={n}, {errors} errors"
    return text + f", effective n {n_bound:.0f}" if n_bound < 0.9 * n else text


# Clopper-Pearson bounds, remembered: most regions' evidence is as it was a label ago.
_clopper_pearson = functools.lru_cache(maxsize=4096)(weighted_clopper_pearson_upper)

# Sample sizes n_k = _RATIO ** k at which the critical error count of a test is tabled.
_RATIO = 1.02
_LOG_RATIO = math.log(_RATIO)
_SIZES = [_RATIO**k for k in range(1200)]  # up to some 2e10
# (level, target) -> k -> (an error count that passes at n_k, one that fails at n_k)
_CRITICAL: dict[tuple[float, float], dict[int, tuple[float, float]]] = {}


def _bracket(level: float, target: float, k: int) -> tuple[float, float]:
    table = _CRITICAL.setdefault((level, target), {})
    found = table.get(k)
    if found is None:
        n = _SIZES[k]
        if not weighted_upper_at_most(0.0, n, level, target):
            found = (-1.0, 0.0)
        else:
            low, high = 0.0, n  # errors == n always fails
            for _ in range(30):
                mid = (low + high) / 2.0
                low, high = (
                    (mid, high)
                    if weighted_upper_at_most(mid, n, level, target)
                    else (
                        low,
                        mid,
                    )
                )
            found = (low, high)
        table[k] = found
    return found


def _upper_at_most(errors: float, n: float, level: float, target: float) -> bool:
    """:func:`learner.risk.weighted_upper_at_most`, usually without evaluating it.

    The bound rises with the error count and falls with the sample size, so an error
    count that passes at a smaller size passes here, and one that fails at a larger size
    fails here; a table of such counts at sizes ``1.02 ** k`` (built lazily, shared by
    every controller) settles all but the cases near the boundary.
    """
    if n < 1.0:
        return weighted_upper_at_most(errors, n, level, target)
    k = int(math.log(n) / _LOG_RATIO)
    if k + 1 >= len(_SIZES):
        return weighted_upper_at_most(errors, n, level, target)
    if _SIZES[k] > n:
        k -= 1
    elif _SIZES[k + 1] <= n:
        k += 1
    table = _CRITICAL.get((level, target))  # the common case without a call to _bracket
    if errors <= ((table and table.get(k)) or _bracket(level, target, k))[0]:
        return True
    if errors >= ((table and table.get(k + 1)) or _bracket(level, target, k + 1))[1]:
        return False
    return weighted_upper_at_most(errors, n, level, target)


def _survives(estimate: float | None, n: float, level: float, target: float, errors: int) -> bool:
    """Whether a region's bound at ``level`` stays within ``target`` after ``errors`` more
    errors among its effective ``n`` labels (the governor's hysteresis)."""
    return estimate is not None and _upper_at_most(estimate * n + errors, n + errors, level, target)


class RiskController:
    """Certifies the lowest threshold whose automated error is bounded by the target.

    Parameters
    ----------
    target_error
        The promised error rate of automated decisions, in (0, 1).
    delta
        Allowed probability that the promise is broken, in (0, 1).
    window
        Only the most recent ``window`` labels count; ``None`` (the default): several
        windows side by side, :data:`DEFAULT_WINDOWS` (see the module notes).
    seed
        Unused (the controller is deterministic); kept for a uniform interface.
    **tuning
        ``windows`` (window lengths in labels, instead of ``window``), ``grid`` (ascending
        candidate thresholds, default :data:`DEFAULT_GRID`), ``start_rates`` (where the
        scans start, see the module notes; default ``(0.2, 0.5, 0.85)``) and ``point_min_n``
        (default 30: the labelled cases a region needs for :meth:`point_threshold`).

    Notes
    -----
    The module docstring explains the bound and the scan. Everything is a deterministic
    fold of the calls made, so a controller rebuilt by replaying the same label log gives
    the same certificate; it pickles, and :meth:`to_state` / :meth:`from_state` give a
    plain-data form.

    Examples
    --------
    Automated cases are only audited, so one audit stands for ``1 / audit_rate`` cases:

    >>> c = RiskController(target_error=0.05)
    >>> c.observe("a1", Evidence(0.99, False, propensity=0.05, audit=True, route="auto"))
    >>> c.region(0.99).arrivals, c.n_observed
    (20.0, 1)
    >>> c.certify().reason
    'no threshold certified: an effective 1 labelled cases, too few to test (need 129)'
    """

    def __init__(
        self,
        *,
        target_error: float,
        delta: float = 0.05,
        window: int | None = None,
        seed: int = 0,
        **tuning: Any,
    ) -> None:
        grid = tuple(float(g) for g in tuning.pop("grid", DEFAULT_GRID))
        start_rates = tuple(float(r) for r in tuning.pop("start_rates", DEFAULT_START_RATES))
        windows = tuning.pop("windows", None)
        self.wide_start = bool(tuning.pop("wide_start", False))
        self.point_min_n = int(tuning.pop("point_min_n", 30))
        if not start_rates or not all(0.0 <= r < 1.0 for r in start_rates):
            raise LearnerError("start_rates must be shares of the target in [0, 1)")
        self.start_rates = start_rates
        if tuning:
            raise LearnerError(f"unknown tuning options: {', '.join(sorted(tuning))}")
        if not grid or list(grid) != sorted(set(grid)) or not 0.0 <= grid[0] <= grid[-1] <= 1.0:
            raise LearnerError("grid must be strictly increasing thresholds in [0, 1]")
        if windows is None:
            windows = DEFAULT_WINDOWS if window is None else (window,)
        elif window is not None:
            raise LearnerError("give window or windows, not both")
        windows = tuple(sorted({int(w) for w in windows}))
        if not windows or windows[0] < 1:
            raise LearnerError(f"window must be >= 1, got {min(windows, default=0)}")
        self.grid = grid
        self.windows = windows
        self.window = windows[-1]
        self.seed = seed
        self.n_observed = 0
        self._start_sizes: dict[int, tuple[float, ...]] = {}
        self._clear()
        self.set_target(target_error, delta)

    def _clear(self) -> None:
        # The label log of the longest window: [key, bin, evidence, live]; entry i has the
        # sequence number self._base + i. self._seq: key -> sequence number of its live entry.
        self._log: deque[list[Any]] = deque()
        self._base = 0
        self._seq: dict[str, int] = {}
        self._wins = [_Window(size, len(self.grid)) for size in self.windows]
        self._version = getattr(self, "_version", 0) + 1
        self._cache: tuple[int, list[int], list[list[tuple]], list[_Scan], int] | None = None
        self._certificate: tuple[int, dict[int, Certificate]] | None = None

    # --- settings -------------------------------------------------------------------------
    def set_target(self, target_error: float, delta: float) -> None:
        """Change the target and delta (an admin's setting); the evidence stays."""
        _check_rate("target_error", target_error, MIN_TARGET_ERROR)
        _check_rate("delta", delta, MIN_DELTA)
        self.target_error = float(target_error)
        self.delta = float(delta)
        self._start_sizes = {}
        self._version += 1

    def _sizes(self, m: int) -> tuple[float, ...]:
        """Where each scan starts when ``m`` windows share delta: the highest region with
        at least this effective sample, the size at which an observed error rate of
        ``start_rates[j] * target`` certifies at the scan's level."""
        sizes = self._start_sizes.get(m)
        if sizes is None:
            level = self._start_delta(m)
            sizes = tuple(self._start_size(rate, level) for rate in self.start_rates)
            self._start_sizes[m] = sizes
        return sizes

    def _start_delta(self, m: int, starts: int | None = None) -> float:
        """Each scan's share of delta when ``m`` windows are tested and ``starts`` of the
        start sizes can be reached (default: all)."""
        reachable = len(self.start_rates) if starts is None else starts
        return self.delta / m / (max(reachable, 1) + self.wide_start)

    def _window_delta(self, win: _Window, m: int) -> float:
        """Each scan's share of delta in ``win``: a start whose size exceeds the labels the
        window holds can never be reached there (an effective sample is at most the
        labels it counts), so it takes no share; decided from counts alone."""
        return self._start_delta(m, sum(size <= win.count for size in self._sizes(m)))

    @property
    def start_delta(self) -> float:
        """Each scan's share of delta with one window."""
        return self._start_delta(1)

    @property
    def start_sizes(self) -> tuple[float, ...]:
        """Effective sample sizes at which the scans start, with one window."""
        return self._sizes(1)

    def _start_size(self, rate: float, level: float) -> float:
        target = self.target_error

        def ok(n: float) -> bool:
            return weighted_upper_at_most(rate * target * n, n, level, target)

        high = 1.0
        while not ok(high):  # finite: set_target keeps the target and delta above their floors
            high *= 2.0
        low = high / 2.0
        for _ in range(50):
            mid = (low + high) / 2.0
            low, high = (low, mid) if ok(mid) else (mid, high)
        return float(math.ceil(high))

    # --- evidence -------------------------------------------------------------------------
    def _bin(self, confidence: float) -> int:
        return grid_bin(self.grid, confidence)

    def _drop(self, seq: int) -> None:
        """Take the live entry ``seq`` out of every window that holds it."""
        entry = self._log[seq - self._base]
        entry[3] = False
        for win in self._wins:
            if win.start <= seq:
                win.add(entry[1], entry[2], -1)

    def observe(self, key: str, evidence: Evidence) -> None:
        """Add one labelled case, in label-log order; each window keeps its most recent.

        A key seen before replaces its earlier evidence (the case was labelled again).
        """
        if not isinstance(evidence, Evidence):
            raise LearnerError(f"evidence must be an Evidence, got {type(evidence).__name__}")
        old = self._seq.pop(key, None)
        if old is not None:
            self._drop(old)
        b = self._bin(evidence.confidence)
        seq = self._base + len(self._log)
        self._log.append([key, b, evidence, True])
        self._seq[key] = seq
        for win in self._wins:
            win.add(b, evidence, +1)
            while win.count > win.size:
                entry = self._log[win.start - self._base]
                if entry[3]:
                    win.add(entry[1], entry[2], -1)
                win.start += 1
        longest = self._wins[-1].start
        while self._base < longest:
            key_out, _, _, live = self._log.popleft()
            if live:
                del self._seq[key_out]
            self._base += 1
        self.n_observed += 1
        self._version += 1

    def correct(self, key: str, correct: bool) -> None:
        """A label was corrected: replace that case's outcome in the windows that hold it."""
        seq = self._seq.get(key)
        if seq is None:
            return
        entry = self._log[seq - self._base]
        if entry[2].correct == bool(correct):
            return
        self._drop(seq)
        entry[2] = replace(entry[2], correct=bool(correct))
        entry[3] = True
        for win in self._wins:
            if win.start <= seq:
                win.add(entry[1], entry[2], +1)
        self._version += 1

    def restart(self) -> None:
        """Forget every piece of evidence (after drift); ``n_observed`` keeps counting."""
        self._clear()

    @property
    def n_window(self) -> int:
        """Labelled cases currently in the (longest) window."""
        return self._wins[-1].count

    def _evidence(self) -> list[tuple[str, Evidence]]:
        """The live evidence of the longest window, oldest first."""
        return [(key, e) for key, _, e, live in self._log if live]

    # --- statistics -----------------------------------------------------------------------
    def _active(self) -> list[int]:
        """The windows tested: each distinct one (a window at least as long as the evidence
        holds the same as the longest), chosen from counts alone."""
        total = self._wins[-1].count
        active = [j for j, win in enumerate(self._wins) if win.size < total]
        return active + [len(self._wins) - 1]

    def _regions(self, win: _Window) -> list[tuple]:
        """Per region ``confidence >= grid[k]``, lowest threshold first:
        ``(threshold, n, errors, arrivals, n_effective, estimate)``."""
        k = len(self.grid)
        out: list[tuple] = [()] * k
        n = errors = 0
        arrivals = squares = weighted_errors = spread = 0.0
        labelled, bin_errors, bin_arrivals, grid = (
            win.labelled,
            win.errors,
            win.arrivals,
            self.grid,
        )
        for b in range(k - 1, -1, -1):
            m = labelled[b]
            if m:
                w = bin_arrivals[b]
                e = bin_errors[b]
                n += m
                errors += e
                arrivals += w
                squares += w * w / m
                weighted_errors += w * e / m
                spread += _spread(w, e, m)
            if arrivals > 0.0:
                n_kish = arrivals * arrivals / squares
                estimate = weighted_errors / arrivals
                n_bound = _bound_size(n_kish, estimate, arrivals, spread)
                out[b] = (grid[b], n, errors, arrivals, n_kish, estimate, n_bound)
            else:
                out[b] = (grid[b], n, errors, arrivals, 0.0, None, 0.0)
        return out

    def _stats(self) -> tuple[list[int], list[list[tuple]], list[_Scan], int]:
        """Active windows, their regions and scans (cached until the evidence changes)."""
        if self._cache is None or self._cache[0] != self._version:
            active = self._active()
            m = len(active)
            regions, scans = [], []
            for j in active:
                if self.wide_start:
                    regions.append(self._regions(self._wins[j]))
                    scans.append(self._scan(self._wins[j], regions[-1], m))
                else:
                    window_regions, scan = self._analyse(self._wins[j], m)
                    regions.append(window_regions)
                    scans.append(scan)
            self._cache = (self._version, active, regions, scans, m)
        _, active, regions, scans, m = self._cache
        return active, regions, scans, m

    def region(self, threshold: float) -> RegionStats:
        """Evidence about the region ``confidence >= threshold`` (a grid point, or the
        nearest one below it) in the longest window."""
        regions = self._regions(self._wins[-1])
        return RegionStats(*regions[max(self._bin(threshold), 0)])

    @staticmethod
    def _upper(stats: tuple, level: float) -> float | None:
        if stats[5] is None:
            return None
        return _clopper_pearson(stats[5] * stats[6], stats[6], level)

    def _analyse(self, win: _Window, m: int) -> tuple[list[tuple], _Scan]:
        """:meth:`_regions` and :meth:`_scan` in one pass from the top of the grid.

        The scan's starts are the first regions from the top whose effective sample
        reaches each start size, and its sequences run down the grid: both can be decided
        while the regions are summed. This loop is the per-label cost of certification, so
        it redoes only what changed since the window was last read: the pass down to a bin
        depends on the bins above it only, so it picks up at the highest bin whose counts
        changed (a label moves one or two), from the state saved there, and once below the
        lowest changed bin it stops where its state equals the saved one (a label in and
        one out of the same kind leave the sums below both as they were). What it keeps
        is what it would compute again, float for float.
        """
        k = len(self.grid)
        labelled, bin_errors, bin_arrivals, grid = (
            win.labelled,
            win.errors,
            win.arrivals,
            self.grid,
        )
        start_delta = self._window_delta(win, m)
        key = (_PASS_FORMAT, m, start_delta, self.target_error, self.delta)
        memo = win.memo
        if memo is None or memo.key != key:
            memo = win.memo = _Analysis(key, k, (0, 0, 0.0, 0.0, 0.0, 0.0, 0.0, self._sizes(m)))
            top, low = k - 1, -1  # nothing saved to stop at
            changed: Iterable[int] = range(k)
        else:
            changed = [
                b
                for b in win.touched
                if memo.bins[b][:3] != (labelled[b], bin_errors[b], bin_arrivals[b])
            ]
            if not changed:
                win.touched.clear()
                return memo.answer
            top, low = max(changed), min(changed)  # the highest and lowest bins that changed
        win.touched.clear()
        bins = memo.bins
        for b in changed:
            count, e, w = labelled[b], bin_errors[b], bin_arrivals[b]
            # what the bin adds to the sums of squares, weighted errors and spread
            terms = (w * w / count, w * e / count, _spread(w, e, count)) if count else (0.0,) * 3
            bins[b] = (count, e, w, *terms)
        out = list(memo.answer[0])
        before, old_tests = memo.before, memo.tests
        tests = old_tests[: bisect.bisect_left(old_tests, -top, key=operator.neg)]  # above top
        passed = dict(memo.passed)  # each bin redone below is set or dropped
        target = self.target_error
        state = before[top]
        n, errors, arrivals, squares, weighted_errors, spread, carry, sizes = state
        first = min(sizes, default=math.inf)  # the smallest start size not reached yet
        for b, g, (count, e, w, square, weighted_error, bin_spread) in zip(
            range(top, -1, -1), grid[top::-1], bins[top::-1], strict=True
        ):
            if b < low and state == before[b]:  # from here down, all as saved
                tests += old_tests[bisect.bisect_left(old_tests, -b, key=operator.neg) :]
                break
            before[b] = state
            if not count:
                out[b] = (g, *out[b + 1][1:]) if arrivals > 0.0 else (g, 0, 0, 0.0, 0.0, None, 0.0)
                passed.pop(b, None)
                continue
            n += count
            errors += e
            arrivals += w
            squares += square
            weighted_errors += weighted_error
            spread += bin_spread
            if arrivals > 0.0:
                n_eff = arrivals * arrivals / squares
                estimate = weighted_errors / arrivals
                n_bound = _bound_size(n_eff, estimate, arrivals, spread)
            else:
                n_eff, estimate, n_bound = 0.0, None, 0.0
            out[b] = (g, n, errors, arrivals, n_eff, estimate, n_bound)
            level = carry
            if n_eff >= first:
                for size in sizes:
                    if n_eff >= size:
                        level += start_delta
                sizes = tuple(size for size in sizes if n_eff < size)
                first = min(sizes, default=math.inf)
            if level > 0.0:
                tests.append(b)
                if estimate is not None and _upper_at_most(
                    estimate * n_bound, n_bound, level, target
                ):
                    passed[b] = carry = level
                else:
                    carry = 0.0
                    passed.pop(b, None)
            else:
                passed.pop(b, None)
            state = (n, errors, arrivals, squares, weighted_errors, spread, carry, sizes)
        memo.tests, memo.passed = tests, passed  # new objects: an answer is never changed
        memo.answer = (out, _Scan(tuple(tests), passed))
        return memo.answer

    def _scan(self, win: _Window, regions: list[tuple], m: int) -> _Scan:
        """Fixed sequences from count-chosen starts, with fallback (see the module notes)."""
        labelled = win.labelled
        with_evidence = [b for b in range(len(regions) - 1, -1, -1) if labelled[b]]
        start_delta = self._window_delta(win, m)
        allocation: dict[int, float] = {}
        for size in self._sizes(m):
            start = next((b for b in with_evidence if regions[b][4] >= size), None)
            if start is not None:
                allocation[start] = allocation.get(start, 0.0) + start_delta
        if self.wide_start and with_evidence:
            # the region with the most evidence: where a stream whose errors do not fall
            # with confidence (label noise) can still be certified as a whole
            widest = max(with_evidence, key=lambda b: (regions[b][4], b))
            if regions[widest][4] >= min(self._sizes(m)):
                allocation[widest] = allocation.get(widest, 0.0) + start_delta
        passed: dict[int, float] = {}
        tests: list[int] = []
        carry = 0.0
        target = self.target_error
        for b in with_evidence:
            level = allocation.get(b, 0.0) + carry
            if level <= 0.0:
                continue
            tests.append(b)
            estimate, n = regions[b][5:]
            ok = estimate is not None and _upper_at_most(estimate * n, n, level, target)
            if ok:
                passed[b] = carry = level
            else:
                carry = 0.0
        return _Scan(tuple(tests), passed)

    def certify(self, margin_errors: int = 0) -> Certificate:
        """The lowest certified threshold, its estimate, bound and evidence.

        With ``margin_errors``: the lowest certified threshold whose bound would stay
        within the target after that many more errors (:meth:`Certificate.survives`), or
        the lowest certified one when none would. Every threshold a scan passed is
        certified (a fixed sequence rejects all of its passed regions at once), so
        choosing among them keeps the guarantee; the lowest one is where the scan stopped,
        most often just within the target. Recomputed only when evidence or settings
        changed since the last call.

        Examples
        --------
        >>> c = RiskController(target_error=0.05, window=1000)
        >>> for i in range(800):  # 600 sure cases, 8 wrong; 200 middling ones, 21 wrong
        ...     sure = i % 4 != 0
        ...     c.observe(f"c{i}", Evidence(0.99 if sure else 0.8,
        ...                                 i % 100 != 1 if sure else i // 4 >= 21,
        ...                                 propensity=1.0, audit=False, route="review"))
        >>> [(x.threshold, round(x.upper, 3)) for x in (c.certify(), c.certify(margin_errors=1))]
        [(0.8, 0.049), (0.99, 0.024)]
        """
        cached = self._certificate
        if cached is None or cached[0] != self._version:
            cached = self._certificate = (self._version, {})
        certificate = cached[1].get(margin_errors)
        if certificate is None:
            certificate = cached[1][margin_errors] = self._certificate_now(margin_errors)
        return certificate

    def _span(self, j: int, m: int) -> str:
        """How a certificate names its window when several are tested."""
        win = self._wins[j]
        return "" if m == 1 else f", last {win.count:,} labels"

    def _certificate_now(self, margin_errors: int) -> Certificate:
        active, regions, scans, m = self._stats()
        target = _fmt(self.target_error)
        lowest: tuple[float, int, tuple, float] | None = None
        chosen: tuple[float, int, tuple, float] | None = None
        for b in sorted({b for scan in scans for b in scan.passed}):  # lowest threshold first
            passed = sorted(  # (bound, window, region, level) where b passed, lowest bound first
                (
                    self._upper(regions[i][b], scan.passed[b]) or 0.0,
                    i,
                    regions[i][b],
                    scan.passed[b],
                )
                for i, scan in enumerate(scans)
                if b in scan.passed
            )
            lowest = lowest or passed[0]
            chosen = next(
                (
                    p
                    for p in passed
                    if _survives(p[2][5], p[2][6], p[3], self.target_error, margin_errors)
                ),
                None,
            )
            if chosen is not None:
                break
        if lowest is not None:
            bound, i, stats, level = chosen or lowest
            reason = (
                f"certified threshold {_fmt(stats[0])} (bound "
                f"{format_bound(bound, self.target_error)} <= {target}, "
                f"{_counts(stats[1], stats[2], stats[6])}{self._span(active[i], m)})"
            )
            return Certificate(
                stats[0], stats[5], bound, stats[1], stats[2], reason, stats[6], level
            )
        if not any(scan.tests for scan in scans):
            most = max((r[4] for window in regions for r in window), default=0.0)
            reason = (
                f"no threshold certified: an effective {most:.0f} labelled cases, too few to "
                f"test (need {min(self._sizes(m)):.0f})"
            )
            whole = regions[-1][0]
            upper = self._upper(whole, self.delta)
            return Certificate(None, whole[5], upper, whole[1], whole[2], reason)
        # Report the failed region that came closest: the lowest bound at its window's
        # start level, the least any test there had (at the full delta a failed region's
        # bound can be within the target, which would read as a contradiction).
        levels = [self._window_delta(self._wins[j], m) for j in active]
        uppers = {
            (b, i): self._upper(regions[i][b], levels[i]) or 1.0
            for i, scan in enumerate(scans)
            for b in scan.tests
        }
        b, i = min(uppers, key=lambda k: (uppers[k], k))
        stats = regions[i][b]
        shown = format_bound(uppers[b, i], self.target_error)
        reason = (
            f"no threshold certified: best bound {shown} > {target} at threshold "
            f"{_fmt(stats[0])} ({_counts(stats[1], stats[2], stats[6])}{self._span(active[i], m)})"
        )
        return Certificate(None, stats[5], uppers[b, i], stats[1], stats[2], reason)

    def is_certified(self, threshold: float) -> bool:
        """Whether ``threshold`` passed its test in the current scan (not only the lowest)."""
        b = self._bin(threshold)
        return (
            b >= 0
            and self.grid[b] == threshold
            and any(b in scan.passed for scan in self._stats()[2])
        )

    def certificate_at(self, threshold: float, delta: float | None = None) -> Certificate:
        """Evidence and bound of the region ``confidence >= threshold`` alone.

        The bound is at level ``delta`` (default: the controller's), split evenly over the
        windows tested, and the window with the lowest bound answers: the check of a single
        threshold fixed beforehand, such as the one in force. ``threshold`` in the answer
        is ``None`` when that bound is above the target.

        Examples
        --------
        >>> c = RiskController(target_error=0.05)
        >>> c.certificate_at(0.9).reason
        'threshold 0.9: no evidence'
        """
        active, regions, _, m = self._stats()
        level = (self.delta if delta is None else delta) / m
        b = max(self._bin(threshold), 0)
        best: tuple[float, int] | None = None
        for i in range(len(active)):
            upper = self._upper(regions[i][b], level)
            if upper is not None and (best is None or upper < best[0]):
                best = (upper, i)
        if best is None:
            return Certificate(None, None, None, 0, 0, f"threshold {_fmt(threshold)}: no evidence")
        upper, i = best
        stats = regions[i][b]
        ok = upper <= self.target_error
        shown = format_bound(upper, self.target_error)
        reason = (
            f"threshold {_fmt(stats[0])} (bound {shown} {'<=' if ok else '>'} "
            f"{_fmt(self.target_error)}, {_counts(stats[1], stats[2], stats[6])}"
            f"{self._span(active[i], m)})"
        )
        return Certificate(
            stats[0] if ok else None, stats[5], upper, stats[1], stats[2], reason, stats[6]
        )

    def point_threshold(self) -> float | None:
        """The lowest threshold whose *point* estimate is within the target (a baseline).

        Regions need ``point_min_n`` labelled cases (in the longest window). No bound, no
        correction for the many thresholds tried: this is what breaks the target in
        simulations.
        """
        win = self._wins[-1]
        for b, stats in enumerate(self._regions(win)):
            if (
                win.labelled[b]
                and stats[1] >= self.point_min_n
                and stats[5] is not None
                and stats[5] <= self.target_error
            ):
                return stats[0]
        return None

    # --- persistence ----------------------------------------------------------------------
    def to_state(self) -> dict[str, Any]:
        """Plain data (lists, numbers, strings) from which :meth:`from_state` rebuilds it."""
        return {
            "target_error": self.target_error,
            "delta": self.delta,
            "windows": list(self.windows),
            "seed": self.seed,
            "grid": list(self.grid),
            "start_rates": list(self.start_rates),
            "wide_start": self.wide_start,
            "point_min_n": self.point_min_n,
            "n_observed": self.n_observed,
            "evidence": [
                [key, e.confidence, e.correct, e.propensity, e.audit, e.route, e.weight]
                for key, e in self._evidence()
            ],
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> RiskController:
        """Rebuild a controller saved by :meth:`to_state`.

        Examples
        --------
        >>> c = RiskController(target_error=0.02, window=100)
        >>> c.observe("x", Evidence(0.9, True, 1.0, False, "review"))
        >>> RiskController.from_state(c.to_state()).to_state() == c.to_state()
        True
        """
        controller = cls(
            target_error=state["target_error"],
            delta=state["delta"],
            windows=state.get("windows") or [state["window"]],
            seed=state["seed"],
            grid=state["grid"],
            start_rates=state["start_rates"],
            wide_start=state.get("wide_start", False),
            point_min_n=state["point_min_n"],
        )
        for key, *fields in state["evidence"]:  # saved before weights: five fields
            controller.observe(key, Evidence(*fields))
        controller.n_observed = state["n_observed"]
        return controller

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_cache"] = state["_certificate"] = None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        if "_wins" not in state:  # pickled before windows: replay its evidence
            fresh = RiskController(
                target_error=state["target_error"],
                delta=state["delta"],
                window=state["window"],
                grid=state["grid"],
                start_rates=state["start_rates"],
                wide_start=False,
                point_min_n=state.get("point_min_n", 30),
            )
            for key, (_, evidence) in state["_evidence"].items():
                fresh.observe(key, evidence)
            fresh.n_observed = state["n_observed"]
            fresh.seed = state.get("seed", 0)
            state = fresh.__dict__
        self.__dict__.update(state)

    def __repr__(self) -> str:
        return (
            f"RiskController(target_error={self.target_error:g}, delta={self.delta:g}, "
            f"windows={self.windows}, n_observed={self.n_observed})"
        )


# --- drift --------------------------------------------------------------------------------


class DriftMonitor:
    """Watches a stream of outcomes (1 = error) and fires when their rate rises.

    Two detectors, either of which fires:

    - ADWIN (Bifet & Gavaldà 2007, ``river.drift.ADWIN``), checked after every
      observation (``clock=1``); a change counts only when the recent mean is above the
      old one, so a model that gets better never suspends automation.
    - When ``target`` is given, a Bernoulli CUSUM (Page 1954) for a rise of the error
      rate from its running mean ``p0`` (kept within ``[target / 20, target]``) to
      ``2 * target``: the log-likelihood ratio of each outcome is summed, floored at 0,
      and the monitor fires when the sum reaches ``cusum_threshold``. ADWIN's
      distribution-free bound needs many observations to see a rare error become
      less rare; the CUSUM sees a rise from 0.5% to 12% errors within some 35 outcomes
      (a couple of hundred automated cases at a 5% audit rate), with under 2% false
      alarms per 2,000 outcomes at the default threshold of 8 (simulated).

    Parameters
    ----------
    delta
        ADWIN's confidence: smaller means fewer false alarms and slower detection.
    seed
        Unused (both detectors are deterministic); kept for a uniform interface.
    target
        The promised error rate, to enable the CUSUM; ``None``: ADWIN only.
    cusum_threshold
        The CUSUM's alarm level (log-likelihood ratio).
    warn_fraction
        :attr:`warning` is on while the CUSUM is at or above this share of its alarm
        level (0.3: one error among the recent audits when errors have been rare).

    Examples
    --------
    >>> monitor = DriftMonitor()
    >>> fired = [monitor.observe(i % 50 == 0) for i in range(500)]  # 2% errors
    >>> any(fired)
    False
    >>> fired = [monitor.observe(i % 2 == 0) for i in range(100)]  # then 50%
    >>> any(fired), monitor.n_detections
    (True, 1)
    >>> monitor = DriftMonitor(target=0.05)
    >>> fired = [monitor.observe(i % 200 == 0) for i in range(400)]  # 0.5% errors
    >>> fired = [monitor.observe(i % 8 == 0) for i in range(100)]  # then 12.5%
    >>> fired.index(True), monitor.detector
    (24, 'cusum')
    """

    def __init__(
        self,
        *,
        delta: float = 0.002,
        seed: int = 0,
        target: float | None = None,
        cusum_threshold: float = 8.0,
        warn_fraction: float = 0.3,
    ) -> None:
        _check_rate("delta", delta)
        if target is not None:
            _check_rate("target", target)
        if not cusum_threshold > 0.0:
            raise LearnerError(f"cusum_threshold must be > 0, got {cusum_threshold}")
        self.delta = delta
        self.seed = seed
        self.target = target
        self.cusum_threshold = cusum_threshold
        self.warn_fraction = warn_fraction
        self.n_detections = 0
        #: Which detector fired last (``"adwin"`` or ``"cusum"``).
        self.detector: str | None = None
        self.n_observed = 0
        self._adwin = ADWIN(delta=delta, clock=1)
        self._cusum = self._sum = 0.0
        self._count = 0

    @property
    def warning(self) -> bool:
        """The CUSUM is past ``warn_fraction`` of its alarm level: a rise may be starting."""
        return self.target is not None and self._cusum >= self.warn_fraction * self.cusum_threshold

    @property
    def mean(self) -> float:
        """The mean of the outcomes in ADWIN's current window."""
        return float(self._adwin.estimation)

    def observe(self, error: bool | float) -> bool:
        """Add one outcome; ``True`` when a rise in the error rate is detected on it."""
        value = float(error)
        before = self._adwin.estimation
        self._adwin.update(value)
        self.n_observed += 1
        fired = None
        if self._adwin.drift_detected and self._adwin.estimation > before:
            fired = "adwin"
        if self.target is not None:
            target = self.target
            p0 = self._sum / self._count if self._count else target / 2.0
            p0 = min(max(p0, target / 20.0), target)
            p1 = 2.0 * target
            if p1 < 1.0:
                step = math.log(p1 / p0) if value >= 0.5 else math.log((1 - p1) / (1 - p0))
                self._cusum = max(0.0, self._cusum + step)
            self._sum += value
            self._count += 1
            if fired is None and self._cusum >= self.cusum_threshold:
                fired = "cusum"
        if fired is None:
            return False
        self.n_detections += 1
        self.detector = fired
        self._cusum = 0.0
        return True

    def __setstate__(self, state: dict[str, Any]) -> None:
        state.setdefault("warn_fraction", 0.3)  # pickled before warnings existed
        self.__dict__.update(state)

    def reset(self) -> None:
        """Start over (after the governor acted on a detection); counts are kept."""
        self._adwin = ADWIN(delta=self.delta, clock=1)
        self._cusum = 0.0
        self._sum = 0.0
        self._count = 0
        self.n_observed = 0


# --- the governor -------------------------------------------------------------------------


class TaskGovernor:
    """A task's tier-migration state machine: which mode, which threshold, and why.

    Rules
    -----
    - Starts in ``assist``. With at least ``min_labels`` labels and a certified threshold
      whose bound would stay within the target after ``hysteresis_errors`` more errors
      (and is at most ``(1 - hysteresis) * target``: a margin, so that the next few
      labels do not undo it) it becomes ``automated`` at the lowest such threshold (the
      lowest certified one is most often just within the target: a higher one with the
      margin automates meanwhile).
    - While automated, the threshold in force is checked after every label: the bound
      of its own region (at level delta: one threshold fixed beforehand) must stay at
      or below the target. When it rises above, the governor moves to the lowest
      certified threshold (usually a higher one), or, when none is certified, becomes
      ``suspended``. A lower certified threshold replaces the one in force only under
      the same margin, so the threshold does not churn. Every change is a
      :class:`Migration` (mode unchanged when only the threshold moves), so the API can
      keep the threshold history.
    - It also becomes ``suspended`` when drift is detected on the audited outcomes by a
      :class:`DriftMonitor` (ADWIN, and a CUSUM for a rise towards twice the target),
      and, with ``monitor_reviews=True``, by ADWIN on the calibration residual
      ``error - (1 - confidence)`` of the other labelled cases (more of them than of
      audits while automation is partial, so severe drift shows there first; off by
      default because the residual also moves when the model's calibration changes).
    - After drift the controller forgets all evidence (the windows restart at the
      detection), so only evidence from after the change can certify again. From
      ``suspended`` it re-certifies once ``min_labels`` labels arrived since the
      suspension and a threshold is certified. While the audit monitor warns, routing
      audits more (:meth:`audit_rate`); when the live model is replaced after drift
      (:meth:`model_replaced`) the evidence restarts again.
    - The admin's kill switch is not here: the API overrides the mode.

    Parameters
    ----------
    target_error, delta, window, seed
        As for :class:`RiskController`.
    min_labels
        Labels needed (since the start, or since a suspension) before automating.
    **tuning
        ``hysteresis`` (default 0: a share of the target the bound must stay below to
        certify or lower the threshold), ``hysteresis_errors`` (default 1: the bound must
        stay within the target after that many more errors), ``drift_delta`` (ADWIN's
        delta, default 0.002),
        ``monitor_reviews`` (default False), ``cusum_threshold`` (default 8),
        ``audit_boost`` (default 20, see :meth:`audit_rate`), ``warn_fraction`` (default
        0.3, see :attr:`DriftMonitor.warning`); anything else goes to the controller.

    Examples
    --------
    >>> gov = TaskGovernor(target_error=0.05, min_labels=50)
    >>> gov.mode, gov.threshold
    ('assist', None)
    >>> moves = []
    >>> for i in range(400):
    ...     sure = i % 2 == 0
    ...     evidence = Evidence(0.99 if sure else 0.7, i % 200 != 0 if sure else i % 3 > 0,
    ...                         propensity=1.0, audit=False, route="assist")
    ...     moves += gov.observe(f"c{i}", evidence)
    >>> gov.mode, gov.threshold, [m.mode for m in moves]
    ('automated', 0.99, ['automated'])
    >>> moves[0].reason
    'certified threshold 0.99 (bound 0.041 <= 0.05, n=152, 2 errors)'
    >>> gov.certificate.reason
    'threshold 0.99 (bound 0.031 <= 0.05, n=200, 2 errors)'
    """

    def __init__(
        self,
        *,
        target_error: float,
        delta: float = 0.05,
        min_labels: int = 50,
        window: int | None = None,
        seed: int = 0,
        **tuning: Any,
    ) -> None:
        self.hysteresis = float(tuning.pop("hysteresis", 0.0))
        self.hysteresis_errors = int(tuning.pop("hysteresis_errors", 1))
        self.drift_delta = float(tuning.pop("drift_delta", 0.002))
        self.monitor_reviews = bool(tuning.pop("monitor_reviews", False))
        cusum_threshold = float(tuning.pop("cusum_threshold", 8.0))
        self.audit_boost = float(tuning.pop("audit_boost", 20.0))
        warn_fraction = float(tuning.pop("warn_fraction", 0.3))
        if self.audit_boost < 1.0:
            raise LearnerError(f"audit_boost must be >= 1, got {self.audit_boost}")
        if not 0.0 <= self.hysteresis < 1.0:
            raise LearnerError(f"hysteresis must be in [0, 1), got {self.hysteresis}")
        if min_labels < 0:
            raise LearnerError(f"min_labels must be >= 0, got {min_labels}")
        self.controller = RiskController(
            target_error=target_error, delta=delta, window=window, seed=seed, **tuning
        )
        self.min_labels = int(min_labels)
        self.seed = seed
        self.mode = "assist"
        self.threshold: float | None = None
        self.n_labels = 0
        self.drift_labels: list[int] = []
        self.audit_monitor = DriftMonitor(
            delta=self.drift_delta,
            seed=seed,
            target=target_error,
            cusum_threshold=cusum_threshold,
            warn_fraction=warn_fraction,
        )
        self.review_monitor = DriftMonitor(delta=self.drift_delta, seed=seed)
        self._fresh_since = 0  # label count at the start, the last suspension or drift
        self.certificate = self.controller.certify()

    @property
    def target_error(self) -> float:
        return self.controller.target_error

    @property
    def delta(self) -> float:
        return self.controller.delta

    def audit_rate(self, base: float, inputs_moved: str | None = None) -> float:
        """The audit rate to route with: ``base``, or ``audit_boost`` times it (at most 1)
        while automated and the audit monitor warns that errors may be rising, or the
        inputs moved (``inputs_moved``: the feature a :class:`learner.inputs.InputMonitor`
        saw move), so that a drift is confirmed (or dismissed) after fewer automated
        cases, and the evidence catches up with inputs unlike those it was drawn from.
        Audits carry the rate they were drawn at as their propensity, so the evidence
        stays unbiased. A false warning ends after a few right audits, so the boost costs
        few labels on a stable stream; the default (20: every automated case at the usual
        5%) confirmed SEA's drift after about a quarter fewer automated cases than 8 did,
        at no cost measured on stationary streams (BENCHMARKS.md, "Drift").

        Examples
        --------
        >>> gov = TaskGovernor(target_error=0.05)
        >>> gov.audit_rate(0.05), gov.audit_rate(0.05, inputs_moved="amount")
        (0.05, 0.05)
        >>> gov.mode = "automated"
        >>> gov.audit_rate(0.05, inputs_moved="amount"), gov.raised_audits("amount")
        (1.0, 'inputs moved (amount)')
        """
        if self.mode == "automated" and (self.audit_monitor.warning or inputs_moved):
            return min(1.0, base * self.audit_boost)
        return base

    #: Why audits run above the task's rate (``audit_rate``), as reasons say it
    RAISED_AUDITS = "audited errors may be rising"

    def raised_audits(self, inputs_moved: str | None = None) -> str:
        """Why :meth:`audit_rate` raised the rate, as reasons say it."""
        if self.audit_monitor.warning or not inputs_moved:
            return self.RAISED_AUDITS
        return f"inputs moved ({inputs_moved})"

    @property
    def fresh_labels(self) -> int:
        """Labels since the start, the last suspension or drift: ``min_labels`` of them are
        needed to (re-)certify."""
        return self.n_labels - self._fresh_since

    @property
    def n_detections(self) -> int:
        """Drift detections so far (audits and reviews)."""
        return len(self.drift_labels)

    # --- inputs ---------------------------------------------------------------------------
    def observe(
        self, key: str, evidence: Evidence, label_number: int | None = None
    ) -> list[Migration]:
        """Feed one label (in label-log order); the migrations it caused, usually none.

        ``label_number``: the label's place in the caller's label log, which also holds
        labels that are no evidence (before any model, feedback, rule-held cases), for a
        drift reason to name (default: the evidence counted here).
        """
        self.controller.observe(key, evidence)
        self.n_labels += 1
        error = not evidence.correct
        if evidence.audit:
            detected = self.audit_monitor.observe(error)
            source = f"audited errors rose, {self.audit_monitor.detector}"
        elif self.monitor_reviews:
            detected = self.review_monitor.observe(float(error) - (1.0 - evidence.confidence))
            source = "reviewed errors rose, adwin"
        else:
            detected = False
        if detected:
            return self._on_drift(source, self.n_labels if label_number is None else label_number)
        return self._update()

    def correct(self, key: str, correct: bool) -> list[Migration]:
        """A label was corrected; re-certify."""
        self.controller.correct(key, correct)
        return self._update()

    def set_target(self, target_error: float, delta: float) -> list[Migration]:
        """The admin changed the target or delta; re-certify against the new ones (the
        reasons name what changed: "target changed to 0.01", "delta changed to 0.001")."""
        changed = [
            f"{name} changed to {_fmt(new)}"
            for name, old, new in (
                ("target", self.controller.target_error, target_error),
                ("delta", self.controller.delta, delta),
            )
            if new != old
        ]
        self.controller.set_target(target_error, delta)
        self.audit_monitor.target = self.controller.target_error
        return self._update(retarget=", ".join(changed) or "settings unchanged")

    def model_replaced(self, reason: str) -> list[Migration]:
        """The live model was replaced (a :class:`learner.challenger.Challenger` won after
        drift): the evidence describes the old model, so it is forgotten and the task
        re-certifies on the new one (suspended meanwhile). Always one migration, so the
        replacement lands in the threshold history."""
        self.controller.restart()
        self.audit_monitor.reset()
        self.review_monitor.reset()
        self._fresh_since = self.n_labels
        self.certificate = self.controller.certify()
        mode = "assist" if self.mode == "assist" else "suspended"
        return self._migrate(mode, None, reason if mode == "assist" else f"suspended: {reason}")

    # --- transitions ----------------------------------------------------------------------
    def _migrate(
        self, mode: str, threshold: float | None, reason: str, evidence: Certificate | None = None
    ) -> list[Migration]:
        """Move, recording ``evidence`` (default: the certificate now) with the reason; the
        numbers of the history row are those its reason quotes."""
        self.mode, self.threshold = mode, threshold
        c = self.certificate if evidence is None else evidence
        log.info("migration at label %d: %s", self.n_labels, reason)
        return [Migration(mode, threshold, reason, c.n, c.errors, c.upper, self.n_labels)]

    def _on_drift(self, source: str, label_number: int) -> list[Migration]:
        self.drift_labels.append(self.n_labels)
        self.controller.restart()
        self.audit_monitor.reset()
        self.review_monitor.reset()
        self._fresh_since = self.n_labels
        self.certificate = self.controller.certify()
        reason = f"suspended: drift detected at label {label_number:,} ({source})"
        log.info("drift at label %d (%s)", self.n_labels, source)
        if self.mode == "automated":
            return self._migrate("suspended", None, reason)
        return []

    def _update(self, retarget: str | None = None) -> list[Migration]:
        """Move mode and threshold on the evidence; ``retarget``: what the admin changed
        (the reason for this call)."""
        prefix = "" if retarget is None else f"{retarget}: "
        controller = self.controller
        # the lowest certified threshold that one more error would not undo (else the lowest)
        certified = controller.certify(self.hysteresis_errors)
        target = _fmt(controller.target_error)
        if self.mode != "automated":
            self.certificate = certified
            if not self._steady(certified) or self.fresh_labels < self.min_labels:
                if retarget is not None and self.mode == "suspended":
                    # the reason quoted the old target: say where the new one leaves it
                    return self._migrate(
                        "suspended", None, f"{prefix}still suspended ({certified.reason})"
                    )
                return []
            word = "re-certified" if self.mode == "suspended" else "certified"
            reason = prefix + certified.reason.replace("certified", word, 1)
            return self._migrate("automated", certified.threshold, reason)

        threshold = self.threshold
        assert threshold is not None
        in_force = controller.certificate_at(threshold)
        if in_force.threshold is None:  # the bound of the threshold in force is above target
            bound = in_force.upper if in_force.upper is not None else 1.0
            shown = format_bound(bound, controller.target_error)
            why = f"bound {shown} > target {target} at threshold {_fmt(threshold)}"
            if certified.threshold is None:
                self.certificate = certified
                if retarget is None:  # the evidence failed (not the admin's bar): re-certify
                    self._fresh_since = self.n_labels  # on fresh labels only
                counts = _counts(in_force.n, in_force.errors, in_force.n_effective)
                reason = f"{prefix}suspended: {why} ({counts})"
                return self._migrate("suspended", None, reason, in_force)
            self.certificate = controller.certificate_at(certified.threshold)
            verb = "raised" if certified.threshold > threshold else "moved"
            reason = (
                f"{prefix}threshold {verb} to {_fmt(certified.threshold)} ({why}; "
                f"{certified.reason.replace('certified threshold', 'certified', 1)})"
            )
            return self._migrate("automated", certified.threshold, reason, certified)
        lower, upper = certified.threshold, certified.upper
        if (
            lower is not None
            and upper is not None
            and lower < threshold
            and self._steady(certified)
        ):
            self.certificate = controller.certificate_at(lower)
            reason = (
                f"{prefix}threshold lowered to {_fmt(lower)} (bound "
                f"{format_bound(upper, controller.target_error)} <= {target}, "
                f"{_counts(certified.n, certified.errors, certified.n_effective)})"
            )
            return self._migrate("automated", lower, reason, certified)
        self.certificate = in_force
        return []

    def _steady(self, certificate: Certificate) -> bool:
        """Whether ``certificate`` may start automation or lower the threshold: certified
        with the hysteresis margin (its bound within ``(1 - hysteresis) * target`` and
        within the target after ``hysteresis_errors`` more errors)."""
        target = self.controller.target_error
        return (
            certificate.threshold is not None
            and certificate.upper is not None
            and certificate.upper <= (1.0 - self.hysteresis) * target
            and certificate.survives(target, self.hysteresis_errors)
        )

    def __setstate__(self, state: dict[str, Any]) -> None:
        state.setdefault("audit_boost", 8.0)  # pickled before audit boosts existed
        state.setdefault("hysteresis_errors", 0)
        self.__dict__.update(state)

    def __repr__(self) -> str:
        return (
            f"TaskGovernor(mode={self.mode!r}, threshold={self.threshold}, "
            f"target_error={self.target_error:g}, n_labels={self.n_labels})"
        )
