"""Point 6 against the real API: the review page with the real client over the real app.

The fake API in ``conftest.py`` mimics the server; here the page talks to the actual
FastAPI app (in process, on a temporary SQLite file) through ``api.client``, so expired
leases, 409s and lost connections behave exactly as they do in production.
"""

from __future__ import annotations

import random
import re
import time

import httpx
import pytest
from streamlit.testing.v1 import AppTest

from api.client import TierlineClient
from review_ui import reviewing as rv
from review_ui import session
from tests.review_ui.conftest import APP, TIMEOUT
from tests.review_ui.test_review_page import button
from tests.utils.factories import claims_case


class FlakyTransport(httpx.BaseTransport):
    """The app's transport, with a switch for the network between the UI and the API.

    ``mode``: ``"up"``; ``"down"`` (nothing reaches the API); ``"lose replies"`` (the API
    acts on the request but the answer never arrives).
    """

    def __init__(self, inner: httpx.BaseTransport) -> None:
        self.inner, self.mode = inner, "up"

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if self.mode == "down":
            raise httpx.ConnectError("connection refused", request=request)
        response = self.inner.handle_request(request)
        if self.mode == "lose replies":
            response.read()
            raise httpx.ReadTimeout("timed out", request=request)
        return response


@pytest.fixture
def network(client, monkeypatch) -> FlakyTransport:
    """Point the UI's client factory at the in-process app, through a flaky network."""
    transport = FlakyTransport(client._transport)

    def make_client(key: str) -> TierlineClient:
        tl = TierlineClient("http://testserver", key, max_retries=1, transport=transport)
        tl.backoff_base = 0.001
        return tl

    monkeypatch.setattr(session, "make_client", make_client)
    return transport


@pytest.fixture
def rita(api, network) -> AppTest:
    """Reviewer "rita" signed in, with three claims cases waiting."""
    api.create_task()
    rng = random.Random(5)
    for _ in range(3):
        api.send("claims", claims_case(rng)[0])
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    key = api.key("reviewer", "rita")
    at.session_state[session.KEY] = key
    at.session_state[session.ME] = api.client.get(
        "/v1/me", headers={"Authorization": f"Bearer {key}"}
    ).json()
    return at


def on_screen(at: AppTest) -> str | None:
    """The id of the case shown, read from the page."""
    for block in at.markdown:
        match = re.search(r"-badge\[.*\] &nbsp; `(c_[0-9a-f]+)`", block.value)
        if match:
            return match.group(1)
    return None


def case(api, case_id: str) -> dict:
    return api.client.get(f"/v1/cases/{case_id}", headers=api.admin).json()


def model_version(api) -> int:
    return api.client.get("/v1/tasks/claims", headers=api.admin).json()["model_version"]


def expire_leases_then_let_bob_claim(api, client, run) -> dict:
    """Run ``run`` with 50 ms leases, let them lapse, then another reviewer claims."""
    settings = client.app.state.tierline.settings
    settings.lease_seconds = 0.05
    try:
        run()
    finally:
        settings.lease_seconds = 600
    time.sleep(0.1)
    return api.claim("claims", "bob")


def test_expired_lease_taken_by_another_reviewer_is_said_plainly(rita, api, client) -> None:
    at = rita
    bob = expire_leases_then_let_bob_claim(api, client, at.run)
    lost = on_screen(at)
    assert bob["case"]["id"] == lost  # the most useful case went to bob

    button(at, "1 · approve").click().run()
    assert not at.exception
    assert at.warning[0].value == rv.CONFLICT_MESSAGE.format(case_id=lost, label="approve")
    assert on_screen(at) not in (None, lost)  # the next case, at once
    assert at.session_state[rv.PENDING] is None and at.session_state[rv.COUNT] == 0
    assert case(api, lost)["label"] is None
    assert api.label(bob, "reject", "bob").status_code == 200  # bob's lease is untouched


def test_outage_keeps_the_label_and_retry_sends_it(rita, api, network) -> None:
    at = rita.run()
    first = on_screen(at)
    network.mode = "down"
    button(at, "2 · reject").click().run()
    assert not at.exception
    assert "cannot be reached" in at.error[0].value
    assert "“reject” for case" in at.error[0].value and "press Retry" in at.error[0].value
    assert on_screen(at) == first
    assert case(api, first)["label"] is None

    at.run()  # an unrelated rerun (e.g. a fragment tick) keeps it
    assert at.session_state[rv.PENDING]["label"] == "reject"

    network.mode = "up"
    button(at, "Retry").click().run()
    assert not at.exception and not at.error
    stored = case(api, first)
    assert (stored["label"], stored["labelled_by"]) == ("reject", "rita")
    assert on_screen(at) not in (None, first)


def test_lost_reply_is_retried_without_labelling_twice(rita, api, network) -> None:
    at = rita.run()
    first = on_screen(at)
    network.mode = "lose replies"  # the API records the label; the answer is lost
    button(at, "1 · approve").click().run()
    assert at.session_state[rv.PENDING]["label"] == "approve"
    assert case(api, first)["label"] == "approve"

    network.mode = "up"
    button(at, "Retry").click().run()  # the same call again: the API answers as before
    assert not at.exception and not at.error
    assert at.session_state[rv.COUNT] == 1
    assert model_version(api) == 1  # learned once
    assert on_screen(at) not in (None, first)


def test_outage_outlasting_the_lease_ends_in_a_plain_conflict(rita, api, client, network):
    at = rita

    def label_during_outage() -> None:
        at.run()
        network.mode = "down"
        button(at, "2 · reject").click().run()

    bob = expire_leases_then_let_bob_claim(api, client, label_during_outage)
    lost = bob["case"]["id"]
    assert at.session_state[rv.PENDING]["case_id"] == lost

    network.mode = "up"
    button(at, "Retry").click().run()
    assert not at.exception
    assert at.warning[0].value == rv.CONFLICT_MESSAGE.format(case_id=lost, label="reject")
    assert on_screen(at) not in (None, lost)
    assert case(api, lost)["label"] is None and at.session_state[rv.COUNT] == 0


def test_overlap_cases_are_reviewed_as_usual_and_never_come_back(rita, api) -> None:
    """Label quality: with two opinions a case, rita's labels are opinions; she never sees
    a case twice, and bob's agreeing labels make them final."""
    api.client.patch("/v1/tasks/claims", json={"labels_per_case": 2}, headers=api.admin)
    at = rita.run()
    seen = []
    while (shown := on_screen(at)) is not None:
        assert shown not in seen
        seen.append(shown)
        button(at, "2 · reject").click().run()
        assert not at.exception and not at.warning and not at.error
    assert len(seen) == 3 and at.session_state[rv.COUNT] == 3
    assert "Nothing is waiting" in at.success[0].value
    assert model_version(api) == 0  # opinions, not yet labels
    while (claim := api.claim("claims", "bob")) is not None:
        assert api.label(claim, "reject", "bob").status_code == 200
    assert model_version(api) == 3
    assert {case(api, c)["label"] for c in seen} == {"reject"}
