"""Agreement maths: kappa against scikit-learn, Fleiss' kappa by hand, invariants."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sklearn.metrics import cohen_kappa_score

from learner.agreement import (
    cohen_kappa,
    fleiss_kappa,
    majority,
    pair_confusion,
    raw_agreement,
    summarize,
)

LABELS = ["a", "b", "c"]
label = st.sampled_from(LABELS)


def _matrix(first: list[str], second: list[str]) -> list[list[int]]:
    index = {x: i for i, x in enumerate(LABELS)}
    m = [[0] * len(LABELS) for _ in LABELS]
    for x, y in zip(first, second, strict=True):
        m[index[x]][index[y]] += 1
    return m


@given(st.lists(st.tuples(label, label), min_size=2, max_size=60))
def test_cohen_kappa_matches_scikit_learn(pairs):
    first, second = [p[0] for p in pairs], [p[1] for p in pairs]
    ours = cohen_kappa(_matrix(first, second))
    if len(set(first) | set(second)) == 1:
        assert ours == 1.0  # one label throughout: sklearn answers nan
        return
    assert ours == pytest.approx(cohen_kappa_score(first, second), abs=1e-9)


def test_fleiss_kappa_of_the_textbook_example():
    # Fleiss (1971)-style table, 3 raters: worked by hand
    items = [["a", "a", "a"], ["a", "a", "b"], ["b", "b", "b"], ["a", "b", "b"]]
    # P_i = 1, 1/3, 1, 1/3 -> P = 2/3; p_a = p_b = 1/2 -> P_e = 1/2; kappa = 1/3
    assert fleiss_kappa(items, ["a", "b"]) == pytest.approx(1 / 3)


@given(st.lists(st.lists(label, min_size=2, max_size=5), min_size=1, max_size=30))
def test_agreement_figures_stay_in_range(items):
    raw = raw_agreement(items)
    kappa = fleiss_kappa(items, LABELS)
    assert raw is not None and 0.0 <= raw <= 1.0
    assert kappa is not None and kappa <= 1.0 + 1e-12
    if all(len(set(item)) == 1 for item in items):
        assert raw == 1.0 and kappa == pytest.approx(1.0)


@given(st.lists(st.lists(label, min_size=2, max_size=4), min_size=1, max_size=20))
def test_confusion_is_symmetric_and_counts_every_pair_twice(items):
    summary = summarize(items, LABELS)
    m = summary["confusion"]
    assert all(m[i][j] == m[j][i] for i in range(3) for j in range(3))
    assert sum(map(sum, m)) == 2 * summary["pairs"]
    assert pair_confusion([], LABELS) == [[0] * 3] * 3


def test_majority_needs_more_than_half():
    assert majority(["a", "a", "b"]) == "a"
    assert majority(["a", "b"]) is None
    assert majority(["a", "b", "c", "a"]) is None
    assert majority([]) is None
