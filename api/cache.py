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
        self._reloading: set[K] = set()
        self._generation = 0  # bumped by forget(): a reload started before it is dropped

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

    def at_hand(self, key: K) -> tuple[bool, V | None]:
        """``(True, value)`` when ``key`` is cached and within its ``ttl``, else
        ``(False, None)``; never waits for a load (for callers on the event loop). In the
        last half of its ``ttl`` a value is still answered while a background thread
        reloads it (once), so a busy key does not send a caller to the slow path each
        time it expires; past its ``ttl`` it is never answered (a key revoked or a task
        switched off by another process stops counting within ``ttl``, quiet or busy).

        >>> cache = TTLCache(60, lambda k: k * 2)
        >>> cache.at_hand(2)
        (False, None)
        >>> cache.get(2), cache.at_hand(2)
        (4, (True, 4))
        """
        hit = self._entries.get(key)
        if hit is None:
            return False, None
        expires, value = hit
        now = time.monotonic()
        if now >= expires:
            return False, None
        if now >= expires - self.ttl / 2:
            self._reload_in_background(key)
        return True, value

    def _reload_in_background(self, key: K) -> None:
        with self._lock:
            if key in self._reloading:
                return
            self._reloading.add(key)
            generation = self._generation
        threading.Thread(target=self._reload, args=(key, generation), daemon=True).start()

    def _reload(self, key: K, generation: int) -> None:
        try:
            value = self.load(key)
        except Exception:  # noqa: BLE001 - the next get() loads (and raises) in the caller
            with self._lock:
                self._entries.pop(key, None)
        else:
            with self._lock:
                if generation == self._generation:  # no forget() since: not stale
                    self._entries[key] = (time.monotonic() + self.ttl, value)
        finally:
            with self._lock:
                self._reloading.discard(key)

    def forget(self, key: K | None = None) -> None:
        with self._lock:
            self._generation += 1
            if key is None:
                self._entries.clear()
            else:
                self._entries.pop(key, None)
