"""The reviewer's loop without Streamlit: a plain dict as session state."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from api.client import Forbidden, InvalidInput, RateLimited, TierlineError, Unavailable
from review_ui import reviewing as rv
from tests.review_ui.conftest import FakeApi, FakeClient


@pytest.fixture
def loop():
    api = FakeApi()
    client = FakeClient(api, "tl_reviewer")
    state: dict = {}
    rv.setup(state)
    rv.switch_task(client, state, "claims")
    return api, client, state


def test_prefetched_case_with_a_lapsing_lease_is_claimed_afresh(loop) -> None:
    api, client, state = loop
    api.add_cases(3)
    rv.ensure_case(client, state)
    rv.prefetch(client, state)
    soon = datetime.now(UTC) + timedelta(seconds=5)
    state[rv.PREFETCHED]["lease_expires_at"] = soon.isoformat()
    old_lease = state[rv.PREFETCHED]["lease_id"]
    rv.skip(client, state)
    assert [args[0] for args in api.called("release")] == ["c_2", "c_1"]
    assert state[rv.CURRENT]["case"]["id"] == "c_2"  # the same case, under a fresh lease
    assert state[rv.CURRENT]["lease_id"] != old_lease
    left = rv.seconds_left(state[rv.CURRENT]["lease_expires_at"])
    assert left is not None and left > rv.MIN_LEASE_SECONDS


def test_a_reloaded_page_resumes_the_cases_it_held(loop) -> None:
    """A probe reloaded the page: the case on screen and the prefetched one stayed leased
    to the reviewer, locked for ten minutes, and the queue read "held by others"."""
    api, client, state = loop
    api.add_cases(3)
    rv.ensure_case(client, state)
    rv.prefetch(client, state)
    held = dict(api.leases)
    reloaded: dict = {}  # a new browser session: nothing on screen
    rv.setup(reloaded)
    rv.switch_task(client, reloaded, "claims")
    rv.ensure_case(client, reloaded)
    rv.prefetch(client, reloaded)
    assert {reloaded[rv.CURRENT]["case"]["id"], reloaded[rv.PREFETCHED]["case"]["id"]} == set(held)
    assert reloaded[rv.CURRENT]["lease_id"] == held[reloaded[rv.CURRENT]["case"]["id"]]
    rv.submit_label(client, reloaded, "approve")  # the next one: the case that waited
    rv.prefetch(client, reloaded)
    assert reloaded[rv.PREFETCHED]["case"]["id"] == "c_3"


def test_the_api_passes_over_skipped_cases_however_many(loop) -> None:
    """The claim names the skipped cases; claiming past them one by one gave up after five
    and said "only cases you skipped are waiting" with 73 others in the queue (a probe)."""
    api, client, state = loop
    api.add_cases(12)
    state[rv.SKIPPED] |= {f"c_{i}" for i in range(1, 11)}
    rv.ensure_case(client, state)
    assert state[rv.CURRENT]["case"]["id"] == "c_11"
    assert api.called("release") == []
    assert set(api.leases) == {"c_11"}


def test_only_skipped_cases_left(loop) -> None:
    api, client, state = loop
    api.add_cases(1)
    state[rv.SKIPPED].add("c_1")
    rv.ensure_case(client, state)
    assert state[rv.CURRENT] is None and state[rv.EMPTY] and state[rv.ONLY_SKIPPED] == 1
    rv.review_skipped(client, state)
    assert state[rv.CURRENT]["case"]["id"] == "c_1"


def test_pending_case_keeps_its_lease_on_task_switch(loop) -> None:
    api, client, state = loop
    api.add_cases(2)
    rv.ensure_case(client, state)
    api.down = True
    rv.submit_label(client, state, "approve")
    assert state[rv.PENDING]["label"] == "approve"
    api.down = False
    rv.release_all(client, state)
    assert api.called("release") == []
    rv.send_pending(client, state)
    assert api.labels["c_1"][0] == "approve"


def test_correction_kept_through_an_outage(loop) -> None:
    api, client, state = loop
    api.add_cases(2)
    rv.ensure_case(client, state)
    rv.submit_label(client, state, "approve")
    api.down = True
    rv.correct_last(client, state, "reject")
    assert state[rv.PENDING]["action"] == "correct"
    assert "correction “reject” for case c_1 is kept" in state[rv.PENDING]["error"]
    api.down = False
    rv.send_pending(client, state)
    assert api.labels["c_1"][0] == "reject" and state[rv.PENDING] is None


def test_refused_correction_is_reported(loop) -> None:
    api, client, state = loop
    api.add_cases(1)
    rv.ensure_case(client, state)
    rv.submit_label(client, state, "approve")
    api.fail("correct", Forbidden(403, "only the reviewer who labelled a case may correct it"))
    rv.correct_last(client, state, "reject")
    assert state[rv.PENDING] is None
    assert state[rv.NOTICE] == (
        "error",
        "The correction was not accepted: only the reviewer who labelled a case may correct it",
    )


def test_invalid_label_keeps_the_case_on_screen(loop) -> None:
    api, client, state = loop
    api.add_cases(1)
    rv.ensure_case(client, state)
    api.fail("label", InvalidInput(422, [{"loc": ["body", "label"], "msg": "unknown label"}]))
    rv.submit_label(client, state, "maybe")
    assert state[rv.CURRENT]["case"]["id"] == "c_1"
    assert state[rv.NOTICE] == ("error", "The label was not accepted: label: unknown label")


@pytest.mark.parametrize(
    "error",
    [
        Unavailable(None, "cannot reach the tierline API (refused)"),
        Unavailable(503, "database busy"),
        RateLimited(429, "too many requests"),
    ],
    ids=["unreachable", "503", "429"],
)
def test_label_is_kept_while_the_api_cannot_take_it(loop, error: TierlineError) -> None:
    api, client, state = loop
    api.add_cases(2)
    rv.ensure_case(client, state)
    state[rv.COMMENT] = "photo attached"
    api.fail("label", error)
    rv.submit_label(client, state, "reject")
    pending = state[rv.PENDING]
    assert (pending["case_id"], pending["label"], pending["comment"]) == (
        "c_1",
        "reject",
        "photo attached",
    )
    assert "is kept and will be sent when you press Retry" in pending["error"]
    assert state[rv.CURRENT]["case"]["id"] == "c_1" and "c_1" not in api.labels
    rv.send_pending(client, state)
    assert api.labels["c_1"][0] == "reject" and state[rv.PENDING] is None
    assert api.called("label")[-1][-1] == "photo attached"


def test_a_label_held_for_other_answers_says_so(loop) -> None:
    """The first reviewer was not told that their label waits for another's (a probe)."""
    api, client, state = loop
    api.add_cases(2)
    api.held_for_a_second_opinion.add("c_1")
    rv.ensure_case(client, state)
    rv.submit_label(client, state, "approve")
    level, text = state[rv.NOTICE]
    assert level == "info" and "c_1" in text and "other answers" in text
    rv.submit_label(client, state, "approve")  # c_2 counts at once: no such notice
    assert state[rv.NOTICE] is None
