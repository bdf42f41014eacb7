import random
import time

import pytest

from tests.utils.factories import claims_case


def test_create_task_returns_settings_mode_and_automation(api):
    task = api.create_task(target_error=0.02)
    assert task["name"] == "claims"
    assert task["labels"] == ["approve", "reject"]
    assert task["target_error"] == 0.02
    assert task["mode"] == "assist" and task["automation"] == "on"
    assert task["features"]["amount"] == "number"


def test_a_task_created_with_automation_off_sends_every_case_to_people(api):
    """A task sent back as it was read (``automation`` included) was a 422."""
    task = api.create_task(automation="off", min_labels=0)
    assert task["automation"] == "off" and task["mode"] == "assist"
    case = api.send("claims", claims_case(random.Random(0))[0])
    assert case["route"] == "assist" and case["threshold"] is None
    assert "automation switched off by an admin" in case["reasons"]
    body = {"name": "bad", "labels": ["a", "b"], "automation": "maybe"}
    response = api.client.post("/v1/tasks", json=body, headers=api.admin)
    assert response.status_code == 422 and "automation" in response.text


def test_create_task_twice_is_409(api):
    api.create_task()
    again = api.client.post(
        "/v1/tasks", json={"name": "claims", "labels": ["a", "b"]}, headers=api.admin
    )
    assert again.status_code == 409


def test_task_name_and_labels_are_validated(api):
    bad = [
        ({"name": "Bad Name", "labels": ["a", "b"]}, "name"),
        ({"name": "ok", "labels": ["a"]}, "labels"),
        ({"name": "ok", "labels": ["a", "a"]}, "labels"),
        ({"name": "ok", "labels": ["a", "b"], "features": {"x": "colour"}}, "x"),
        ({"name": "ok", "labels": ["a", "b"], "target_error": 2}, "target_error"),
        ({"name": "ok", "labels": ["a", "b"], "target_error": "0.1"}, "target_error"),
        ({"name": "ok", "labels": ["a", "b"], "min_labels": True}, "min_labels"),
        ({"name": "ok", "labels": ["a", "b"], "labels_per_case": "2"}, "labels_per_case"),
    ]
    for body, field in bad:
        response = api.client.post("/v1/tasks", json=body, headers=api.admin)
        assert response.status_code == 422, body
        assert field in str(response.json()["detail"]), (body, response.text)
    assert api.client.get("/v1/tasks", headers=api.admin).json()["count"] == 0


def test_list_get_and_patch_task(api):
    api.create_task()
    assert api.client.get("/v1/tasks", headers=api.admin).json()["count"] == 1
    assert api.client.get("/v1/tasks/nope", headers=api.admin).status_code == 404
    patched = api.client.patch(
        "/v1/tasks/claims", json={"automation": "off", "threshold": 0.8}, headers=api.admin
    )
    assert patched.status_code == 200
    assert patched.json()["automation"] == "off" and patched.json()["threshold"] == 0.8
    assert api.client.get("/v1/tasks/claims", headers=api.admin).json()["threshold"] == 0.8


@pytest.mark.parametrize(
    "field, value",
    [("target_error", 1e-320), ("target_error", 5e-5), ("delta", 1e-300), ("audit_rate", 1e-320)],
)
def test_settings_below_their_floor_are_422_on_create_and_patch(api, field, value):
    """A target of 1e-320 once made the start-size search loop for ever in the leader's
    model-sync thread; such settings never reach the learner."""
    body = {"name": "tiny", "labels": ["a", "b"], field: value}
    created = api.client.post("/v1/tasks", json=body, headers=api.admin)
    assert created.status_code == 422 and field in created.text
    api.create_task()
    patched = api.client.patch("/v1/tasks/claims", json={field: value}, headers=api.admin)
    assert patched.status_code == 422 and field in patched.text
    assert api.client.get("/v1/tasks/claims", headers=api.admin).json()[field] == 0.05


def test_patch_rejects_unknown_field(api):
    api.create_task()
    response = api.client.patch("/v1/tasks/claims", json={"name": "x"}, headers=api.admin)
    assert response.status_code == 422


def test_features_inferred_from_first_case_then_fixed(api):
    response = api.client.post(
        "/v1/tasks", json={"name": "free", "labels": ["a", "b"]}, headers=api.admin
    )
    assert response.status_code == 201 and response.json()["features"] is None
    api.send("free", {"amount": 3.5, "country": "fr", "vip": False})
    task = api.client.get("/v1/tasks/free", headers=api.admin).json()
    assert task["features"] == {"amount": "number", "country": "category", "vip": "boolean"}
    wrong = api.client.post(
        "/v1/tasks/free/cases",
        json={"features": {"amount": "x", "country": "fr", "vip": False}},
        headers=api.as_("service"),
    )
    assert wrong.status_code == 422 and "amount" in wrong.text


def test_guardrail_rule_sends_matching_cases_to_a_person(api):
    api.create_task(
        min_labels=5, threshold=0.0, rules=[{"feature": "amount", "op": ">", "value": 10000}]
    )
    api.teach("claims", 20)
    small = api.send("claims", {"amount": 50, "country": "fr", "note": "x", "vip": False})
    large = api.send("claims", {"amount": 50000, "country": "fr", "note": "x", "vip": False})
    assert small["route"] == "auto"
    assert large["route"] == "assist" and "rule: amount > 10000" in large["reasons"]


def test_rule_values_are_cleaned_like_the_features_they_compare_with(api):
    """A category's integers are strings once validated; so are a rule's values."""
    api.create_task(
        "codes",
        features={"code": "category"},
        rules=[{"feature": "code", "op": "in", "value": [33, "x"]}],
    )
    matched = api.send("codes", {"code": 33})
    assert matched["route"] == "assist" and "rule: code in ['33', 'x']" in matched["reasons"]
    assert not any(r.startswith("rule:") for r in api.send("codes", {"code": 34})["reasons"])


def test_first_case_that_rules_cannot_compare_with_fixes_no_schema(api):
    """With features inferred, a rule ``amount > 100`` and a first case whose amount is a
    string: a 422 naming the rule, no schema fixed, and the task still takes numbers."""
    body = {
        "name": "guarded",
        "labels": ["a", "b"],
        "rules": [{"feature": "amount", "op": ">", "value": 100}],
    }
    assert api.client.post("/v1/tasks", json=body, headers=api.admin).status_code == 201
    one = {"features": {"amount": "lots"}}
    for path, body in [("cases", one), ("cases/batch", {"cases": [one]}), ("cases", one)]:
        wrong = api.client.post(f"/v1/tasks/guarded/{path}", json=body, headers=api.as_("service"))
        assert wrong.status_code == 422 and "rules[0]" in wrong.text, wrong.text
    assert api.client.get("/v1/tasks/guarded", headers=api.admin).json()["features"] is None
    assert api.send("guarded", {"amount": 500})["reasons"][0] == "rule: amount > 100"
    assert api.client.get("/v1/tasks/guarded", headers=api.admin).json()["features"] == {
        "amount": "number"
    }


def test_invalid_rules_are_422(api):
    for rule in (
        {"feature": "ghost", "op": ">", "value": 1},
        {"feature": "amount", "op": ">", "value": "big"},
        {"feature": "amount", "op": "~", "value": 1},
        {"feature": "country", "op": "in", "value": []},
        {"feature": "amount", "op": "==", "value": "big"},
        {"feature": "vip", "op": "==", "value": "yes"},
        {"feature": "amount", "op": "in", "value": ["a", "b"]},
        {"feature": "country", "op": "==", "value": 5.5},
        {"feature": "country", "op": ">", "value": 5},
        {"feature": "vip", "op": "in", "value": [{"a": 1}]},
        {"feature": "note", "op": "missing", "value": 3},
    ):
        response = api.client.post(
            "/v1/tasks",
            json={
                "name": "r",
                "labels": ["a", "b"],
                "features": {
                    "amount": "number",
                    "country": "category",
                    "vip": "boolean",
                    "note": {"type": "text", "required": False},
                },
                "rules": [rule],
            },
            headers=api.admin,
        )
        assert response.status_code == 422, rule
        assert "rules" in str(response.json()["detail"])


def test_automation_switched_off_on_another_process_holds_after_a_quiet_spell(
    settings, monkeypatch
):
    """The routing path reads task settings from a cache of ``TASK_TTL_SECONDS``; after
    a quiet spell it must not route the first case under the expired settings."""
    from fastapi.testclient import TestClient

    from api import live
    from api.main import create_app
    from tests.utils.factories import Api

    monkeypatch.setattr(live, "TASK_TTL_SECONDS", 0.2)
    with TestClient(create_app(settings)) as one, TestClient(create_app(settings)) as two:
        first = Api(one)
        first.create_task()
        case = {"features": {"amount": 5, "country": "fr", "note": "x", "vip": False}}

        def reasons_on_two() -> list[str]:
            sent = two.post("/v1/tasks/claims/cases", json=case, headers=first.as_("service"))
            return sent.json()["reasons"]

        assert "automation switched off by an admin" not in reasons_on_two()
        off = one.patch("/v1/tasks/claims", json={"automation": "off"}, headers=first.admin)
        assert off.status_code == 200
        time.sleep(0.4)
        assert reasons_on_two() == ["automation switched off by an admin"]


def test_a_task_stored_with_a_target_below_the_floor_can_be_mended(settings):
    """A target of 1e-320 stored before the floors existed: the service still starts and
    serves the other tasks, the bad task's calls say what is wrong, and a PATCH mends it."""
    from fastapi.testclient import TestClient
    from sqlalchemy import create_engine, text

    from api.main import create_app
    from tests.utils.factories import Api

    with TestClient(create_app(settings)) as client:
        api = Api(client)
        api.create_task("bad")
        api.create_task("good")
    engine = create_engine(settings.database_url)
    with engine.begin() as conn:
        conn.execute(text("update task set target_error = 1e-320 where name = 'bad'"))
    engine.dispose()
    with TestClient(create_app(settings)) as client:
        api = Api(client)
        case = {"amount": 5, "country": "fr", "note": "x", "vip": False}
        assert api.send("good", case)["route"] == "assist"
        refused = client.post(
            "/v1/tasks/bad/cases", json={"features": case}, headers=api.as_("service")
        )
        assert refused.status_code == 422 and "target_error" in refused.text
        mended = client.patch("/v1/tasks/bad", json={"target_error": 0.05}, headers=api.admin)
        assert mended.status_code == 200, mended.text
        assert api.send("bad", case)["route"] == "assist"


@pytest.mark.parametrize(
    ("features", "field", "why"),
    [
        ({"amount": "number", "\u0430mount": "number"}, "\u0430mount", "looks the same"),
        ({" lead": "number"}, " lead", "start or end with spaces"),
    ],
)
def test_feature_names_an_analyst_could_not_tell_apart_are_422(api, features, field, why):
    response = api.client.post(
        "/v1/tasks", json={"name": "look", "labels": ["a", "b"], "features": features},
        headers=api.admin,
    )  # fmt: skip
    assert response.status_code == 422 and why in response.text
    assert response.json()["detail"][0]["loc"] == ["body", "features", field]
    api.client.post(
        "/v1/tasks", json={"name": "inferred", "labels": ["a", "b"]}, headers=api.admin
    ).raise_for_status()
    first = api.client.post(  # the schema taken from a first case checks the same
        "/v1/tasks/inferred/cases", json={"features": dict.fromkeys(features, 1)},
        headers=api.admin,
    )  # fmt: skip
    assert first.status_code == 422 and why in first.text



@pytest.mark.parametrize(
    ("labels", "why"),
    [
        (["a", "a"], "look different"),
        (["é", "e\u0301"], "look different"),  # one letter written two ways
        (["\ufb01x", "fix"], "look different"),  # a ligature: "ﬁx"
        (["a", "\u0430"], "look different"),  # a Cyrillic "а"
        (["a", "a\u200b"], "U+200B"),  # a zero-width space
        (["\u202egnp.exe", "ok"], "U+202E"),  # shows as "exe.png"
        (["ok\nlater", "no"], "U+000A"),
        ([" a", "a"], "spaces"),
    ],
)
def test_labels_a_reviewer_could_not_tell_apart_are_422(api, labels, why):
    response = api.client.post(
        "/v1/tasks", json={"name": "look", "labels": labels}, headers=api.admin
    )
    assert response.status_code == 422 and why in response.text
    assert response.json()["detail"][0]["loc"] == ["body", "labels"]


@pytest.mark.parametrize("value", ["NaN", "Infinity", "-Infinity", "1e200", "[NaN]"])
def test_a_rule_value_no_feature_can_hold_is_422(api, value):
    """A NaN rule value was stored as null and then refused every case of the task."""
    op = "in" if value.startswith("[") else ">"
    body = (
        '{"name": "nanrule", "labels": ["a", "b"], "features": {"amount": "number"}, '
        f'"rules": [{{"feature": "amount", "op": "{op}", "value": {value}}}]}}'
    )
    headers = {**api.admin, "Content-Type": "application/json"}
    response = api.client.post("/v1/tasks", content=body, headers=headers)
    assert response.status_code == 422 and "rules[0]" in response.text


def test_rules_can_be_changed_and_hold_from_the_next_case(api):
    api.create_task(
        min_labels=5, threshold=0.0, rules=[{"feature": "amount", "op": ">", "value": 10000}]
    )
    api.teach("claims", 20)
    small = {"amount": 50, "country": "fr", "note": "x", "vip": False}
    assert api.send("claims", small)["route"] == "auto"
    new = [{"feature": "amount", "op": ">", "value": 10}]
    patched = api.client.patch("/v1/tasks/claims", json={"rules": new}, headers=api.admin)
    assert patched.status_code == 200 and patched.json()["rules"][0]["value"] == 10
    guarded = api.send("claims", small)
    assert guarded["route"] == "assist" and "rule: amount > 10" in guarded["reasons"]
    wrong = [{"feature": "amount", "op": "==", "value": "big"}]
    refused = api.client.patch("/v1/tasks/claims", json={"rules": wrong}, headers=api.admin)
    assert refused.status_code == 422 and "rules[0]" in refused.text
    cleared = api.client.patch("/v1/tasks/claims", json={"rules": []}, headers=api.admin)
    assert cleared.status_code == 200 and api.send("claims", small)["route"] == "auto"
    changes = api.client.get(
        "/v1/audit", params={"task": "claims", "action": "task.changed"}, headers=api.admin
    ).json()["data"]
    assert [c["after"]["rules"] for c in changes] == [[], new]  # newest first


def test_a_case_a_rule_sends_to_a_person_is_not_called_an_audit_sample(api):
    api.create_task(
        min_labels=5,
        threshold=0.0,
        audit_rate=1.0,  # every automated decision audited
        rules=[{"feature": "amount", "op": ">", "value": 10000}],
    )
    api.teach("claims", 20)
    large = api.send("claims", {"amount": 50000, "country": "fr", "note": "x", "vip": False})
    assert large["route"] == "assist" and not large["audit"] and large["propensity"] == 1.0
    assert not any(r.startswith("audit sample") for r in large["reasons"])


@pytest.mark.parametrize("setting", ["min_labels", "audit_rate", "target_error", "automation"])
def test_a_setting_sent_as_null_is_422_naming_it_not_ignored(api, setting):
    api.create_task()
    response = api.client.patch("/v1/tasks/claims", json={setting: None}, headers=api.admin)
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", setting]


def test_the_openapi_schema_of_a_settings_patch_offers_no_null(client):
    """What the server refuses is not offered: schema-driven clients never send null."""
    update = client.get("/openapi.json").json()["components"]["schemas"]["TaskUpdate"]
    assert update["properties"]  # every setting, none of them nullable nor required
    for name, prop in update["properties"].items():
        assert "null" not in str(prop) and "default" not in prop, name
    assert update["properties"]["target_error"]["type"] == "number"
    assert not update.get("required")


def test_the_leader_never_applies_a_task_row_older_than_the_settings_it_follows(api):
    """The leader's poll may read a task row just before a settings change commits; that
    stale row must not undo the change (PostgreSQL showed the old target for a poll)."""
    from sqlmodel import select

    from api.tables import Task

    api.create_task(threshold_policy="certified", target_error=0.05)
    state = api.client.app.state.tierline
    with state.db.read() as session:
        stale = session.exec(select(Task).where(Task.name == "claims")).one()
    patched = api.client.patch("/v1/tasks/claims", json={"target_error": 0.1}, headers=api.admin)
    assert patched.status_code == 200
    live = state.store.get(state.store.tasks.get("claims"))
    assert live.governor.target_error == 0.1
    assert state.store.align_settings(live, stale) is False
    assert live.governor.target_error == 0.1
