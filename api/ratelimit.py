"""Per-key request rate limits: a token bucket for each key, in memory, per process."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable


class RateLimiter:
    """``rate`` requests a second per key on average, bursts up to ``burst``.

    :meth:`acquire` takes a token and returns ``0.0``, or returns how many seconds to
    wait for one (the ``Retry-After``) and takes nothing.

    >>> clock = [0.0]
    >>> limiter = RateLimiter(rate=2, burst=2, clock=lambda: clock[0])
    >>> [limiter.acquire("k") for _ in range(3)]
    [0.0, 0.0, 0.5]
    >>> clock[0] = 0.5; limiter.acquire("k"), limiter.acquire("other")
    (0.0, 0.0)
    """

    def __init__(
        self,
        rate: float,
        burst: float | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        max_keys: int = 100_000,
    ) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.rate = rate
        self.burst = max(1.0, burst if burst else 2 * rate)
        self.clock = clock
        self.max_keys = max_keys
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, at)
        self._lock = threading.Lock()

    def acquire(self, key: str) -> float:
        now = self.clock()
        with self._lock:
            tokens, at = self._buckets.get(key, (self.burst, now))
            tokens = min(self.burst, tokens + (now - at) * self.rate)
            if tokens >= 1.0:
                if len(self._buckets) >= self.max_keys and key not in self._buckets:
                    self._buckets.clear()  # bounded memory; a reset only forgives
                self._buckets[key] = (tokens - 1.0, now)
                return 0.0
            self._buckets[key] = (tokens, now)
            return (1.0 - tokens) / self.rate

    @staticmethod
    def retry_after(wait: float) -> str:
        """The ``Retry-After`` header value: whole seconds, at least 1."""
        return str(max(1, math.ceil(wait)))
