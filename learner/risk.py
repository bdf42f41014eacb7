"""Finite-sample bounds on the error rate of automated decisions.

Audits are a known-probability sample of automated cases, so their error count is a
binomial draw and the exact (Clopper-Pearson) bounds apply.
"""

from __future__ import annotations

from dataclasses import dataclass

from scipy.stats import beta

from learner.errors import LearnerError

__all__ = [
    "ErrorEstimate",
    "clopper_pearson_lower",
    "clopper_pearson_upper",
    "estimate_audit_error",
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
