"""Webhooks: signed events from the outbox, retried, in order per case, never in the way."""

from __future__ import annotations

import itertools
import random
import threading
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from api.client import verify_webhook
from api.main import create_app
from api.settings import Settings
from tests.utils.factories import Api, claims_case
from tests.utils.receiver import WebhookReceiver

FAST = {
    "webhook_backoff_seconds": 0.05,
    "webhook_max_backoff_seconds": 0.2,
    "webhook_poll_seconds": 0.05,
}


@pytest.fixture
def hook_settings(settings: Settings) -> Settings:
    return settings.model_copy(update=FAST)


@pytest.fixture
def hook_api(hook_settings: Settings) -> Iterator[Api]:
    with TestClient(create_app(hook_settings)) as client:
        yield Api(client)


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    with WebhookReceiver() as running:
        yield running


def small_task(api: Api, **settings) -> dict:
    """Fixed threshold 0: after two labels every case is decided automatically and audited."""
    return api.create_task(
        min_labels=2, threshold=0.0, audit_rate=1.0, threshold_policy="fixed", **settings
    )


def set_hook(api: Api, url: str, events: list[str] | None = None, task: str = "claims") -> dict:
    body: dict = {"url": url}
    if events is not None:
        body["events"] = events
    response = api.client.put(f"/v1/tasks/{task}/webhook", json=body, headers=api.admin)
    assert response.status_code == 200, response.text
    return response.json()


SEEDS = itertools.count()


def decide_pending(api: Api, label: str = "approve") -> str:
    """Send a case that waits for a person, and label it; its id."""
    case = api.send("claims", claims_case(random.Random(next(SEEDS)))[0])
    assert case["status"] == "pending"
    claim = api.claim("claims")
    assert claim is not None and claim["case"]["id"] == case["id"]
    assert api.label(claim, label).status_code == 200
    return case["id"]


def of_case(receiver: WebhookReceiver, case_id: str) -> list[str]:
    """Event types delivered for a case, first delivery of each event only, in order."""
    seen, types = set(), []
    for request in receiver.delivered():
        event = request.event
        if event["data"].get("case", {}).get("id") == case_id and event["id"] not in seen:
            seen.add(event["id"])
            types.append(event["type"])
    return types


def test_webhook_settings_are_admin_only_and_checked(hook_api: Api) -> None:
    small_task(hook_api)
    url = "/v1/tasks/claims/webhook"
    body = {"url": "http://127.0.0.1:9/hook"}
    for role in ("service", "reviewer", "analyst"):
        assert hook_api.client.put(url, json=body, headers=hook_api.as_(role)).status_code == 403
        assert (
            hook_api.client.get(f"{url}/deliveries", headers=hook_api.as_(role)).status_code == 403
        )
    assert hook_api.client.get(url, headers=hook_api.admin).status_code == 404
    for wrong in ("ftp://x/y", "ftp://x"):  # short or not: the message says what is wanted
        bad = hook_api.client.put(url, json={"url": wrong}, headers=hook_api.admin)
        assert bad.status_code == 422 and bad.json()["detail"][0]["loc"][-1] == "url"
        assert "http:// or https:// URL" in bad.json()["detail"][0]["msg"]
    injected = "http://127.0.0.1:9/x\r\nX-Injected: 1"
    bad = hook_api.client.put(url, json={"url": injected}, headers=hook_api.admin)
    assert bad.status_code == 422 and "line breaks" in bad.json()["detail"][0]["msg"]
    bad = hook_api.client.put(url, json={**body, "events": ["case.eaten"]}, headers=hook_api.admin)
    assert bad.status_code == 422
    assert (
        hook_api.client.put("/v1/tasks/nope/webhook", json=body, headers=hook_api.admin).status_code
        == 404
    )
    hook = set_hook(hook_api, body["url"])
    assert hook["events"] == [
        "case.decided",
        "case.corrected",
        "audit.disagreed",
        "task.mode_changed",
        "case.feedback",
    ]
    assert hook_api.client.get(url, headers=hook_api.admin).json()["url"] == body["url"]
    assert hook_api.client.delete(url, headers=hook_api.admin).status_code == 204
    assert hook_api.client.get(url, headers=hook_api.admin).status_code == 404


def event_statuses(api: Api) -> list[str]:
    """The statuses of the task's webhook events, newest first, as admins see them."""
    events = api.client.get("/v1/tasks/claims/webhook/events", headers=api.admin).json()
    return [e["status"] for e in events["data"]]


def test_the_audit_trail_keeps_no_token_of_a_webhook_url(hook_api: Api) -> None:
    small_task(hook_api)
    url = "https://bot:s3cret@hooks.example/in?token=tokvxyz"  # no hex: rows hold hashes
    set_hook(hook_api, url, ["case.decided"])
    rows = hook_api.client.get(
        "/v1/audit", params={"action": "webhook.set"}, headers=hook_api.as_("analyst")
    ).json()["data"]
    assert rows and rows[0]["after"]["url"] == "https://***@hooks.example/in?***"
    assert "s3cret" not in str(rows) and "tokvxyz" not in str(rows)
    shown = hook_api.client.get("/v1/tasks/claims/webhook", headers=hook_api.admin).json()
    assert shown["url"] == url  # admins still read the URL they set


def test_a_webhook_secret_of_its_own_keeps_the_snapshot_key_from_receivers(
    hook_settings: Settings, receiver: WebhookReceiver
) -> None:
    """With TIERLINE_WEBHOOK_SECRET set, deliveries are signed with it: a receiver cannot
    sign a model snapshot (which the API unpickles)."""
    own = hook_settings.model_copy(update={"webhook_secret": "for-receivers-only"})
    with TestClient(create_app(own)) as client:
        api = Api(client)
        small_task(api)
        set_hook(api, receiver.url, ["case.decided"])
        decide_pending(api, "reject")
        receiver.wait_for(lambda r: len(r.delivered()) == 1)
    request = receiver.delivered()[0]
    header = request.headers["Tierline-Signature"]
    assert verify_webhook(request.body, header, b"for-receivers-only")
    assert not verify_webhook(request.body, header, own.signing_secret)


def test_each_webhook_signs_with_a_secret_of_its_own_that_an_admin_can_rotate(
    hook_api: Api, receiver: WebhookReceiver
) -> None:
    """A receiver verifies with its webhook's secret, never a server secret; another
    task's secret does not verify it, and a rotated secret replaces the old one."""
    small_task(hook_api)
    hook_api.create_task(name="other")
    first = set_hook(hook_api, receiver.url, ["case.decided"])
    other = set_hook(hook_api, "https://other.example/in", task="other")
    assert first["secret"].startswith("whsec_") and other["secret"].startswith("whsec_")
    assert first["secret"] != other["secret"]
    shown = hook_api.client.get("/v1/tasks/claims/webhook", headers=hook_api.admin).json()
    again = set_hook(hook_api, receiver.url, ["case.decided"])
    assert shown["secret"] == first["secret"] == again["secret"]
    trail = hook_api.client.get(
        "/v1/audit", params={"action": "webhook.set"}, headers=hook_api.admin
    ).json()["data"]
    assert first["secret"] not in str(trail)

    decide_pending(hook_api, "reject")
    receiver.wait_for(lambda r: len(r.delivered()) == 1)
    request = receiver.delivered()[0]
    own = request.headers["Tierline-Webhook-Signature"]
    assert verify_webhook(request.body, own, first["secret"])
    assert not verify_webhook(request.body, own, other["secret"])

    rotated = hook_api.client.put(
        "/v1/tasks/claims/webhook",
        json={"url": receiver.url, "events": ["case.decided"], "rotate_secret": True},
        headers=hook_api.admin,
    ).json()["secret"]
    assert rotated.startswith("whsec_") and rotated != first["secret"]
    decide_pending(hook_api, "approve")
    receiver.wait_for(lambda r: len(r.delivered()) == 2)
    request = receiver.delivered()[1]
    own = request.headers["Tierline-Webhook-Signature"]
    assert verify_webhook(request.body, own, rotated)
    assert not verify_webhook(request.body, own, first["secret"])


def test_decided_case_is_delivered_signed_after_failed_attempts(
    hook_api: Api, hook_settings: Settings, receiver: WebhookReceiver
) -> None:
    small_task(hook_api)
    set_hook(hook_api, receiver.url, ["case.decided"])
    receiver.fail_first = 2
    case_id = decide_pending(hook_api, "reject")
    receiver.wait_for(lambda r: len(r.delivered()) == 1)
    # the outbox records the delivery just after the receiver has answered
    receiver.wait_for(lambda r: event_statuses(hook_api) == ["delivered"])

    attempts = receiver.requests
    assert [r.status for r in attempts] == [500, 500, 200]
    assert len({r.headers["Tierline-Event-Id"] for r in attempts}) == 1  # the same event
    assert [r.headers["Tierline-Delivery-Attempt"] for r in attempts] == ["1", "2", "3"]
    assert len({r.body for r in attempts}) == 1  # the body never changes: receivers dedupe
    secret = hook_settings.signing_secret
    for request in attempts:
        assert verify_webhook(request.body, request.headers["Tierline-Signature"], secret)
        assert not verify_webhook(request.body, request.headers["Tierline-Signature"], b"wrong")
    event = attempts[-1].event
    assert event["type"] == "case.decided" and event["task"] == "claims"
    assert event["data"]["case"]["id"] == case_id
    assert event["data"]["case"]["decision"] == "reject"
    assert event["data"]["case"]["label"] == "reject"
    assert event["data"]["case"]["status"] == "decided"

    # attempts are recorded and visible to admins
    events = hook_api.client.get("/v1/tasks/claims/webhook/events", headers=hook_api.admin).json()
    assert [(e["type"], e["status"], e["attempts"]) for e in events["data"]] == [
        ("case.decided", "delivered", 3)
    ]
    deliveries = hook_api.client.get(
        "/v1/tasks/claims/webhook/deliveries", headers=hook_api.admin
    ).json()["data"]
    assert [(d["attempt"], d["ok"], d["status_code"]) for d in reversed(deliveries)] == [
        (1, False, 500),
        (2, False, 500),
        (3, True, 200),
    ]
    # the status only: what a receiver answers ("ok" here) is never shown (a probe read an
    # internal service's answers through the error of a webhook pointed at it)
    assert deliveries[-1]["error"] == "HTTP 500 Internal Server Error"


def test_events_of_a_case_arrive_in_order_despite_retries(
    hook_api: Api, receiver: WebhookReceiver
) -> None:
    small_task(hook_api)
    set_hook(hook_api, receiver.url)
    receiver.fail_first = 3
    case_id = decide_pending(hook_api, "approve")
    reviewer = hook_api.as_("reviewer", "test-reviewer")
    for label in ("reject", "approve", "reject"):
        response = hook_api.client.post(
            f"/v1/cases/{case_id}/correct", json={"label": label}, headers=reviewer
        )
        assert response.status_code == 200
    receiver.wait_for(lambda r: len(of_case(r, case_id)) == 4)
    assert of_case(receiver, case_id) == [
        "case.decided",
        "case.corrected",
        "case.corrected",
        "case.corrected",
    ]
    labels = [
        r.event["data"]["case"]["label"]
        for r in receiver.delivered()
        if r.event["data"].get("case", {}).get("id") == case_id
    ]
    assert labels == ["approve", "reject", "approve", "reject"]


def test_mode_changes_audit_disagreements_and_feedback_are_announced(
    hook_api: Api, receiver: WebhookReceiver
) -> None:
    small_task(hook_api)
    set_hook(hook_api, receiver.url)
    decide_pending(hook_api)
    decide_pending(hook_api)  # the second label ends the cold start: automated
    receiver.wait_for(lambda r: any(x.event["type"] == "task.mode_changed" for x in r.delivered()))
    changed = [x.event for x in receiver.delivered() if x.event["type"] == "task.mode_changed"]
    assert changed[0]["data"]["mode"] == "automated"
    assert changed[0]["data"]["previous_mode"] == "assist"

    case = hook_api.send("claims", {"amount": 10.0, "country": "fr", "note": "x", "vip": True})
    assert case["route"] == "auto" and case["audit"]
    claim = hook_api.claim("claims")
    wrong = "reject" if case["decision"] == "approve" else "approve"
    assert hook_api.label(claim, wrong).status_code == 200
    feedback = hook_api.client.post(
        f"/v1/cases/{case['id']}/feedback",
        json={"label": wrong, "source": "chargebacks"},
        headers=hook_api.as_("service"),
    )
    assert feedback.status_code == 201
    receiver.wait_for(lambda r: len(of_case(r, case["id"])) == 2)
    assert of_case(receiver, case["id"]) == ["audit.disagreed", "case.feedback"]
    disagreed = next(x.event for x in receiver.delivered() if x.event["type"] == "audit.disagreed")
    assert disagreed["data"]["automated_decision"] == case["decision"]
    assert disagreed["data"]["audit_label"] == wrong
    fed = next(x.event for x in receiver.delivered() if x.event["type"] == "case.feedback")
    assert fed["data"]["feedback"]["source"] == "chargebacks"
    assert fed["data"]["feedback"]["agrees"] is False

    response = hook_api.client.patch(
        "/v1/tasks/claims", json={"automation": "off"}, headers=hook_api.admin
    )
    assert response.status_code == 200
    receiver.wait_for(
        lambda r: sum(x.event["type"] == "task.mode_changed" for x in r.delivered()) == 2
    )
    changed = [x.event for x in receiver.delivered() if x.event["type"] == "task.mode_changed"]
    assert (changed[1]["data"]["previous_mode"], changed[1]["data"]["mode"]) == (
        "automated",
        "assist",
    )
    assert "automation switched off" in changed[1]["data"]["reason"]


def test_a_hung_receiver_never_holds_up_cases_or_labels(
    settings: Settings, receiver: WebhookReceiver
) -> None:
    hung = settings.model_copy(update={**FAST, "webhook_timeout_seconds": 30})
    receiver.gate = threading.Event()  # every answer waits until the gate opens
    with TestClient(create_app(hung)) as client:
        api = Api(client)
        small_task(api)
        set_hook(api, receiver.url)
        decide_pending(api)
        receiver.wait_for(lambda r: r.arrived == 1)
        # the receiver holds the first delivery; cases and labels go on meanwhile
        rng = random.Random(1)
        for _ in range(20):
            assert api.send("claims", claims_case(rng)[0])["status"] == "pending"
        for _ in range(5):
            assert api.label(api.claim("claims"), "approve").status_code == 200
        assert receiver.delivered() == []
        receiver.gate.set()
        receiver.wait_for(lambda r: len(r.delivered()) >= 2)


def test_event_filter_delete_cancels_and_failed_events_can_be_retried(
    settings: Settings, receiver: WebhookReceiver
) -> None:
    brief = settings.model_copy(update={**FAST, "webhook_retry_seconds": 0.3})
    with TestClient(create_app(brief)) as client:
        api = Api(client)
        small_task(api)
        set_hook(api, receiver.url, ["task.mode_changed"])
        decide_pending(api)  # case.decided is not subscribed
        decide_pending(api)  # -> automated: subscribed
        receiver.wait_for(lambda r: len(r.delivered()) == 1)
        assert receiver.delivered()[0].event["type"] == "task.mode_changed"

        # a receiver that keeps failing past the retry window: the event fails ...
        receiver.fail_first = 10_000
        api.client.patch("/v1/tasks/claims", json={"automation": "off"}, headers=api.admin)
        events_url = "/v1/tasks/claims/webhook/events"

        def status() -> str:
            return api.client.get(events_url, headers=api.admin).json()["data"][0]["status"]

        receiver.wait_for(lambda r: status() == "failed")
        # ... and an admin sends it again once the receiver is back
        receiver.fail_first = 0
        failed = api.client.get(events_url, headers=api.admin).json()["data"][0]
        retried = api.client.post(f"{events_url}/{failed['id']}/retry", headers=api.admin)
        assert retried.status_code == 200 and retried.json()["status"] == "pending"
        # it happened when it happened: a retry restarts the retry window, not its time
        assert retried.json()["created_at"] == failed["created_at"]
        receiver.wait_for(lambda r: len(r.delivered()) == 2)
        receiver.wait_for(lambda r: status() == "delivered")  # recorded just after the answer
        trail = api.client.get("/v1/audit?action=webhook.retried", headers=api.admin).json()
        assert [row["after"] for row in trail["data"]] == [{"event": failed["id"]}]
        again = api.client.post(f"{events_url}/{failed['id']}/retry", headers=api.admin)
        assert again.status_code == 200 and again.json()["status"] == "delivered"

        # removing the webhook cancels what is still pending
        receiver.fail_first = 10_000
        api.client.patch("/v1/tasks/claims", json={"automation": "on"}, headers=api.admin)
        receiver.wait_for(lambda r: len(r.requests) > 0 and status() == "pending")
        assert api.client.delete("/v1/tasks/claims/webhook", headers=api.admin).status_code == 204
        assert status() == "cancelled"


@pytest.mark.parametrize("event", ["evt_9223372036854775808", "evt_" + "9" * 30, "evt_\uff11"])
def test_an_event_id_no_event_can_have_is_404_not_500(hook_api, event):
    small_task(hook_api)
    base = "/v1/tasks/claims/webhook"
    listed = hook_api.client.get(
        f"{base}/deliveries", params={"event": event}, headers=hook_api.admin
    )
    retried = hook_api.client.post(f"{base}/events/{event}/retry", headers=hook_api.admin)
    assert (listed.status_code, retried.status_code) == (404, 404)
