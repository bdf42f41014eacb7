"""Agreement between reviewers: raw agreement, Cohen's and Fleiss' kappa, confusion.

Pure functions over plain data: an *item* is the list of labels that distinct reviewers
gave one case; a *pair* is two labels given to one case by two reviewers.

Examples
--------
>>> items = [["a", "a"], ["a", "b"], ["b", "b"], ["a", "a", "a"]]
>>> round(raw_agreement(items), 3)
0.833
>>> round(fleiss_kappa(items, ["a", "b"]), 2)
0.44
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from itertools import combinations

__all__ = [
    "AgreementSummary",
    "cohen_kappa",
    "fleiss_kappa",
    "majority",
    "one_vs_rest_kappa",
    "pair_confusion",
    "pairs_of",
    "raw_agreement",
    "specific_agreement",
    "summarize",
]


def pairs_of(items: Iterable[Sequence[str]]) -> list[tuple[str, str]]:
    """Every unordered pair of labels given to the same item (items of one label add none).

    >>> pairs_of([["a", "b", "b"], ["a"]])
    [('a', 'b'), ('a', 'b'), ('b', 'b')]
    """
    return [(a, b) for item in items for a, b in combinations(item, 2)]


def raw_agreement(items: Iterable[Sequence[str]]) -> float | None:
    """Share of reviewer pairs on the same item that gave the same label (``None``: no pairs).

    >>> raw_agreement([["a", "a"], ["a", "b"]])
    0.5
    >>> raw_agreement([["a"]]) is None
    True
    """
    pairs = pairs_of(items)
    if not pairs:
        return None
    return sum(a == b for a, b in pairs) / len(pairs)


def pair_confusion(pairs: Iterable[tuple[str, str]], labels: Sequence[str]) -> list[list[int]]:
    """Symmetric confusion matrix of label pairs: each unordered pair counts once in each
    direction, so the diagonal holds twice the agreeing pairs.

    >>> pair_confusion([("a", "b"), ("a", "a")], ["a", "b"])
    [[2, 1], [1, 0]]
    """
    index = {label: i for i, label in enumerate(labels)}
    matrix = [[0] * len(labels) for _ in labels]
    for a, b in pairs:
        if a in index and b in index:
            matrix[index[a]][index[b]] += 1
            matrix[index[b]][index[a]] += 1
    return matrix


def cohen_kappa(matrix: Sequence[Sequence[int]]) -> float | None:
    """Cohen's kappa of a confusion matrix (rows: one rater, columns: the other).

    ``None`` when the matrix is empty; 1.0 when chance agreement is already perfect and
    the raters agree.

    >>> round(cohen_kappa([[20, 5], [10, 15]]), 3)
    0.4
    >>> cohen_kappa([[3, 0], [0, 0]])
    1.0
    >>> cohen_kappa([[0, 0], [0, 0]]) is None
    True
    """
    total = sum(sum(row) for row in matrix)
    if total == 0:
        return None
    k = len(matrix)
    observed = sum(matrix[i][i] for i in range(k)) / total
    rows = [sum(matrix[i]) / total for i in range(k)]
    cols = [sum(matrix[i][j] for i in range(k)) / total for j in range(k)]
    expected = sum(r * c for r, c in zip(rows, cols, strict=True))
    if expected >= 1.0:
        return 1.0 if observed >= 1.0 else 0.0
    return (observed - expected) / (1.0 - expected)


def fleiss_kappa(items: Iterable[Sequence[str]], labels: Sequence[str]) -> float | None:
    """Fleiss' kappa over items rated by two or more reviewers (numbers may differ per item).

    Items with fewer than two labels are ignored; ``None`` when none is left.

    >>> round(fleiss_kappa([["a", "a", "b"], ["b", "b", "b"], ["a", "a", "a"]], ["a", "b"]), 3)
    0.55
    >>> fleiss_kappa([["a", "a"], ["a", "a"]], ["a", "b"])
    1.0
    """
    rated = [list(item) for item in items if len(item) >= 2]
    if not rated:
        return None
    totals: Counter[str] = Counter()
    n_ratings = 0
    p_items = []
    for item in rated:
        counts = Counter(item)
        n = len(item)
        totals.update(counts)
        n_ratings += n
        p_items.append((sum(c * c for c in counts.values()) - n) / (n * (n - 1)))
    p_bar = sum(p_items) / len(p_items)
    p_e = sum((totals[label] / n_ratings) ** 2 for label in set(labels) | set(totals))
    if p_e >= 1.0:
        return 1.0 if p_bar >= 1.0 else 0.0
    return (p_bar - p_e) / (1.0 - p_e)


def specific_agreement(matrix: Sequence[Sequence[int]], i: int) -> float | None:
    """Specific agreement on label ``i`` of a symmetric pair matrix: of the pair halves
    that involve label ``i``, the share where the other reviewer said ``i`` too.

    >>> specific_agreement([[2, 1], [1, 0]], 0)
    0.667
    """
    row = sum(matrix[i])
    if row == 0:
        return None
    return round(matrix[i][i] / row, 3)


def one_vs_rest_kappa(matrix: Sequence[Sequence[int]], i: int) -> float | None:
    """Cohen's kappa of label ``i`` against all others (the matrix collapsed to 2 x 2).

    >>> round(one_vs_rest_kappa([[2, 1, 0], [1, 4, 1], [0, 1, 2]], 0), 3)
    0.556
    """
    total = sum(sum(row) for row in matrix)
    if total == 0:
        return None
    both = matrix[i][i]
    row = sum(matrix[i])
    col = sum(r[i] for r in matrix)
    collapsed = [[both, row - both], [col - both, total - row - col + both]]
    return cohen_kappa(collapsed)


def majority(labels: Sequence[str]) -> str | None:
    """The label more than half of the reviewers gave (``None`` without a majority).

    >>> majority(["a", "b", "a"]), majority(["a", "b"])
    ('a', None)
    """
    if not labels:
        return None
    label, count = Counter(labels).most_common(1)[0]
    return label if count * 2 > len(labels) else None


class AgreementSummary(dict):  # type: ignore[type-arg]
    """A task's agreement figures as a plain dict (see :func:`summarize`)."""


def summarize(items: Sequence[Sequence[str]], labels: Sequence[str]) -> AgreementSummary:
    """Raw agreement, Cohen's kappa (pooled pairs), Fleiss' kappa, the pair confusion
    matrix, and per label its specific agreement and one-vs-rest kappa.

    >>> s = summarize([["a", "a"], ["a", "b"], ["b", "b"]], ["a", "b"])
    >>> s["items"], s["pairs"], round(s["raw_agreement"], 3), s["confusion"]
    (3, 3, 0.667, [[2, 1], [1, 2]])
    >>> s["per_label"]["a"]
    0.667
    """
    rated = [item for item in items if len(item) >= 2]
    pairs = pairs_of(rated)
    matrix = pair_confusion(pairs, labels)
    return AgreementSummary(
        items=len(rated),
        pairs=len(pairs),
        raw_agreement=raw_agreement(rated),
        cohen_kappa=cohen_kappa(matrix),
        fleiss_kappa=fleiss_kappa(rated, labels),
        confusion=matrix,
        per_label={label: specific_agreement(matrix, i) for i, label in enumerate(labels)},
        per_label_kappa={label: one_vs_rest_kappa(matrix, i) for i, label in enumerate(labels)},
    )
