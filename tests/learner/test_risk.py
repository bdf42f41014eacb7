"""Clopper-Pearson bounds and audit error estimates."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from learner import (
    ErrorEstimate,
    LearnerError,
    clopper_pearson_lower,
    clopper_pearson_upper,
    estimate_audit_error,
)


@st.composite
def counts(draw):
    n = draw(st.integers(1, 5000))
    return draw(st.integers(0, n)), n


deltas = st.floats(0.001, 0.5)


def test_clopper_pearson_upper_with_no_errors_has_closed_form():
    assert math.isclose(clopper_pearson_upper(0, 100, 0.05), 1 - 0.05 ** (1 / 100))


def test_clopper_pearson_upper_without_evidence_is_one():
    assert clopper_pearson_upper(0, 0, 0.05) == 1.0


def test_clopper_pearson_upper_all_wrong_is_one():
    assert clopper_pearson_upper(10, 10, 0.05) == 1.0


def test_clopper_pearson_lower_edges():
    assert clopper_pearson_lower(0, 50, 0.05) == 0.0
    assert math.isclose(clopper_pearson_lower(50, 50, 0.05), 0.05 ** (1 / 50))


@pytest.mark.parametrize(
    ("errors", "n", "delta"), [(-1, 10, 0.05), (11, 10, 0.05), (1, 10, 0.0), (1, 10, 1.0)]
)
def test_clopper_pearson_rejects_bad_arguments(errors, n, delta):
    with pytest.raises(LearnerError):
        clopper_pearson_upper(errors, n, delta)
    with pytest.raises(LearnerError):
        clopper_pearson_lower(errors, n, delta)


@given(counts(), deltas)
def test_clopper_pearson_upper_is_above_the_rate_and_at_most_one(count, delta):
    errors, n = count
    upper = clopper_pearson_upper(errors, n, delta)
    assert errors / n <= upper <= 1.0
    assert clopper_pearson_lower(errors, n, delta) <= errors / n


@given(counts(), deltas)
def test_clopper_pearson_upper_is_monotone_in_errors(count, delta):
    errors, n = count
    if errors < n:
        assert clopper_pearson_upper(errors, n, delta) < clopper_pearson_upper(errors + 1, n, delta)


@given(counts(), deltas)
def test_clopper_pearson_upper_shrinks_with_more_clean_cases(count, delta):
    errors, n = count
    assert clopper_pearson_upper(errors, n + 1, delta) <= clopper_pearson_upper(errors, n, delta)


@given(counts(), st.floats(0.001, 0.2))
def test_clopper_pearson_upper_tightens_as_delta_grows(count, delta):
    errors, n = count
    assert clopper_pearson_upper(errors, n, 2 * delta) <= clopper_pearson_upper(errors, n, delta)


@pytest.mark.parametrize(("p", "n"), [(0.02, 200), (0.1, 50), (0.3, 30)])
def test_clopper_pearson_upper_covers_the_true_rate(p, n):
    delta = 0.1
    rng = np.random.default_rng(0)
    errors = rng.binomial(n, p, size=2000)
    misses = sum(clopper_pearson_upper(int(k), n, delta) < p for k in errors)
    assert misses / len(errors) <= delta


def test_estimate_audit_error_reports_rate_and_bound():
    estimate = estimate_audit_error(3, 300, delta=0.05)
    assert (estimate.n, estimate.errors, estimate.estimate) == (300, 3, 0.01)
    assert estimate.upper == clopper_pearson_upper(3, 300, 0.05)


def test_estimate_audit_error_without_audits_is_unknown():
    assert estimate_audit_error(0, 0) == ErrorEstimate(n=0, errors=0, estimate=None, upper=None)
