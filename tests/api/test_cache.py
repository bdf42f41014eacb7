"""The TTL cache's event-loop read: stale values are answered while one reload runs."""

from __future__ import annotations

import threading
import time

from api.cache import TTLCache


def _wait_for(predicate, timeout: float = 5.0) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.005)
    return False


def test_a_stale_value_is_answered_and_reloaded_once_in_the_background():
    source = {"k": 1}
    loads = []
    release = threading.Event()

    def load(key):  # type: ignore[no-untyped-def]
        loads.append(key)
        if len(loads) > 1:
            release.wait(5)
        return source[key]

    cache = TTLCache(0.01, load)
    assert cache.get("k") == 1
    source["k"] = 2
    time.sleep(0.02)
    answers = [cache.at_hand("k") for _ in range(5)]  # stale: answered at once, one reload
    assert answers == [(True, 1)] * 5
    release.set()
    assert _wait_for(lambda: cache.at_hand("k") == (True, 2))
    assert loads == ["k", "k"]


def test_forget_during_a_reload_drops_the_reloaded_value():
    source = {"k": "old"}
    started, release = threading.Event(), threading.Event()

    def load(key):  # type: ignore[no-untyped-def]
        value = source[key]
        if started.is_set() is False and value == "old" and release.is_set() is False:
            started.set()
            release.wait(5)
        return value

    cache = TTLCache(60, load)
    cache._entries["k"] = (0.0, "old")  # expired entry: at_hand starts a reload
    assert cache.at_hand("k") == (True, "old")
    assert started.wait(5)
    source["k"] = "new"
    cache.forget("k")  # a change made by this process
    release.set()
    time.sleep(0.05)
    assert cache.at_hand("k") == (False, None)  # the old reload did not come back
    assert cache.get("k") == "new"
