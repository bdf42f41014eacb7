"""Watch the inputs a task decides on, and say when they moved.

The certificate (:mod:`learner.controller`) holds for cases like the labelled evidence
behind it. When the inputs move where few labels have been (a range of a feature the
reviewers never saw, a sweep across it), the model can be confidently wrong there
before any audit says so. :class:`InputMonitor` watches each numeric feature of the
cases routed and reports a move; the governor then audits more
(:meth:`learner.controller.TaskGovernor.audit_rate`) for a while, so that the evidence
catches up with the new inputs and the audit monitors see any rise in errors after fewer
automated cases.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from typing import Any

from learner.schema import FeatureSpec

__all__ = ["InputMonitor"]


class InputMonitor:
    """A two-sided CUSUM per numeric feature on the ranks of the values of routed cases.

    Each value is put on a common scale first: its mid-rank among a reference sample of
    the feature (its first ``warmup`` values), less one half. While the inputs are like the
    reference, these ranks average 0 whatever the unit, tails or ties of the feature, with
    a spread of at most 1/12; the CUSUM (Page 1954) sums them less an ``allowance`` (one
    way and the other) and reports a move when either sum passes ``threshold``. Measured
    on a normal feature: a shift by 3 standard deviations is reported after 26 cases
    (median of 50 runs), by 1 after 63, by 0.5 after 266 (in 46 runs of 50), by 0.25
    rarely; on unchanged inputs (uniform, lognormal, binary and tied values) never in 8
    million cases. On a move the feature takes a new reference (its next ``warmup``
    values; also every ``renew`` values without one), so inputs that keep moving keep
    being reported, and a *raise* starts that lasts ``raise_cases`` routed cases (a later
    move restarts it).

    Categories, texts and booleans are not watched; missing values are skipped. A feature
    watched on a case costs a binary search or two and a few additions (about a
    microsecond); with more numeric features than ``budget``, each case watches
    ``budget`` of them in turn, so a wide task pays no more per case and a move shows
    after proportionally more cases.

    Parameters
    ----------
    schema
        The task's features; the numeric ones are watched.
    warmup
        Values in a feature's reference sample; the feature is not watched while it fills.
    allowance, threshold
        The CUSUM's drift allowance and alarm level, in ranks (a rank less a half is in
        [-0.5, 0.5]).
    raise_cases
        Routed cases a raise lasts after the last move.
    budget
        Features watched per case at most.
    renew
        Values a reference serves for at most, when nothing moved: a reference drawn
        across a jump (half its values before, half after) ranks every value between its
        two parts alike, and would hide a later sweep across them.

    Examples
    --------
    >>> import random
    >>> rng = random.Random(0)
    >>> monitor = InputMonitor({"amount": FeatureSpec("number"), "city": FeatureSpec("category")})
    >>> moves = [monitor.observe({"amount": rng.lognormvariate(4, 2), "city": "Oslo"})
    ...          for _ in range(5000)]
    >>> any(moves), monitor.moved
    (False, None)
    >>> moves = [monitor.observe({"amount": rng.lognormvariate(5, 2)}) for _ in range(300)]
    >>> monitor.moved, monitor.n_moves, 0 < moves.index("amount") < 300
    ('amount', 1, True)
    """

    def __init__(
        self,
        schema: dict[str, FeatureSpec],
        *,
        warmup: int = 200,
        allowance: float = 0.1,
        threshold: float = 10.0,
        raise_cases: int = 300,
        budget: int = 4,
        renew: int = 2_000,
    ) -> None:
        self.warmup = warmup
        self.renew = renew
        self.allowance = allowance
        self.threshold = threshold
        self.raise_cases = raise_cases
        self.names = [name for name, spec in schema.items() if spec.kind == "number"]
        #: Each feature is watched on every ``stride``-th case (``budget`` a case at most)
        self.stride = max(1, -(-len(self.names) // budget))
        self._turn = 0
        # per feature, by position in names: the sorted reference (None while it fills),
        # the values filling it, and the CUSUM's upward and downward sums
        self._reference: list[list[float] | None] = [None] * len(self.names)
        self._filling: list[list[float]] = [[] for _ in self.names]
        self._up = [0.0] * len(self.names)
        self._down = [0.0] * len(self.names)
        self._age = [0] * len(self.names)  # values compared with the reference so far
        self.n_moves = 0
        #: The feature whose move started the raise in force (``None``: no raise).
        self.moved: str | None = None
        self.raise_left = 0

    def observe(self, features: dict[str, Any]) -> str | None:
        """Add one routed case; the feature that moved on it, else ``None``."""
        if self.raise_left:
            self.raise_left -= 1
            if not self.raise_left:
                self.moved = None
        moved = None
        k, h = self.allowance, self.threshold
        up, down, references, names = self._up, self._down, self._reference, self.names
        self._turn = (self._turn + 1) % self.stride
        for i in range(self._turn, len(names), self.stride):
            name = names[i]
            value = features.get(name)
            if value is None:
                continue
            reference = references[i]
            if reference is None:
                self._fill(i, value)
                continue
            # the mid-rank of value among the reference (ties counted half), less a half
            below = bisect_left(reference, value)
            n = len(reference)
            tied = below < n and reference[below] == value
            at_most = bisect_right(reference, value, below) if tied else below
            step = (below + at_most) / (2 * n) - 0.5
            u, d = up[i] + step - k, down[i] - step - k
            self._age[i] += 1
            shifted = u > h or d > h
            if shifted:
                moved = moved or name
            if shifted or self._age[i] >= self.renew:
                # a new reference from the values to come: after a move, or when this one
                # is old (one that straddles a jump hides what moves between its parts)
                references[i], u, d, self._age[i] = None, 0.0, 0.0, 0
            up[i], down[i] = max(u, 0.0), max(d, 0.0)
        if moved is not None:
            self.n_moves += 1
            self.moved, self.raise_left = moved, self.raise_cases
        return moved

    def _fill(self, i: int, value: float) -> None:
        filling = self._filling[i]
        filling.append(value)
        if len(filling) == self.warmup:
            self._reference[i] = sorted(filling)
            self._filling[i] = []
