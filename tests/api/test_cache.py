"""The TTL cache's event-loop read: ageing values are answered while one reload runs;
expired ones never are."""

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


def test_an_ageing_value_is_answered_and_reloaded_once_in_the_background():
    source = {"k": 1}
    loads = []
    release = threading.Event()

    def load(key):  # type: ignore[no-untyped-def]
        loads.append(key)
        if len(loads) > 1:
            release.wait(5)
        return source[key]

    cache = TTLCache(60, load)
    assert cache.get("k") == 1
    source["k"] = 2
    cache._entries["k"] = (time.monotonic() + 20, 1)  # in the last half of its ttl
    answers = [cache.at_hand("k") for _ in range(5)]  # answered at once, one reload
    assert answers == [(True, 1)] * 5
    release.set()
    assert _wait_for(lambda: cache.at_hand("k") == (True, 2))
    assert loads == ["k", "k"]


def test_an_expired_value_is_never_answered_however_long_the_quiet_spell():
    """A key revoked by another process once passed on the first request after a quiet
    spell, answered stale while the reload ran."""
    source = {"k": "valid"}
    cache = TTLCache(0.05, lambda key: source[key])
    assert cache.get("k") == "valid"
    source["k"] = "revoked"
    time.sleep(0.1)
    assert cache.at_hand("k") == (False, None)
    assert cache.get("k") == "revoked"
    assert cache.at_hand("k") == (True, "revoked")


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
    cache._entries["k"] = (time.monotonic() + 1, "old")  # ageing: at_hand starts a reload
    assert cache.at_hand("k") == (True, "old")
    assert started.wait(5)
    source["k"] = "new"
    cache.forget("k")  # a change made by this process
    release.set()
    time.sleep(0.05)
    assert cache.at_hand("k") == (False, None)  # the old reload did not come back
    assert cache.get("k") == "new"
