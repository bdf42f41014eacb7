"""Dashboard page: tiles and charts, with and without a learning curve."""

from __future__ import annotations

import pytest

from api.client import Forbidden, curve_frame, to_dataframe
from review_ui.views.dashboard import mode_changes


def curve_points(count: int) -> list[dict]:
    return [
        {
            "labels": 10 * i,
            "cases": 40 * i,
            "automation_rate": min(0.9, 0.05 * i),
            "accuracy": 0.6 + 0.01 * i,
            "threshold": 0.95 - 0.002 * i,
            "auto_error_estimate": 0.03 if i > 3 else None,
            "auto_error_upper": 0.06 - 0.001 * i if i > 3 else None,
            "at": f"2030-01-01T00:{i:02d}:00+00:00",
        }
        for i in range(1, count + 1)
    ]


@pytest.fixture
def dashboard(app):
    def open_as(role: str = "analyst"):
        at = app(role).run()
        if role == "admin":
            at.switch_page("views/dashboard.py").run()
        return at

    return open_as


def test_dashboard_with_an_empty_curve(dashboard, fake_api) -> None:
    at = dashboard()
    assert not at.exception
    assert at.title[0].value == "Dashboard"
    tiles = {m.label: m.value for m in at.metric}
    assert tiles["Cases"] == "1,200"
    assert tiles["Automation rate"] == "75.0%"
    assert tiles["Threshold"] == "0.930"
    assert tiles["Estimated error (automated)"] == "2.10%"
    assert tiles["Waiting in queue"] == "0"
    assert tiles["Mode"] == "automated"
    assert tiles["Model version"] == "412"
    assert "within the target" in at.success[0].value
    assert "No learning curve yet" in at.info[0].value
    assert not at.get("vega_lite_chart")
    assert "No threshold or mode changes yet." in [c.value for c in at.caption]


def test_dashboard_with_a_curve_and_mode_changes(dashboard, fake_api) -> None:
    fake_api.curve = curve_points(12)
    fake_api.history = [
        {
            "at": "2030-01-01T00:05:30+00:00",
            "mode": "automated",
            "threshold": 0.94,
            "reason": "bound 0.041 <= target 0.05",
            "n": 60,
            "errors": 1,
            "upper": 0.041,
        },
        {
            "at": "2030-01-01T00:09:30+00:00",
            "mode": "suspended",
            "threshold": 0.94,
            "reason": "drift detected",
            "n": 90,
            "errors": 6,
            "upper": 0.08,
        },
    ]
    at = dashboard()
    assert not at.exception
    assert len(at.get("vega_lite_chart")) == 4
    assert "Dashed lines mark mode changes." in [c.value for c in at.caption]
    history = at.dataframe[0].value
    assert list(history["mode"]) == ["automated", "suspended"]


def test_dashboard_for_admins_too(dashboard, fake_api) -> None:
    fake_api.curve = curve_points(2)
    at = dashboard("admin")
    assert not at.exception
    assert at.title[0].value == "Dashboard"


def test_mode_changes_land_on_the_label_axis() -> None:
    curve = curve_frame(curve_points(12))
    history = to_dataframe(
        [
            {"at": "2030-01-01T00:05:30+00:00", "mode": "automated", "reason": "certified"},
            {"at": "2030-01-01T00:06:30+00:00", "mode": "automated", "reason": "new threshold"},
            {"at": "2030-01-01T00:00:10+00:00", "mode": "assist", "reason": "cold start"},
        ]
    )
    marks = mode_changes(curve, history)
    assert marks.to_dict("records") == [
        {"labels": 0.0, "mode": "assist", "reason": "cold start"},
        {"labels": 50.0, "mode": "automated", "reason": "certified"},
    ]
    assert mode_changes(curve_frame([]), history).empty
    assert mode_changes(curve, to_dataframe([])).empty


def test_dashboard_outage_is_a_message(dashboard, fake_api) -> None:
    fake_api.down = True
    at = dashboard()
    assert not at.exception
    assert "cannot be reached" in at.error[0].value


def test_dashboard_shows_label_quality(dashboard, fake_api) -> None:
    fake_api.agreement = {
        "cases": 40,
        "labels": ["approve", "reject"],
        "confusion": [[50, 6], [6, 18]],
        "cohen_kappa": 0.74,
        "reviewer_pairs": [
            {"a": "alice", "b": "bob", "cases": 40, "agreement": 0.85, "cohen_kappa": 0.74}
        ],
    }
    fake_api.reviewer_rows = [
        {"reviewer": "alice", "labels": 120, "agreement_with_final": 0.97, "gold_accuracy": 1.0},
        {"reviewer": "bob", "labels": 80, "agreement_with_final": 0.81, "gold_accuracy": 0.7},
    ]
    at = dashboard()
    assert not at.exception
    assert "Label quality" in [h.value for h in at.subheader]
    tiles = {m.label for m in at.metric}
    assert {"Second opinions", "Sent to a lead", "Reviewer agreement"} <= tiles
    frames = [d.value for d in at.dataframe]
    assert any(list(f.get("reviewer", [])) == ["alice", "bob"] for f in frames)
    assert any(f.shape == (2, 2) and int(f.iloc[0, 0]) == 50 for f in frames)
    # a figure a reviewer has none of (no gold answered) reads "—", not "None"
    reviewers = next(d for d in at.dataframe if "reviewer" in d.value)
    assert reviewers.proto.placeholder == "—"


def test_dashboard_label_quality_without_opinions_or_rights(dashboard, fake_api) -> None:
    fake_api.fail("reviewers", Forbidden(403, "role may not do this (quality:read)"))
    at = dashboard()
    assert not at.exception
    captions = [c.value for c in at.caption]
    assert any("No case has two opinions yet" in c for c in captions)
    assert any(c.startswith("Reviewer figures:") for c in captions)


def test_a_suspended_task_shows_why(dashboard, fake_api) -> None:
    fake_api.mode = "suspended"
    fake_api.tasks[0]["mode"] = "suspended"
    fake_api.tasks[0]["mode_reason"] = "suspended: drift detected at label 1,234 (cusum)"
    at = dashboard()
    assert not at.exception
    shown = [w.value.replace("\\", "") for w in at.warning]  # markdown escapes taken off
    assert "suspended: drift detected at label 1,234 (cusum)" in shown
