"""Review page: one case at a time, decided from the keyboard (1–9, s, n, u)."""

from __future__ import annotations

import time
from typing import Any

import streamlit as st

from api.client import TierlineClient, TierlineError
from review_ui import reviewing as rv
from review_ui import session
from review_ui.formatting import (
    MISSING,
    clip,
    escape_markdown,
    format_contribution,
    format_duration,
    format_percent,
    format_value,
    is_long,
    plain_html,
    reveal_direction,
    seconds_left,
)

TASKS = "rv_tasks"
TASKS_AT = "rv_tasks_at"
EMPTY_AT = "rv_empty_at"
TASKS_TTL = 60.0
POLL_EMPTY = 10.0
ROUTE_BADGES = {
    "review": ("Below the automation threshold", "orange"),
    "assist": ("Assist: a person decides", "violet"),
    "auto": ("Audit spot check of an automated decision", "blue"),
}
SAMPLE_BADGE = ("Random sample: checks the model where it may be sure", "blue")


def load_tasks(tl: TierlineClient, state: Any, force: bool = False) -> list[dict[str, Any]]:
    """Tasks, refreshed at most once a minute."""
    if force or state.get(TASKS) is None or time.time() - state.get(TASKS_AT, 0) > TASKS_TTL:
        state[TASKS] = tl.list_tasks()
        state[TASKS_AT] = time.time()
    return state[TASKS]


#: Short label buttons per row (quarters of a row, see :func:`label_rows`): more and their
#: text no longer fits (ten labels in one row showed only "1 …", "2 …").
BUTTONS_PER_ROW = 4


def label_button_text(index: int, label: str) -> str:
    r"""Stable button text, the label shown literally (not as markdown): ``"1 · approve"``.

    >>> label_button_text(1, "*a*")
    '2 · \\*a\\*'
    """
    return f"{index + 1} · {escape_markdown(label)}"


def label_rows(labels: list[str]) -> list[list[int]]:
    """The label buttons' rows, in order: a short label takes a quarter of a row, one of up
    to 24 characters half, a longer one the whole row, so each reads whole without one
    long label putting every other on a row of its own.

    >>> label_rows(["yes", "no", "unsure"]), label_rows(["refund", "request info"])
    ([[0, 1, 2]], [[0, 1]])
    >>> label_rows(["approve", "reject", "escalate", "wait", "duplicate"])
    [[0, 1, 2, 3], [4]]
    >>> label_rows(["Approve, but ask for the receipt first", "Reject", "Wait"])
    [[0], [1, 2]]
    """
    rows: list[list[int]] = []
    room = 0
    for index, label in enumerate(labels):
        size = _button_size(label)
        if size > room:
            rows.append([])
            room = BUTTONS_PER_ROW
        rows[-1].append(index)
        room -= size
    return rows


def _button_size(label: str) -> int:
    """Quarters of a row a label's button takes (see :func:`label_rows`)."""
    return 1 if len(label) <= 8 else 2 if len(label) <= 24 else BUTTONS_PER_ROW


def label_columns(labels: list[str]) -> list[Any]:
    """One column per label, in order, rows as :func:`label_rows` packs them, each as wide
    as its label needs (a row's room left over stays empty, so that rows line up); labels
    that fit on one row share it in equal parts."""
    rows = label_rows(labels)
    if len(rows) == 1:
        return list(st.columns(len(labels)))
    columns = []
    for row in rows:
        sizes = [_button_size(labels[i]) for i in row]
        left = BUTTONS_PER_ROW - sum(sizes)
        columns += st.columns(sizes + [left] if left else sizes)[: len(row)]
    return columns


def button_columns(n: int, per_row: int = BUTTONS_PER_ROW) -> list[Any]:
    """Columns for ``n`` buttons in order, ``per_row`` to a row, all of one width."""
    width = min(n, per_row) or 1
    return [column for _ in range(0, max(n, 1), width) for column in st.columns(width)]


# --- pieces -----------------------------------------------------------------------------
def show_notice(state: Any) -> None:
    notice = state.get(rv.NOTICE)
    state[rv.NOTICE] = None
    if notice:
        level, text = notice
        getattr(st, level, st.info)(text)


def session_counter(tl: TierlineClient, state: Any, task: str) -> None:
    """Labels this session, queue depth and automated share (refreshed every 30 s)."""

    @st.fragment(run_every=30)
    def counter() -> None:
        try:
            status = tl.queue(task)
        except TierlineError:
            status = {}
        # keyed for the phone layout (review_ui/app.py: one row, not three stacked)
        first, second, third = st.container(key="rv_counter").columns(3)
        first.metric("Labelled this session", f"{state[rv.COUNT]:,}")
        depth = status.get("queue_depth")
        second.metric("Waiting in queue", MISSING if depth is None else f"{depth:,}")
        share = status.get("automation_rate") if status.get("cases") else None
        third.metric(
            "Decided automatically",
            format_percent(share),  # no cases yet: "—"
            help="Share of all this task's cases so far",
        )

    counter()


#: The feature card's tallest height in pixels: a taller case scrolls inside its card, so
#: the label buttons below stay in view (a case of 200 features put them 10,000 px down).
CARD_MAX_HEIGHT = 460
CARD_MIN_HEIGHT = 220
BUTTON_ROW_HEIGHT = 45


def card_height(short: int, long: list[str], button_rows: int = 1) -> int | None:
    """Pixels to cap the feature card at, or ``None`` when it fits: an estimate from the
    grid's rows (``short`` values, three a row) and the long texts' wrapped lines. Each
    row of label buttons past the first takes :data:`BUTTON_ROW_HEIGHT` from the cap, so
    the buttons stay on the first screen (down to :data:`CARD_MIN_HEIGHT`).

    >>> card_height(9, []) is None
    True
    >>> card_height(200, []), card_height(3, ["x" * 10_000]), card_height(200, [], 4)
    (460, 460, 325)
    """
    lines = sum(1 + len(text) // 90 for text in long)
    estimate = 40 + 90 * -(-short // 3) + 28 * (len(long) + lines)
    cap = max(CARD_MIN_HEIGHT, CARD_MAX_HEIGHT - BUTTON_ROW_HEIGHT * (button_rows - 1))
    return cap if estimate > cap else None


def feature_card(case: dict[str, Any], schema: dict[str, Any] | None, button_rows: int) -> None:
    """The case's features: short values in a grid, long text full width (the card scrolls
    past :func:`card_height`, lower the more rows of label buttons follow it)."""
    schema = schema or {}
    # a feature the case lacks shows as a dash: "missing" is not "not part of this task"
    features = {**dict.fromkeys(schema), **(case.get("features") or {})}
    short = [(k, v) for k, v in features.items() if not is_long(v, _kind(schema, k))]
    long = [(k, v) for k, v in features.items() if is_long(v, _kind(schema, k))]
    height = card_height(len(short), [format_value(v) for _, v in long], button_rows)
    with st.container(border=True, height=height or "content"):
        if not features:
            st.caption("This case has no features.")
            return
        for start in range(0, len(short), 3):
            columns = st.columns(3)
            for column, (name, value) in zip(columns, short[start : start + 3], strict=False):
                column.caption(escape_markdown(name))
                column.html(plain_html(format_value(value), bold=True))
        for name, value in long:
            st.caption(escape_markdown(name))
            st.html(plain_html(format_value(value)))


def _kind(schema: dict[str, Any], name: str) -> str | None:
    kind = schema.get(name)
    return kind.get("type") if isinstance(kind, dict) else kind


#: Characters of a label shown in the probability table (the buttons show it whole): a
#: longer one widened its column until the probabilities were out of view.
TABLE_LABEL = 14


def blind(case: dict[str, Any]) -> bool:
    """Whether the model's view is kept from the reviewer: an audit of an automated
    decision, whose label measures the model (seeing its pick invites agreeing with it)."""
    return bool(case.get("audit"))


def suggestion_panel(case: dict[str, Any]) -> None:
    """The model's suggestion, confidence, class probabilities, reasons and explanation
    (the reasons alone on a blind audit)."""
    if blind(case):
        st.markdown("**Spot check: the model's suggestion is hidden**")
        st.caption(
            "This case was decided automatically. Label it as you see it: your label "
            "measures how often automated decisions are right."
        )
        return  # not even the reasons: they quote the model's confidence
    suggestion = case.get("suggestion")
    confidence = case.get("confidence")
    threshold = case.get("threshold")
    if suggestion is None:  # an untrained model's even odds: no confidence, no drivers
        st.markdown("The model has no suggestion yet (too few labels).")
    else:
        st.markdown(f"Model suggests **{escape_markdown(str(suggestion))}**")
    if confidence is not None and suggestion is not None:
        text = f"Confidence {format_percent(confidence)}"
        if threshold is not None and threshold < 1.0:  # None (1.0 before): nothing automated
            text += f" · automation threshold {format_percent(threshold)}"
        st.progress(min(max(float(confidence), 0.0), 1.0), text=text)
    proba = case.get("proba") or {}
    if proba and suggestion is not None:  # an untrained model's even odds say nothing
        rows = sorted(proba.items(), key=lambda item: -item[1])
        st.dataframe(
            {
                "label": [clip(reveal_direction(label), TABLE_LABEL) for label, _ in rows],
                "probability": [p for _, p in rows],
            },
            hide_index=True,
            column_config={
                "probability": st.column_config.ProgressColumn(
                    "probability", format="%.3f", min_value=0.0, max_value=1.0
                )
            },
        )
    reasons_list(case)
    explanation = case.get("explanation") or []
    if explanation and suggestion is not None:
        features = case.get("features") or {}
        lines = []
        for item in explanation[:6]:
            name, weight = str(item.get("feature")), float(item.get("contribution") or 0.0)
            if abs(weight) < 0.0005:  # shows as ±0.000: it drove nothing
                continue
            arrow = "▲" if weight >= 0 else "▼"
            value = features.get(name)
            shown = f" = {format_value(value)}" if name in features and not is_long(value) else ""
            lines.append(
                f"- {arrow} {escape_markdown(name + shown)} `{format_contribution(weight)}`"
            )
        if lines:
            st.markdown("**What drove the suggestion**")
            st.markdown("\n".join(lines))
            st.caption("▲ pushed toward the suggestion, ▼ pushed against it.")


def disagreement_note(opinions: list[dict[str, Any]] | None) -> None:
    """What each reviewer answered on a case a lead decides."""
    if opinions:
        said = "; ".join(
            f"{escape_markdown(str(o.get('reviewer') or 'a reviewer'))}: "
            f"**{escape_markdown(str(o['label']))}**"
            for o in opinions
        )
        st.markdown(f"**The reviewers said** {said}")


def reasons_list(case: dict[str, Any]) -> None:
    reasons = case.get("reasons") or []
    if reasons:
        st.markdown("**Why this case is with you**")
        st.markdown("\n".join(f"- {escape_markdown(str(reason))}" for reason in reasons))


def lease_clock(state: Any) -> None:
    """Time left on the lease of the case on screen (ticks every 10 s)."""

    @st.fragment(run_every=10)
    def clock() -> None:
        claim = state.get(rv.CURRENT)
        left = seconds_left(claim.get("lease_expires_at")) if claim else None
        if left is None:
            return
        if left <= 0:
            st.warning(
                "Your lease has expired. Your label still counts unless another "
                "reviewer has taken the case meanwhile."
            )
        else:
            st.caption(f"Lease: {format_duration(left)} left")

    clock()


def _correcting(state: Any) -> bool:
    """The correction panel is open (and there is a last label to correct)."""
    return bool(state[rv.CORRECTING] and state[rv.DONE])


def actions(tl: TierlineClient, state: Any, labels: list[str], case: dict[str, Any]) -> None:
    """One button per label (keys 1–9), Skip, Not sure, Undo/correct last, and a comment.

    While the correction panel is open its buttons own the number keys: the case on
    screen waits (it has not been read yet), and only ``u`` (close the panel) acts here.
    """
    busy = bool(state[rv.PENDING]) or _correcting(state)
    columns = label_columns(labels)
    suggested = None if blind(case) else case.get("suggestion")
    for index, (column, label) in enumerate(zip(columns, labels, strict=False)):
        column.button(
            label_button_text(index, label),
            key=f"rv_label_{index}",
            help=label,
            shortcut=str(index + 1) if index < 9 and not busy else None,
            type="primary" if label == suggested else "secondary",
            on_click=rv.submit_label,
            args=(tl, state, label),
            disabled=busy,
            width="stretch",
        )
    skip, unsure, undo = st.columns([2, 3, 4])
    skip.button(
        "s · Skip",
        key="rv_skip",
        shortcut=None if busy else "s",
        on_click=rv.skip,
        args=(tl, state),
        disabled=busy,
        help="Put it back and see another case",
        width="stretch",
    )
    unsure.button(
        "n · Not sure",
        key="rv_unsure",
        shortcut=None if busy else "n",
        on_click=rv.skip,
        args=(tl, state, "unsure"),
        disabled=busy,
        help="Release it to another reviewer",
        width="stretch",
    )
    undo.button(
        "u · Undo/correct last",
        key="rv_undo",
        shortcut="u",
        on_click=_toggle_correct,
        args=(state,),
        disabled=bool(state[rv.PENDING]) or not state[rv.DONE],
        width="stretch",
    )
    st.text_input(  # under the buttons: a comment is rare, a label is every case
        "Comment (optional, type it before the label)",
        key=rv.COMMENT,
        placeholder="Optional note for this label",
        max_chars=2000,
    )


def _toggle_correct(state: Any) -> None:
    state[rv.CORRECTING] = not state[rv.CORRECTING]


def correction_panel(tl: TierlineClient, state: Any, tasks: dict[str, dict[str, Any]]) -> None:
    """Relabel the previous case: its buttons take the number keys (``u`` closes it)."""
    last = state[rv.DONE][-1]
    labels = (tasks.get(last["task"]) or {}).get("labels") or [last["label"]]
    with st.container(border=True):
        st.markdown(
            f"Correct your last label: case `{last['case_id']}`, "
            f"you chose **{escape_markdown(last['label'])}**."
        )
        columns = button_columns(len(labels) + 1)
        for index, (column, label) in enumerate(zip(columns, labels, strict=False)):
            text = f"→ {escape_markdown(label)}"
            column.button(
                f"{index + 1} · {text}" if index < 9 else text,
                key=f"rv_fix_{index}",
                shortcut=str(index + 1) if index < 9 and label != last["label"] else None,
                disabled=label == last["label"],
                on_click=rv.correct_last,
                args=(tl, state, label),
                width="stretch",
            )
        columns[len(labels)].button(
            "Cancel", key="rv_fix_cancel", on_click=_toggle_correct, args=(state,), width="stretch"
        )


def pending_banner(tl: TierlineClient, state: Any) -> None:
    pending = state[rv.PENDING]
    st.error(pending.get("error") or rv.kept_message(pending))
    st.button(
        "Retry", key="rv_retry_pending", type="primary", on_click=rv.send_pending, args=(tl, state)
    )


def empty_queue(tl: TierlineClient, state: Any, task: str) -> None:
    """Nothing to review (or only cases you skipped): say so and look again every few
    seconds."""
    if state[rv.ONLY_SKIPPED]:
        st.info("Only cases you skipped are waiting. New cases will appear here by themselves.")
        st.button(
            "Review skipped cases",
            key="rv_review_skipped",
            on_click=rv.review_skipped,
            args=(tl, state),
        )
    else:
        st.success(f"Nothing is waiting in “{task}”. New cases will appear here by themselves.")
        try:
            held = tl.queue(task).get("queue_depth") or 0
        except TierlineError:
            held = 0
        if held:  # the queue counts them, but none can be yours now
            st.caption(
                f"The {held:,} in the queue are held by other reviewers, or are cases you "
                "already gave an opinion on; a held case comes back when its lease expires."
            )
        st.button("Check again", key="rv_check_again", on_click=rv.retry_claim, args=(tl, state))
    state.setdefault(EMPTY_AT, time.time())

    @st.fragment(run_every=POLL_EMPTY)
    def poll() -> None:
        if time.time() - state.get(EMPTY_AT, 0) < POLL_EMPTY - 1:
            return
        state[EMPTY_AT] = time.time()
        rv.retry_claim(tl, state)
        if state[rv.CURRENT]:
            st.rerun(scope="app")

    poll()


# --- page -------------------------------------------------------------------------------
#: Set when the task was switched: the dropdown keeps the keyboard focus, where number keys
#: would type into it instead of labelling, so the page gives the focus back once.
RELEASE_FOCUS = "rv_release_focus"
_BLUR = "<script>document.activeElement?.blur();</script>"
# While a label waits to be sent, reloading or closing the tab would lose it (the session
# lives in the page): the browser asks first.
_GUARD_PENDING = (
    "<script>window.onbeforeunload = (e) => { e.preventDefault(); e.returnValue = ''; "
    "return ''; };</script>"
)
_UNGUARD = "<script>window.onbeforeunload = null;</script>"


def run_script(script: str) -> None:
    """Run ``script`` in the page (Streamlit runs it again only when it changes)."""
    st.html(script, unsafe_allow_javascript=True)


def _on_task_change(tl: TierlineClient, state: Any) -> None:
    rv.switch_task(tl, state, state.get("rv_task_select"))
    state[RELEASE_FOCUS] = True


def main() -> None:
    tl, state = session.client(), session.state()
    rv.setup(state)
    try:
        tasks = load_tasks(tl, state)
    except TierlineError as error:
        st.error(session.describe(error))
        st.button("Retry", key="rv_retry_tasks", on_click=state.pop, args=(TASKS, None))
        return
    if not tasks:
        st.title("Review")
        st.info("There are no tasks yet. An admin creates them on the Admin page.")
        return
    by_name = {task["name"]: task for task in tasks}
    if state[rv.TASK] not in by_name:
        rv.switch_task(tl, state, tasks[0]["name"])
    if state.get("rv_task_select") != state[rv.TASK]:
        state["rv_task_select"] = state[rv.TASK]
    task = by_name[state[rv.TASK]]

    head, counter = st.columns([2, 3], vertical_alignment="bottom")
    head.selectbox(
        "Task",
        list(by_name),
        key="rv_task_select",
        on_change=_on_task_change,
        args=(tl, state),
        disabled=bool(state[rv.PENDING]),
    )
    with counter:
        session_counter(tl, state, task["name"])
    if state.pop(RELEASE_FOCUS, False):
        run_script(_BLUR)

    rv.resume_interrupted(tl, state)
    show_notice(state)
    run_script(_GUARD_PENDING if state[rv.PENDING] else _UNGUARD)
    if state[rv.PENDING]:
        pending_banner(tl, state)
    if _correcting(state):
        correction_panel(tl, state, by_name)

    rv.ensure_case(tl, state)
    if state[rv.CLAIM_ERROR] is not None:
        st.error(session.describe(state[rv.CLAIM_ERROR]))
        st.button(
            "Retry", key="rv_retry_claim", type="primary", on_click=rv.retry_claim, args=(tl, state)
        )
        return
    claim = state[rv.CURRENT]
    if claim is None:
        if state[rv.EMPTY]:
            empty_queue(tl, state, task["name"])
        return
    state.pop(EMPTY_AT, None)
    case = claim["case"]
    badge, colour = ROUTE_BADGES.get(case.get("route", ""), ("For review", "gray"))
    if case.get("audit"):
        badge, colour = ROUTE_BADGES["auto"]
    elif any(reason.startswith("review sample") for reason in case.get("reasons", [])):
        badge, colour = SAMPLE_BADGE
    if claim.get("disagreement"):
        badge, colour = "Reviewers disagreed: you decide", "violet"
    suspended = (  # in the case's line: a banner above pushed the buttons off the screen
        " &nbsp; :red-badge[Automation suspended: every new case comes to people]"
        if task.get("mode") == "suspended"
        else ""
    )
    st.markdown(
        f":{colour}-badge[{badge}] &nbsp; `{case['id']}`"  # no external id: gold has none
        + suspended
    )
    left, right = st.columns([3, 2], gap="large")
    with left:  # the buttons under the case, on the first screen (the right side runs long)
        labels = task.get("labels") or []
        feature_card(case, task.get("features"), len(label_rows(labels)))
        actions(tl, state, labels, case)
        lease_clock(state)
    with right, st.container(key="rv_model"):  # first on a phone (review_ui.app.STYLE)
        disagreement_note(claim.get("disagreement"))
        suggestion_panel(case)
    rv.prefetch(tl, state)


if __name__ == "__main__":  # Streamlit runs pages as __main__
    main()
