"""The review queue's ageing, bounded by the backlog (learner.routing.queue_priority)."""

from __future__ import annotations

import heapq
import random
from collections import deque

import pytest

from learner import LearnerError, queue_priority


def serve(arrivals: list[float | None], capacity: float, bounded: bool) -> list[int]:
    """A case a second with the given margin (``None``: no case that second); reviewers
    label ``capacity`` cases a second. The indices of the cases labelled, in order."""
    queue: list[tuple[float, int]] = []
    waiting: deque[int] = deque()
    done: set[int] = set()
    served: list[int] = []
    credit = 0.0
    for i, margin in enumerate(arrivals):
        if margin is not None:
            oldest = float(waiting[0]) if waiting and bounded else None
            heapq.heappush(queue, (queue_priority(margin, float(i), oldest=oldest), i))
            waiting.append(i)
        credit = min(credit + capacity, 1.0 + capacity)
        while credit >= 1.0 and queue:
            credit -= 1.0
            _, j = heapq.heappop(queue)
            served.append(j)
            done.add(j)
            while waiting and waiting[0] in done:
                waiting.popleft()
    return served


def test_under_a_lasting_backlog_uncertain_cases_keep_coming_first():
    rng = random.Random(0)
    margins = [rng.random() for _ in range(20_000)]  # 5.5 hours at one case a second
    bounded = serve(margins, 0.2, bounded=True)[2_000:]  # the labels of the last half
    unbounded = serve(margins, 0.2, bounded=False)[2_000:]
    # bounded: they go to recent uncertain cases; unbounded: to the oldest ones (FIFO)
    assert sum(j >= 10_000 for j in bounded) > 0.9 * len(bounded)
    assert sum(margins[j] for j in bounded) / len(bounded) < 0.15
    assert sum(j >= 10_000 for j in unbounded) == 0


def test_nothing_starves_once_reviewers_catch_up():
    rng = random.Random(1)
    burst = [rng.random() for _ in range(3_000)]  # a burst the reviewers cannot follow
    calm = [0.01 if i % 4 == 0 else None for i in range(40_000)]  # then fewer cases than
    served = serve(burst + calm, 0.5, bounded=True)  # reviewers label, all uncertain
    assert set(range(3_000)) <= set(served)  # every case of the burst was labelled


def test_without_a_backlog_the_order_is_unchanged():
    assert queue_priority(0.3, 7200.0, oldest=7100.0) == queue_priority(0.3, 7200.0)
    assert queue_priority(0.3, 7200.0, oldest=0.0) == pytest.approx(0.3 + 0.25)
    assert queue_priority(0.3, 7200.0, oldest=0.0, audit=True) == pytest.approx(0.25)


def test_age_credit_is_checked():
    with pytest.raises(LearnerError, match="age_credit"):
        queue_priority(0.3, 0.0, oldest=0.0, age_credit=-1.0)
