"""Admin page: tasks, the automation switch, keys and threshold history."""

from __future__ import annotations

import pytest

from api.client import InvalidInput


@pytest.fixture
def admin(app, fake_api):
    at = app("admin").run()
    return at.switch_page("views/admin.py").run()


def form_button(at, label: str):
    return next(b for b in at.button if b.label == label)


def test_admin_page_renders(admin, fake_api) -> None:
    assert not admin.exception
    assert admin.title[0].value == "Admin"
    assert [t.label for t in admin.tabs] == ["Tasks", "Keys", "Threshold history"]
    assert list(admin.dataframe[0].value["task"]) == ["claims"]


def test_admin_creates_a_key_and_shows_it_once(admin, fake_api) -> None:
    at = admin
    name = next(t for t in at.text_input if t.label == "Key name")
    name.input("alice")
    next(s for s in at.selectbox if s.label == "Role").select("reviewer")
    form_button(at, "Create key").click().run()
    assert not at.exception
    assert fake_api.called("create_key") == [("alice", "reviewer")]
    secret = [c.value for c in at.code]
    assert secret == ["tl_secret_k_5"]
    assert "it will not be shown again" in at.warning[0].value
    assert "alice" in list(at.dataframe[1].value["name"])  # the list already has it
    at.run()
    assert not at.code  # gone on the next rerun
    assert "tl_secret_k_5" not in repr(at.session_state)  # and never kept


def test_admin_creates_a_task(admin, fake_api) -> None:
    at = admin
    next(t for t in at.text_input if t.label == "Name").input("emails")
    next(t for t in at.text_input if t.label == "Labels").input("spam, ham,\nphishing")
    next(t for t in at.text_area if t.label.startswith("Features")).input(
        '{"subject": "text", "links": "number"}'
    )
    next(t for t in at.text_area if t.label.startswith("Guardrail")).input(
        '[{"feature": "links", "op": ">", "value": 5}]'
    )
    form_button(at, "Create task").click().run()
    assert not at.exception
    name, labels, features, settings = fake_api.called("create_task")[0]
    assert (name, labels) == ("emails", ["spam", "ham", "phishing"])
    assert features == {"subject": "text", "links": "number"}
    assert settings["rules"] == [{"feature": "links", "op": ">", "value": 5}]
    assert settings["target_error"] == pytest.approx(0.05) and settings["model"] == "linear"
    assert settings["automation"] == "on"
    assert "Task “emails” created" in at.success[0].value
    assert list(at.dataframe[0].value["task"]) == ["claims", "emails"]


def test_admin_creates_a_task_with_automation_off(admin, fake_api) -> None:
    at = admin
    next(t for t in at.text_input if t.label == "Name").input("manual")
    next(t for t in at.text_input if t.label == "Labels").input("yes, no")
    at.toggle(key="ad_new_automation").set_value(False)
    form_button(at, "Create task").click().run()
    assert not at.exception
    assert fake_api.called("create_task")[0][3]["automation"] == "off"


def test_bad_rules_json_names_the_field(admin, fake_api) -> None:
    at = admin
    next(t for t in at.text_input if t.label == "Name").input("emails")
    next(t for t in at.text_input if t.label == "Labels").input("spam, ham")
    next(t for t in at.text_area if t.label.startswith("Guardrail")).input("[{oops")
    form_button(at, "Create task").click().run()
    assert at.error[0].value.startswith("rules: not valid JSON")
    assert not fake_api.called("create_task")


def test_api_refusal_is_shown_readably(admin, fake_api) -> None:
    at = admin
    fake_api.fail(
        "create_task",
        InvalidInput(422, [{"loc": ["body", "name"], "msg": "string does not match pattern"}]),
    )
    next(t for t in at.text_input if t.label == "Name").input("Bad Name")
    next(t for t in at.text_input if t.label == "Labels").input("a, b")
    form_button(at, "Create task").click().run()
    assert at.error[0].value == "The task was not created: name: string does not match pattern"


def test_automation_switch_patches_the_task(admin, fake_api) -> None:
    at = admin
    toggle = at.toggle(key="ad_auto_claims")
    assert toggle.value is True
    toggle.set_value(False).run()
    assert not at.exception
    assert fake_api.called("update_task") == [("claims", {"automation": "off"})]
    assert "switched off" in at.success[0].value
    assert fake_api.tasks[0]["automation"] == "off"


def test_admin_revokes_a_key(admin, fake_api) -> None:
    at = admin
    revoke = next(s for s in at.selectbox if s.label == "Key")
    assert revoke.value is None  # nothing preselected: the first key may be one's own
    next(c for c in at.checkbox if c.label.startswith("Yes, revoke")).check()
    form_button(at, "Revoke key").click().run()
    assert at.error[0].value == "Choose the key to revoke." and not fake_api.called("revoke_key")
    revoke = next(s for s in at.selectbox if s.label == "Key")
    revoke.select("k_an")
    next(c for c in at.checkbox if c.label.startswith("Yes, revoke")).check()
    form_button(at, "Revoke key").click().run()
    assert not at.exception
    assert fake_api.called("revoke_key") == [("k_an",)]
    assert at.success[0].value == "Key k_an revoked."


def test_history_table(admin, fake_api) -> None:
    fake_api.history = [
        {
            "at": "2030-01-01T00:00:00.252601+00:00",
            "mode": "automated",
            "threshold": 0.93,
            "reason": "bound 0.04 <= 0.05",
            "n": 80,
            "errors": 1,
            "upper": 0.04,
        }
    ]
    at = admin.run()
    assert list(at.dataframe[-1].value["reason"]) == ["bound 0.04 <= 0.05"]
    assert list(at.dataframe[-1].value["at"]) == ["2030-01-01 00:00:00 UTC"]


def test_admin_changes_a_tasks_settings(admin, fake_api) -> None:
    at = admin
    target = [n for n in at.number_input if n.label == "Target error"][-1]  # after the new form
    assert target.value == 0.05  # the task's own settings, to start from
    target.set_value(0.02)
    next(t for t in at.text_area if t.label.startswith("Guardrail rules (JSON; [] removes")).input(
        '[{"feature": "amount", "op": ">", "value": 10000}]'
    )
    form_button(at, "Save settings").click().run()
    assert not at.exception
    rule = {"feature": "amount", "op": ">", "value": 10000}
    assert fake_api.called("update_task") == [("claims", {"target_error": 0.02, "rules": [rule]})]
    assert at.success[0].value.startswith("“claims” changed (rules, target_error)")
    form_button(at, "Save settings").click().run()  # the same again: nothing to send
    assert len(fake_api.called("update_task")) == 1 and at.info[0].value == "Nothing changed."
