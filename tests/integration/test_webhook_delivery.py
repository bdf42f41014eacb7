"""Webhooks from a real server: retried, in order per case, signed, and nothing lost when the
server is killed (-9) with events still undelivered."""

from __future__ import annotations

import random
import time

import pytest

from api.client import TierlineClient, verify_webhook
from tests.utils.factories import ADMIN_KEY, CLAIMS_FEATURES, claims_case
from tests.utils.receiver import WebhookReceiver
from tests.utils.server import ServerProcess

pytestmark = pytest.mark.slow
SECRET = "webhook-test-secret"


def wait_until(condition, timeout: float = 30) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.1)


def test_events_survive_a_kill_9_and_arrive_in_order_per_case(fresh_database_url, tmp_path):
    env = {
        "TIERLINE_DATABASE_URL": fresh_database_url(),
        "TIERLINE_ADMIN_KEY": ADMIN_KEY,
        "TIERLINE_ENV": "dev",
        "TIERLINE_SECRET": SECRET,
        "TIERLINE_WEBHOOK_BACKOFF_SECONDS": "0.2",
        "TIERLINE_WEBHOOK_MAX_BACKOFF_SECONDS": "0.5",
        "TIERLINE_WEBHOOK_POLL_SECONDS": "0.1",
    }
    server = ServerProcess(env, log=tmp_path / "server.log").start()
    with WebhookReceiver(fail_first=10**6) as receiver:  # down until we say so
        try:
            admin = TierlineClient(server.url, ADMIN_KEY, max_retries=20)
            admin.create_task(
                "claims",
                ["approve", "reject"],
                CLAIMS_FEATURES,
                min_labels=3,
                threshold=0.0,
                audit_rate=1.0,
                threshold_policy="fixed",
            )
            admin.set_webhook("claims", receiver.url)
            reviewer = TierlineClient(server.url, admin.create_key("rev", "reviewer")["key"])
            rng = random.Random(0)
            cases = [admin.send_case("claims", claims_case(rng)[0])["id"] for _ in range(4)]
            for _ in cases:  # 4 x case.decided, then corrections of each, in turn
                claim = reviewer.claim("claims")
                assert claim is not None
                reviewer.label(claim["case"]["id"], "approve", claim["lease_id"])
            for case_id in cases:
                reviewer.correct(case_id, "reject")
            for case_id in cases[:2]:
                reviewer.correct(case_id, "approve")
            wait_until(lambda: receiver.arrived >= 4)  # attempts are failing meanwhile
            expected = admin.webhook_events("claims", limit=1000)
            assert len(expected) == 4 + 4 + 2 + 1  # and one task.mode_changed
            assert all(e["status"] == "pending" for e in expected)

            server.kill()  # kill -9 with every event undelivered
            receiver.fail_first = 3  # the receiver comes back, still flaky
            server.start()
            admin = TierlineClient(server.url, ADMIN_KEY, max_retries=20)
            # an attempt in flight at the kill keeps its event leased until the lease runs
            # out (webhook timeout 5 s + LOCK_GRACE_SECONDS 30 s): wait past that
            wait_until(
                lambda: all(
                    e["status"] == "delivered" for e in admin.webhook_events("claims", limit=1000)
                ),
                timeout=60,
            )
        finally:
            server.stop()

    delivered = receiver.delivered()
    ids = {e["id"] for e in expected}
    assert {r.headers["Tierline-Event-Id"] for r in delivered} == ids  # nothing lost
    for request in receiver.requests:
        assert verify_webhook(request.body, request.headers["Tierline-Signature"], SECRET)
        assert request.headers["Tierline-Event-Id"] == request.event["id"]
    for case_id in cases:  # in order per case: event ids ascend, labels follow the log
        firsts: dict[str, dict] = {}
        for request in delivered:
            event = request.event
            if event["data"].get("case", {}).get("id") == case_id:
                firsts.setdefault(event["id"], event)
        order = [int(i.removeprefix("evt_")) for i in firsts]
        assert order == sorted(order)
        labels = [e["data"]["case"]["label"] for e in firsts.values()]
        want = ["approve", "reject", "approve"] if case_id in cases[:2] else ["approve", "reject"]
        assert labels == want
    failures = [r for r in receiver.requests if r.status == 500]
    assert len(failures) >= 4 + 3  # retried before the kill, and after it
