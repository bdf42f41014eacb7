"""Uncertainty measures of a probability dict (label -> probability)."""

from __future__ import annotations

import math

from learner.errors import LearnerError

__all__ = ["confidence", "entropy", "margin", "suggestion"]


def confidence(proba: dict[str, float]) -> float:
    """The top probability (0.0 for an empty dict).

    Examples
    --------
    >>> confidence({"a": 0.2, "b": 0.7, "c": 0.1})
    0.7
    """
    return max(proba.values(), default=0.0)


def margin(proba: dict[str, float]) -> float:
    """Top probability minus the runner-up's; 1.0 for a single label, 0.0 for none.

    Small margins are the most informative cases to label.

    Examples
    --------
    >>> round(margin({"a": 0.2, "b": 0.7, "c": 0.1}), 3)
    0.5
    >>> margin({"only": 1.0})
    1.0
    """
    if len(proba) < 2:
        return 1.0 if proba else 0.0
    first = second = -math.inf
    for p in proba.values():
        if p > first:
            first, second = p, first
        elif p > second:
            second = p
    return first - second


def entropy(proba: dict[str, float]) -> float:
    """Shannon entropy in nats (0 for a certain prediction, log k for uniform over k).

    Examples
    --------
    >>> round(entropy({"a": 0.5, "b": 0.5}), 4)
    0.6931
    """
    return -math.fsum(p * math.log(p) for p in proba.values() if p > 0.0)


def suggestion(proba: dict[str, float]) -> str:
    """The most probable label; ties go to the label that comes first.

    Examples
    --------
    >>> suggestion({"a": 0.4, "b": 0.4, "c": 0.2})
    'a'
    """
    if not proba:
        raise LearnerError("no probabilities to suggest a label from")
    return max(proba, key=proba.__getitem__)
