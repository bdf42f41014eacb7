"""Admin page: tasks and their automation switch, API keys, threshold history."""

from __future__ import annotations

import json
import logging
from typing import Any

import streamlit as st

from api.client import TierlineClient, TierlineError
from review_ui import session
from review_ui.formatting import TABLE, escape_markdown, table_rows

logger = logging.getLogger(__name__)

ROLES = ["reviewer", "analyst", "service", "admin"]
RULES_HELP = (
    'A JSON list, e.g. [{"feature": "amount", "op": ">", "value": 10000}]. '
    "Ops: > >= < <= == != in not_in missing. Matching cases always go to a person."
)
FEATURES_HELP = (
    "A JSON object of name → type (number, category, text, boolean), e.g. "
    '{"amount": "number", "country": "category"}. Leave empty to infer it from '
    "the first case."
)


class FormError(ValueError):
    """A form field that cannot be used as entered."""


def parse_json(text: str, field: str, kind: type) -> Any:
    """Parse an optional JSON field; ``None`` when empty."""
    if not text.strip():
        return None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        raise FormError(f"{field}: not valid JSON ({error.msg}, line {error.lineno})") from error
    if not isinstance(value, kind):
        raise FormError(f"{field}: expected a JSON {'object' if kind is dict else 'list'}")
    return value


def parse_labels(text: str) -> list[str]:
    """Comma- or newline-separated labels, in order, blanks dropped."""
    return [part.strip() for part in text.replace("\n", ",").split(",") if part.strip()]


# --- tasks ------------------------------------------------------------------------------
def _set_automation(tl: TierlineClient, name: str) -> None:
    on = st.session_state[f"ad_auto_{name}"]
    try:
        tl.update_task(name, automation="on" if on else "off")
    except TierlineError as error:
        del st.session_state[f"ad_auto_{name}"]  # the toggle falls back to the task's state
        st.session_state["ad_notice"] = ("error", f"{name}: {session.describe(error)}")
        return
    st.session_state["ad_notice"] = (
        "success",
        f"Automation for “{name}” switched {'on' if on else 'off'}.",
    )


def task_list(tl: TierlineClient, tasks: list[dict[str, Any]]) -> None:
    """Existing tasks with their kill switch."""
    if not tasks:
        st.caption("No tasks yet.")
        return
    rows = [
        {
            "task": t["name"],
            "labels": ", ".join(t.get("labels", [])),
            "mode": t.get("mode"),
            "automation": t.get("automation"),
            "policy": t.get("threshold_policy"),
            "threshold in force": t.get("threshold_in_force"),
            "target_error": t.get("target_error"),
            "audit_rate": t.get("audit_rate"),
            "min_labels": t.get("min_labels"),
            "model": t.get("model"),
            "rules": len(t.get("rules") or []),
        }
        for t in tasks
    ]
    st.dataframe(rows, **TABLE)
    st.markdown("**Automation** (switching it off sends every case to people)")
    for task in tasks:
        name = task["name"]
        st.toggle(
            f"{name} — mode {task.get('mode', '—')}",
            key=f"ad_auto_{name}",
            value=task.get("automation") == "on",
            on_change=_set_automation,
            args=(tl, name),
        )


def promise_inputs(now: dict[str, Any]) -> dict[str, Any]:
    """Target error, audit rate, min labels and δ in one row, starting from ``now`` (the
    task's settings, or the defaults of a new task); the API's floors are the inputs'."""
    first, second, third, fourth = st.columns(4)
    return {
        "target_error": first.number_input(
            "Target error", 0.0001, 0.5, float(now["target_error"]), step=0.01, format="%.4f"
        ),
        "audit_rate": second.number_input(
            "Audit rate", 0.001, 1.0, float(now["audit_rate"]), step=0.01, format="%.3f"
        ),
        "min_labels": int(
            third.number_input("Min labels", 0, 1_000_000, int(now["min_labels"]), step=10)
        ),
        "delta": fourth.number_input(
            "δ (1 − confidence)", 0.000001, 0.5, float(now["delta"]), step=0.01, format="%.3f"
        ),
    }


#: A new task's settings, as the API defaults them
NEW_TASK = {"target_error": 0.05, "audit_rate": 0.05, "min_labels": 50, "delta": 0.05}


def settings_form(tl: TierlineClient, tasks: list[dict[str, Any]]) -> None:
    """Change an existing task's promise, audits, cold start and rules (``PATCH``)."""
    if not tasks:
        return
    by_name = {t["name"]: t for t in tasks}
    name = st.selectbox("Change the settings of", list(by_name), key="ad_settings_task")
    task = by_name[name]
    with st.form(f"ad_settings_{name}"):
        promise = promise_inputs(task)
        rules = st.text_area(
            "Guardrail rules (JSON; [] removes them)",
            value=json.dumps(task.get("rules") or []),
            help=RULES_HELP,
            height=80,
        )
        submitted = st.form_submit_button("Save settings")
    if not submitted:
        return
    try:
        wanted = {**promise, "rules": parse_json(rules, "rules", list) or []}
        changes = {k: v for k, v in wanted.items() if v != task.get(k)}
        if not changes:
            st.info("Nothing changed.")
            return
        updated = tl.update_task(name, **changes)
    except FormError as error:
        st.error(str(error))
        return
    except TierlineError as error:
        st.error(f"The settings were not saved: {session.describe(error)}")
        return
    logger.info("task %s settings changed: %s", name, sorted(changes))
    st.session_state["ad_notice"] = (
        "success",
        f"“{name}” changed ({', '.join(sorted(changes))}); mode {updated.get('mode')}.",
    )
    st.rerun()


def create_task_form(tl: TierlineClient) -> None:
    """A form for a new task."""
    with st.form("ad_create_task"):
        st.markdown("**New task**")
        name = st.text_input("Name", placeholder="claims", help="a-z, 0-9, - and _; up to 64")
        labels = st.text_input(
            "Labels",
            placeholder="approve, reject",
            help="Comma-separated, in the order reviewers see them (keys 1–9).",
        )
        features = st.text_area("Features (JSON, optional)", help=FEATURES_HELP, height=100)
        promise = promise_inputs(NEW_TASK)
        first, second, third = st.columns(3)
        policy = first.selectbox(
            "Threshold policy",
            ["certified", "fixed"],
            help="certified: the threshold is earned from evidence so that automated "
            "decisions stay within the target error; fixed: a plain confidence rule.",
        )
        threshold = second.number_input(
            "Fixed threshold",
            0.0,
            1.0,
            0.9,
            step=0.01,
            format="%.3f",
            help="Used only with the fixed policy.",
        )
        model = third.selectbox("Model", ["linear", "forest"])
        rules = st.text_area("Guardrail rules (JSON, optional)", help=RULES_HELP, height=100)
        automation = st.toggle(
            "Automation",
            value=True,
            key="ad_new_automation",
            help="Off: people decide every case until it is switched on below.",
        )
        submitted = st.form_submit_button("Create task", type="primary")
    if not submitted:
        return
    try:
        body: dict[str, Any] = {
            **promise,
            "threshold_policy": policy,
            "threshold": threshold,
            "model": model,
            "automation": "on" if automation else "off",
        }
        parsed_rules = parse_json(rules, "rules", list)
        if parsed_rules is not None:
            body["rules"] = parsed_rules
        created = tl.create_task(
            name.strip(), parse_labels(labels), parse_json(features, "features", dict), **body
        )
    except FormError as error:
        st.error(str(error))
        return
    except TierlineError as error:
        st.error(f"The task was not created: {session.describe(error)}")
        return
    logger.info("task %s created", created.get("name"))
    st.success(f"Task “{created['name']}” created (mode {created.get('mode', 'assist')}).")


# --- keys -------------------------------------------------------------------------------
def create_key_form(tl: TierlineClient) -> None:
    """Create a key and show its secret once."""
    with st.form("ad_create_key", clear_on_submit=True):
        st.markdown("**New key**")
        left, right = st.columns(2)
        name = left.text_input("Key name", placeholder="alice")
        role = right.selectbox("Role", ROLES)
        submitted = st.form_submit_button("Create key", type="primary")
    if not submitted:
        return
    if not name.strip():
        st.error("name: give the key a name.")
        return
    try:
        created = tl.create_key(name.strip(), role)
    except TierlineError as error:
        st.error(f"The key was not created: {session.describe(error)}")
        return
    logger.info("key %s (%s) created", created.get("id"), created.get("role"))
    st.warning(
        f"Key for “{escape_markdown(created['name'])}” ({created['role']}). "
        "Copy it now: it will not be shown again."
    )
    st.code(created["key"], language=None)


def key_list(tl: TierlineClient) -> None:
    """All keys, and revoking one."""
    try:
        keys = tl.list_keys()
    except TierlineError as error:
        st.error(session.describe(error))
        return
    if not keys:
        st.caption("No keys yet.")
        return
    times = ("created_at", "last_used_at", "revoked_at", "expires_at")
    st.dataframe(table_rows(keys, times), **TABLE)
    active = {k["id"]: k for k in keys if not k.get("revoked")}
    if not active:
        return
    mine = session.me().get("id")
    with st.form("ad_revoke_key"):
        st.markdown("**Revoke a key**")
        key_id = st.selectbox(
            "Key",
            list(active),
            index=None,  # nothing chosen for you: the first key listed may be your own
            placeholder="Choose a key",
            format_func=lambda i: (
                f"{active[i]['name']} ({active[i]['role']}) {i}" + (" — you" if i == mine else "")
            ),
        )
        sure = st.checkbox("Yes, revoke it: its holder loses access at once")
        submitted = st.form_submit_button("Revoke key")
    if not submitted:
        return
    if key_id is None:
        st.error("Choose the key to revoke.")
        return
    if not sure:
        st.error("Tick the box to confirm.")
        return
    try:
        tl.revoke_key(key_id)
    except TierlineError as error:
        st.error(f"The key was not revoked: {session.describe(error)}")
        return
    own = " (the key you are signed in with)" if key_id == mine else ""
    st.session_state["ad_notice"] = ("success", f"Key {key_id} revoked{own}.")
    st.rerun()


# --- history ----------------------------------------------------------------------------
def history_table(tl: TierlineClient, tasks: list[dict[str, Any]]) -> None:
    if not tasks:
        st.caption("No tasks yet.")
        return
    name = st.selectbox("Task", [t["name"] for t in tasks], key="ad_history_task")
    try:
        entries = tl.history(name)
    except TierlineError as error:
        st.error(session.describe(error))
        return
    if entries:
        st.dataframe(table_rows(entries), **TABLE)
    else:
        st.caption("No threshold or mode changes yet.")


def main() -> None:
    tl = session.client()
    st.title("Admin")
    notice = st.session_state.pop("ad_notice", None)
    if notice:
        getattr(st, notice[0])(notice[1])
    tasks_tab, keys_tab, history_tab = st.tabs(["Tasks", "Keys", "Threshold history"])
    with tasks_tab:
        create_task_form(tl)
        try:
            tasks = tl.list_tasks()
        except TierlineError as error:
            st.error(session.describe(error))
            tasks = []
        task_list(tl, tasks)
        settings_form(tl, tasks)
    with keys_tab:
        create_key_form(tl)
        key_list(tl)
    with history_tab:
        history_table(tl, tasks)


if __name__ == "__main__":  # Streamlit runs pages as __main__
    main()
