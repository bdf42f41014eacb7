"""Dashboard page: how a task is learning and how far automation can be trusted."""

from __future__ import annotations

from typing import Any

import altair as alt
import pandas as pd
import streamlit as st

from api.client import TierlineClient, TierlineError, curve_frame, to_dataframe
from review_ui import session
from review_ui.formatting import (
    MISSING,
    TABLE,
    escape_markdown,
    format_number,
    format_percent,
    table_rows,
)

MODE_COLOURS = {"assist": "violet", "automated": "green", "suspended": "red"}


def tiles(metrics: dict[str, Any], task: dict[str, Any]) -> None:
    """Headline numbers for the task."""
    target = metrics.get("target_error", task.get("target_error"))
    upper = metrics.get("auto_error_upper")
    first = st.columns(4)
    first[0].metric(
        "Cases",
        format_number(metrics.get("cases", 0)),
        help=f"{format_number(metrics.get('labels', 0))} labelled by people",
    )
    first[1].metric("Automation rate", format_percent(metrics.get("automation_rate")))
    first[2].metric("Threshold", _fixed(metrics.get("threshold"), 3))
    first[3].metric(
        "Estimated error (automated)",
        format_percent(metrics.get("auto_error_estimate"), 2),
        delta=f"upper bound {format_percent(upper, 2)} · target {format_percent(target, 2)}",
        delta_color="off",
        delta_arrow="off",
        help="Error of automated decisions, weighted by propensity, with its finite-sample "
        "upper bound against the task's target.",
    )
    second = st.columns(4)
    second[0].metric("Waiting in queue", format_number(metrics.get("queue_depth", 0)))
    mode = str(metrics.get("mode", task.get("mode", MISSING)))
    second[1].metric("Mode", mode, help=f"automation switch: {task.get('automation', '—')}")
    second[2].metric("Model version", str(metrics.get("model_version", MISSING)))
    second[3].metric("Labels", format_number(metrics.get("labels", 0)))
    if upper is not None and target is not None:
        if upper <= target:
            st.success(
                f"The error bound {format_percent(upper, 2)} is within the target "
                f"{format_percent(target, 2)}."
            )
        else:
            st.warning(
                f"The error bound {format_percent(upper, 2)} is above the target "
                f"{format_percent(target, 2)}."
            )
    reason = task.get("mode_reason")
    if mode in ("assist", "suspended") and reason:  # why nothing is automated now
        say = st.warning if mode == "suspended" else st.info
        say(escape_markdown(str(reason)))


def _fixed(value: float | None, digits: int) -> str:
    return MISSING if value is None else f"{value:.{digits}f}"


def mode_changes(curve: pd.DataFrame, history: pd.DataFrame) -> pd.DataFrame:
    """Place each mode change on the label axis: the label count when it happened."""
    empty = pd.DataFrame(columns=["labels", "mode", "reason"])
    if curve.empty or history.empty or "at" not in history or curve["at"].isna().all():
        return empty
    ordered = curve.dropna(subset=["at"]).sort_values("at")
    events = history.dropna(subset=["at"]).sort_values("at")
    if "mode" in events:
        events = events[events["mode"].ne(events["mode"].shift())]
    if events.empty:
        return empty
    placed = pd.merge_asof(
        events[["at", "mode", "reason"]], ordered[["at", "labels"]], on="at", direction="backward"
    )
    placed["labels"] = placed["labels"].fillna(0)
    return placed[["labels", "mode", "reason"]]


def _line(
    frame: pd.DataFrame,
    x: str,
    y: str,
    title: str,
    y_title: str,
    marks: pd.DataFrame,
) -> alt.LayerChart | alt.FacetChart:
    """A share (accuracy, automation rate, threshold) on a fixed 0-1 axis."""
    scale = alt.Scale(domain=[0, 1])
    shown = frame.dropna(subset=[y])
    line = (
        alt.Chart(shown)
        .mark_line(point=len(shown) < 40)  # points while few: one alone draws no line
        .encode(
            x=alt.X(f"{x}:Q", title=x, axis=alt.Axis(format=",d", tickMinStep=1)),
            y=alt.Y(f"{y}:Q", title=y_title, scale=scale, axis=alt.Axis(format=".2~f")),
            tooltip=[x, y],
        )
    )
    return alt.layer(line, *_mode_rules(marks, x)).properties(title=title, height=260)


def _mode_rules(marks: pd.DataFrame, x: str) -> list[alt.Chart]:
    if marks.empty or x != "labels":
        return []
    rule = (
        alt.Chart(marks)
        .mark_rule(strokeDash=[4, 4], color="gray")
        .encode(x="labels:Q", tooltip=["mode", "reason", "labels"])
    )
    # every other name one line lower: changes a few labels apart stay readable
    texts = [
        alt.Chart(marks.iloc[start::2])
        .mark_text(align="left", dx=3, color="gray")
        .encode(x="labels:Q", y=alt.value(8 + 12 * start), text="mode")
        for start in (0, 1)
    ]
    return [rule, *texts]


def error_chart(
    frame: pd.DataFrame, target: float | None, marks: pd.DataFrame
) -> alt.LayerChart | alt.FacetChart:
    """Error estimate and its upper bound against the target."""
    long = frame.melt(
        id_vars=["labels"],
        value_vars=["auto_error_estimate", "auto_error_upper"],
        var_name="series",
        value_name="error",
    ).dropna(subset=["error"])
    long["series"] = long["series"].map(
        {"auto_error_estimate": "estimate", "auto_error_upper": "upper bound"}
    )
    layers: list[alt.Chart] = [
        alt.Chart(long)
        .mark_line(point=len(long) < 80)  # points while few: one alone draws no line
        .encode(
            x=alt.X("labels:Q", title="labels", axis=alt.Axis(format=",d", tickMinStep=1)),
            y=alt.Y("error:Q", title="error (automated)"),
            # inside the plot: a legend beside it squeezed the plot out of its height
            color=alt.Color(
                "series:N", title=None, legend=alt.Legend(orient="top-left", fillColor="white")
            ),
            strokeDash=alt.StrokeDash("series:N", legend=None),
            tooltip=["labels", "series", "error"],
        )
    ]
    if target is not None:
        layers.append(
            alt.Chart(pd.DataFrame({"target": [target]}))
            .mark_rule(color="red")
            .encode(y="target:Q", tooltip=["target"])
        )
    return alt.layer(*layers, *_mode_rules(marks, "labels")).properties(
        title="Error estimate and upper bound vs target", height=260
    )


def with_live_point(curve: pd.DataFrame, metrics: dict[str, Any]) -> pd.DataFrame:
    """The automation curve up to now: curve points come with labels, so while cases
    arrive and nobody labels, the metrics' live figure is its last point.

    >>> curve = pd.DataFrame({"cases": [100], "automation_rate": [0.5]})
    >>> with_live_point(curve, {"cases": 150, "automation_rate": 0.6})["cases"].tolist()
    [100, 150]
    >>> len(with_live_point(curve, {"cases": 100, "automation_rate": 0.5}))
    1
    """
    cases, rate = metrics.get("cases"), metrics.get("automation_rate")
    if cases is None or rate is None or (not curve.empty and cases <= curve["cases"].max()):
        return curve
    live = pd.DataFrame({"cases": [cases], "automation_rate": [rate]})
    return pd.concat([curve[["cases", "automation_rate"]], live], ignore_index=True)


def charts(
    curve: pd.DataFrame, history: pd.DataFrame, target: float | None, metrics: dict[str, Any]
) -> None:
    """Learning curve, automation, threshold and error charts."""
    if curve.empty:
        st.info("No learning curve yet: points appear once people have labelled cases.")
        return
    for column in (
        "labels",
        "cases",
        "automation_rate",
        "accuracy",
        "threshold",
        "auto_error_estimate",
        "auto_error_upper",
    ):
        curve[column] = pd.to_numeric(curve[column], errors="coerce")
    marks = mode_changes(curve, history)
    left, right = st.columns(2)
    left.altair_chart(
        _line(curve, "labels", "accuracy", "Prequential accuracy vs labels", "accuracy", marks),
        width="stretch",
    )
    right.altair_chart(
        _line(
            with_live_point(curve, metrics),
            "cases",
            "automation_rate",
            "Automation rate vs cases",
            "automation rate",
            marks,
        ),
        width="stretch",
    )
    left, right = st.columns(2)
    left.altair_chart(
        _line(curve, "labels", "threshold", "Threshold vs labels", "threshold", marks),
        width="stretch",
    )
    right.altair_chart(error_chart(curve, target, marks), width="stretch")
    if not marks.empty:
        st.caption("Dashed lines mark mode changes.")


def label_quality(tl: TierlineClient, task: str, metrics: dict[str, Any]) -> None:
    """Second opinions, agreement between reviewers and per-reviewer figures."""
    st.subheader("Label quality")
    cols = st.columns(4)
    cols[0].metric(
        "Second opinions",
        format_percent(metrics.get("second_opinion_share")),
        help=f"{format_number(metrics.get('second_opinions', 0))} cases checked by a second "
        "reviewer (bounded by the task's second_opinion_share)",
    )
    cols[1].metric("Sent to a lead", format_number(metrics.get("escalated", 0)))
    cols[2].metric("Reviewer agreement", format_percent(metrics.get("agreement")))
    cols[3].metric("Fleiss' kappa", _fixed(metrics.get("kappa"), 2))
    try:
        agreement = tl.agreement(task)
    except TierlineError as error:
        st.caption(f"Agreement unavailable: {session.describe(error)}")
        agreement = None
    if agreement and agreement.get("cases"):
        labels = agreement["labels"]
        confusion = pd.DataFrame(agreement["confusion"], index=labels, columns=labels)
        left, right = st.columns(2)
        left.caption(
            f"Pairs of opinions on {format_number(agreement['cases'])} cases "
            f"(Cohen's kappa {_fixed(agreement.get('cohen_kappa'), 2)})"
        )
        left.dataframe(confusion, width="stretch")
        pairs = to_dataframe(agreement.get("reviewer_pairs", []))
        right.caption("Agreement per pair of reviewers")
        right.dataframe(pairs, **TABLE)
    else:
        st.caption("No case has two opinions yet (overlap, second opinions or a lead's decision).")
    try:
        reviewers = tl.reviewers(task)
    except TierlineError as error:
        st.caption(f"Reviewer figures: {session.describe(error)}")
        return
    if not reviewers:
        st.caption("No reviewer has labelled a case of this task yet.")
        return
    st.caption("Reviewers")
    st.dataframe(
        to_dataframe(reviewers),
        **TABLE,
        column_order=list(REVIEWER_COLUMNS),
        column_config=REVIEWER_COLUMNS,
    )


# what the reviewers table shows, in order, with headers an analyst reads at a glance
REVIEWER_COLUMNS: dict[str, Any] = {
    "reviewer": st.column_config.TextColumn("Reviewer"),
    "lead": st.column_config.CheckboxColumn("Lead"),
    "labels": st.column_config.NumberColumn("Labels"),
    "final_labels": st.column_config.NumberColumn(
        "Final", help="labels that became the case's final label"
    ),
    "agreement_with_final": st.column_config.NumberColumn(
        "Agrees with final",
        help="share of answers on multi-opinion cases equal to the final label",
        format="percent",
    ),
    "agreement_with_audits": st.column_config.NumberColumn(
        "Upheld when re-examined",
        help="share of their final labels a correction or lead upheld",
        format="percent",
    ),
    "gold_accuracy": st.column_config.NumberColumn("Gold accuracy", format="percent"),
    "recent_agreement": st.column_config.NumberColumn("Recent agreement", format="percent"),
    "labels_per_hour": st.column_config.NumberColumn("Labels / hour", format="%.0f"),
    "seconds_per_case": st.column_config.NumberColumn("Seconds / case", format="%.1f"),
    "second_opinions_triggered": st.column_config.NumberColumn("Second opinions asked"),
}


def load(tl: TierlineClient, task: str) -> tuple[dict, list, list] | None:
    try:
        return tl.metrics(task), tl.curve(task), tl.history(task)
    except TierlineError as error:
        st.error(session.describe(error))
        st.button("Retry", key="db_retry")
        return None


def main() -> None:
    tl = session.client()
    st.title("Dashboard")
    try:
        tasks = tl.list_tasks()
    except TierlineError as error:
        st.error(session.describe(error))
        st.button("Retry", key="db_retry_tasks")
        return
    if not tasks:
        st.info("There are no tasks yet.")
        return
    by_name = {task["name"]: task for task in tasks}
    top, refresh = st.columns([4, 1], vertical_alignment="bottom")
    name = top.selectbox("Task", list(by_name), key="db_task")
    refresh.button("Refresh", key="db_refresh", width="stretch")
    loaded = load(tl, name)
    if loaded is None:
        return
    metrics, points, events = loaded
    task = by_name[name]
    mode = str(metrics.get("mode", task.get("mode", "")))
    st.markdown(
        f":{MODE_COLOURS.get(mode, 'gray')}-badge[{mode or 'unknown'}] "
        f"automation {task.get('automation', '—')} · model {task.get('model', '—')}"
    )
    tiles(metrics, task)
    curve = curve_frame(points)
    history = to_dataframe(events)
    charts(curve, history, metrics.get("target_error", task.get("target_error")), metrics)
    st.subheader("Threshold and mode history")
    if history.empty:
        st.caption("No threshold or mode changes yet.")
    else:
        st.dataframe(table_rows(events), **TABLE)
    if not curve.empty:
        st.download_button(
            "Download curve (CSV)",
            curve.to_csv(index=False),
            file_name=f"{name}-curve.csv",
            mime="text/csv",
            key="db_download",
        )
    label_quality(tl, name, metrics)


if __name__ == "__main__":  # Streamlit runs pages as __main__
    main()
