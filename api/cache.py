"""A tiny time-bounded cache for hot, rarely-changing rows (keys, task settings)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")


class TTLCache(Generic[K, V]):
    """Remembers ``load(key)`` for ``ttl`` seconds; ``forget`` drops entries at once.

    Changes made by this process call ``forget``; changes made by another process
    are seen within ``ttl`` seconds.

    >>> calls = []
    >>> cache = TTLCache(60, lambda k: calls.append(k) or k * 2)
    >>> cache.get(2), cache.get(2), calls
    (4, 4, [2])
    >>> cache.forget(); cache.get(2), calls
    (4, [2, 2])
    """

    def __init__(self, ttl: float, load: Callable[[K], V], max_entries: int = 10_000) -> None:
        self.ttl = ttl
        self.load = load
        self.max_entries = max_entries
        self._entries: dict[K, tuple[float, V]] = {}
        self._lock = threading.Lock()

    def get(self, key: K) -> V:
        now = time.monotonic()
        hit = self._entries.get(key)
        if hit is not None and hit[0] > now:
            return hit[1]
        value = self.load(key)
        with self._lock:
            if len(self._entries) >= self.max_entries:
                self._entries.clear()
            self._entries[key] = (now + self.ttl, value)
        return value

    def forget(self, key: K | None = None) -> None:
        with self._lock:
            if key is None:
                self._entries.clear()
            else:
                self._entries.pop(key, None)
