"""Finite-sample bounds on the error rate of automated decisions.

Audits are a known-probability sample of automated cases, so their error count is a
binomial draw and the exact (Clopper-Pearson) bounds apply. Evidence that mixes cases
sampled with different probabilities is summarised by a weighted error rate on an
effective sample size (Kish, or the design-effect size of
:mod:`learner.controller`), and bounded by Clopper-Pearson at that size
(:func:`weighted_clopper_pearson_upper`); with equal weights it is the exact bound.
"""

from __future__ import annotations

from dataclasses import dataclass

from scipy.special import betainc, betaincinv
from scipy.stats import beta

from learner.errors import LearnerError

__all__ = [
    "ErrorEstimate",
    "clopper_pearson_lower",
    "clopper_pearson_upper",
    "estimate_audit_error",
    "kish_effective_size",
    "weighted_clopper_pearson_upper",
    "weighted_upper_at_most",
]


def _check(errors: int, n: int, delta: float) -> None:
    if not 0 <= errors <= n:
        raise LearnerError(f"need 0 <= errors <= n, got errors={errors}, n={n}")
    if not 0.0 < delta < 1.0:
        raise LearnerError(f"delta must be in (0, 1), got {delta}")


def clopper_pearson_upper(errors: int, n: int, delta: float) -> float:
    """One-sided upper confidence bound on an error rate, valid with probability 1 - delta.

    Parameters
    ----------
    errors
        Errors observed.
    n
        Cases checked.
    delta
        Allowed probability that the true rate lies above the bound.

    Returns
    -------
    float
        The bound; 1.0 when ``n == 0`` (no evidence) or every case was wrong.

    Examples
    --------
    >>> round(clopper_pearson_upper(0, 100, 0.05), 4)  # 1 - 0.05 ** (1 / 100)
    0.0295
    >>> round(clopper_pearson_upper(5, 100, 0.05), 4)
    0.1023
    >>> clopper_pearson_upper(0, 0, 0.05)
    1.0
    """
    _check(errors, n, delta)
    if errors >= n:
        return 1.0
    return float(beta.ppf(1.0 - delta, errors + 1, n - errors))


def clopper_pearson_lower(errors: int, n: int, delta: float) -> float:
    """One-sided lower confidence bound on an error rate; 0.0 when ``errors == 0``.

    Examples
    --------
    >>> round(clopper_pearson_lower(5, 100, 0.05), 4)
    0.0199
    >>> clopper_pearson_lower(0, 100, 0.05)
    0.0
    """
    _check(errors, n, delta)
    if errors == 0:
        return 0.0
    return float(beta.ppf(delta, errors, n - errors + 1))


@dataclass
class ErrorEstimate:
    """An error rate measured on ``n`` audited cases: point estimate and upper bound.

    ``estimate`` and ``upper`` are ``None`` when nothing was audited yet.
    """

    n: int
    errors: int
    estimate: float | None
    upper: float | None


def estimate_audit_error(errors: int, n: int, delta: float = 0.05) -> ErrorEstimate:
    """The error rate of automated decisions from their audits.

    Examples
    --------
    >>> e = estimate_audit_error(2, 200)
    >>> e.estimate, round(e.upper, 4)
    (0.01, 0.0311)
    >>> estimate_audit_error(0, 0)
    ErrorEstimate(n=0, errors=0, estimate=None, upper=None)
    """
    _check(errors, n, delta)
    if n == 0:
        return ErrorEstimate(n=0, errors=0, estimate=None, upper=None)
    return ErrorEstimate(
        n=n, errors=errors, estimate=errors / n, upper=clopper_pearson_upper(errors, n, delta)
    )


def _check_weighted(errors: float, n: float, delta: float) -> None:
    if not (n >= 0.0 and -1e-9 <= errors <= n + 1e-9):
        raise LearnerError(f"need 0 <= errors <= n, got errors={errors}, n={n}")
    if not 0.0 < delta < 1.0:
        raise LearnerError(f"delta must be in (0, 1), got {delta}")


def kish_effective_size(weights: list[float] | tuple[float, ...]) -> float:
    """Kish's effective sample size ``(sum w) ** 2 / sum w ** 2`` of weighted evidence.

    Equal weights give the number of cases; unequal weights give fewer.

    Examples
    --------
    >>> kish_effective_size([1.0, 1.0, 1.0, 1.0])
    4.0
    >>> kish_effective_size([1.0, 1.0, 20.0])
    1.2...
    >>> kish_effective_size([])
    0.0
    """
    total = sum(weights)
    squares = sum(w * w for w in weights)
    return total * total / squares if squares > 0.0 else 0.0


def weighted_clopper_pearson_upper(errors: float, n: float, delta: float) -> float:
    """Clopper-Pearson upper bound for a (possibly fractional) effective sample.

    ``errors`` and ``n`` may be real numbers: the error rate ``errors / n`` of weighted
    evidence and its effective size. The bound is the ``1 - delta`` quantile of
    ``Beta(errors + 1, n - errors)``, which for integers is exactly
    :func:`clopper_pearson_upper`.

    Examples
    --------
    >>> a, b = weighted_clopper_pearson_upper(5, 100, 0.05), clopper_pearson_upper(5, 100, 0.05)
    >>> abs(a - b) < 1e-12
    True
    >>> round(weighted_clopper_pearson_upper(2.5, 60.4, 0.05), 4)
    0.1121
    >>> weighted_clopper_pearson_upper(0.0, 0.0, 0.05)
    1.0
    """
    _check_weighted(errors, n, delta)
    errors = min(max(errors, 0.0), n)
    if n - errors <= 0.0:
        return 1.0
    return float(betaincinv(errors + 1.0, n - errors, 1.0 - delta))


def weighted_upper_at_most(errors: float, n: float, delta: float, target: float) -> bool:
    """Whether :func:`weighted_clopper_pearson_upper` is at most ``target``, cheaply.

    The bound ``u`` solves ``I_u(errors + 1, n - errors) = 1 - delta`` (``I`` the
    regularised incomplete beta function, increasing in ``u``), so ``u <= target``
    exactly when ``I_target(errors + 1, n - errors) >= 1 - delta``: one function value
    instead of an inversion.

    Examples
    --------
    >>> weighted_upper_at_most(0, 59, 0.05, 0.05), weighted_upper_at_most(0, 58, 0.05, 0.05)
    (True, False)
    """
    errors = min(max(errors, 0.0), n)
    if n - errors <= 0.0 or target >= 1.0:
        return target >= 1.0
    return float(betainc(errors + 1.0, n - errors, target)) >= 1.0 - delta
