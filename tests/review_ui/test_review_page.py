"""Review page: one case on screen, labelled from buttons, with conflicts and outages."""

from __future__ import annotations

import re

import pytest

from api.client import Unauthorized, Unavailable
from review_ui import reviewing as rv
from review_ui.views import review as view
from review_ui.views.review import label_rows


@pytest.fixture
def reviewer(app, fake_api):
    """A reviewer signed in with three cases waiting."""
    fake_api.add_cases(3)
    return app("reviewer").run()


def on_screen(at) -> str | None:
    """The id of the case shown, read from the page."""
    for block in at.markdown:
        match = re.search(r"-badge\[.*\] &nbsp; `(c_\d+)`", block.value)
        if match:
            return match.group(1)
    return None


def texts(at) -> str:
    parts = [m.value for m in at.markdown] + [c.value for c in at.caption]
    parts += [h.proto.body for h in at.get("html")]  # the case's values (plain_html)
    return "\n".join(parts)


def button(at, label: str):
    return next(b for b in at.button if b.label == label)


def test_review_page_shows_the_case_readably(reviewer, fake_api) -> None:
    at = reviewer
    assert not at.exception
    assert on_screen(at) == "c_1"
    shown = texts(at)
    assert "12,501.5" in shown  # thousands separator
    assert 'font-weight: 600">yes<' in shown  # booleans as yes/no
    assert "upstairs neighbour" in shown  # long text, full width
    assert "Model suggests **approve**" in shown
    assert "confidence 0\\.62 \\< certified threshold 0\\.90" in shown  # why it is here
    assert "▲ amount = 12,501\\.5 `+0.420`" in shown and "▼ vip = yes `−0.100`" in shown
    assert re.search(r"Lease: \d+ min \d\d s left", shown)
    assert "Confidence 62.0%" in at.get("progress")[0].proto.text
    probabilities = at.dataframe[0].value
    assert list(probabilities["label"]) == ["approve", "reject"]
    labels = [b.label for b in at.button]
    assert labels[:5] == [
        "1 · approve",
        "2 · reject",
        "s · Skip",
        "n · Not sure",
        "u · Undo/correct last",
    ]
    assert button(at, "u · Undo/correct last").disabled  # nothing labelled yet
    assert [m.label for m in at.metric] == [
        "Labelled this session",
        "Waiting in queue",
        "Decided automatically",
    ]
    assert at.metric[2].value == "75.0%"


def test_an_audit_is_labelled_blind_and_a_missing_feature_shows_as_missing(
    app, fake_api
) -> None:
    """An audit measures the model: showing its pick (as a highlighted button) invites
    agreeing with it. A feature the case lacks is shown as missing, not left out."""
    features = {"amount": 12.5, "country": "fr", "note": "short"}  # no "vip"
    fake_api.add_cases(1, route="auto", audit=True, decision="approve", features=features)
    at = app("reviewer").run()
    assert not at.exception
    shown = texts(at)
    assert "Spot check: the model's suggestion is hidden" in shown
    assert "Model suggests" not in shown and not at.dataframe  # no pick, no probabilities
    assert "confidence 0\\.62" not in shown  # nor reasons, which quote the confidence
    assert all(b.proto.type != "primary" for b in at.button if re.match(r"^\d+ · ", b.label))
    vip = next(i for i, c in enumerate(at.caption) if c.value == "vip")
    assert vip >= 0 and '">—<' in shown


def test_a_lead_sees_what_the_reviewers_said(app, fake_api) -> None:
    """A lead decided a disagreement with nothing on screen saying it was one (a probe)."""
    (case_id,) = fake_api.add_cases(1)
    fake_api.disagreements[case_id] = [
        {"reviewer": "alice", "label": "approve"},
        {"reviewer": "bob", "label": "reject"},
    ]
    at = app("reviewer").run()
    assert not at.exception
    shown = texts(at)
    assert "Reviewers disagreed: you decide" in shown
    assert "**The reviewers said** alice: **approve**; bob: **reject**" in shown


def test_a_task_without_cases_shows_no_automated_share(app, fake_api) -> None:
    fake_api.n_cases = 0  # the API answers 0.0 then: nothing was decided either way
    at = app("reviewer").run()
    assert at.metric[2].label == "Decided automatically" and at.metric[2].value == "—"


def test_next_case_is_claimed_in_advance(reviewer, fake_api) -> None:
    assert set(fake_api.leases) == {"c_1", "c_2"}
    assert reviewer.session_state[rv.PREFETCHED]["case"]["id"] == "c_2"


def test_labelling_sends_the_label_and_shows_the_next_case(reviewer, fake_api) -> None:
    at = reviewer
    lease = at.session_state[rv.CURRENT]["lease_id"]
    at.text_input(key=rv.COMMENT).input("receipt checked")
    button(at, "2 · reject").click().run()
    assert not at.exception
    assert fake_api.called("label") == [("c_1", "reject", lease, "receipt checked")]
    assert on_screen(at) == "c_2"
    assert at.text_input(key=rv.COMMENT).value == ""
    assert at.metric[0].value == "1"
    assert not button(at, "u · Undo/correct last").disabled


def test_conflict_shows_a_plain_message_and_the_next_case(reviewer, fake_api) -> None:
    at = reviewer
    fake_api.steal("c_1")
    button(at, "1 · approve").click().run()
    assert not at.exception
    assert at.warning[0].value == rv.CONFLICT_MESSAGE.format(case_id="c_1", label="approve")
    assert "was not recorded" in at.warning[0].value
    assert on_screen(at) == "c_2"
    assert at.session_state[rv.PENDING] is None
    assert at.metric[0].value == "0"


def _unload_guard(at) -> str:
    """Whether the page asks before a reload or close: the script the page last ran."""
    last = [str(e.proto) for e in at.get("html") if "onbeforeunload" in str(e.proto)]
    assert last, "no unload guard on the page"
    return "off" if "onbeforeunload = null" in last[-1] else "on"


def test_outage_keeps_the_label_until_retry(reviewer, fake_api) -> None:
    at = reviewer
    fake_api.down = True
    button(at, "1 · approve").click().run()
    assert not at.exception
    pending = at.session_state[rv.PENDING]
    assert (pending["case_id"], pending["label"]) == ("c_1", "approve")
    assert "kept and will be sent when you press Retry" in at.error[0].value
    assert _unload_guard(at) == "on"  # a reload or a closed tab would lose it: ask first
    assert on_screen(at) == "c_1"
    assert button(at, "2 · reject").disabled and button(at, "s · Skip").disabled

    at.run()  # any rerun keeps it
    assert at.session_state[rv.PENDING]["label"] == "approve"

    fake_api.down = False
    button(at, "Retry").click().run()
    assert not at.exception
    assert fake_api.labels["c_1"][0] == "approve"
    assert at.session_state[rv.PENDING] is None
    assert on_screen(at) == "c_2"
    assert not at.error
    assert _unload_guard(at) == "off"


def test_skip_releases_and_does_not_bring_the_case_straight_back(app, fake_api) -> None:
    fake_api.add_cases(2)
    at = app("reviewer").run()
    button(at, "s · Skip").click().run()
    assert not at.exception
    assert on_screen(at) == "c_2"
    assert fake_api.called("release")[0][:1] == ("c_1",)
    button(at, "1 · approve").click().run()
    assert on_screen(at) is None
    assert "Only cases you skipped are waiting." in at.info[0].value
    button(at, "Review skipped cases").click().run()
    assert on_screen(at) == "c_1"


def test_with_only_skipped_cases_left_a_new_case_appears_by_itself(app, fake_api) -> None:
    """A probe skipped the last case and posted a new one: "Only cases you skipped are
    waiting" stayed on screen, where an empty queue looks again every few seconds."""
    fake_api.add_cases(1)
    at = app("reviewer").run()
    button(at, "s · Skip").click().run()
    assert any("Only cases you skipped are waiting." in info.value for info in at.info)
    fake_api.add_cases(1)
    at.session_state[view.EMPTY_AT] = 0.0  # the poll's interval has passed
    at.run()
    assert not at.exception
    assert on_screen(at) == "c_2"


def test_not_sure_releases_the_case(reviewer, fake_api) -> None:
    at = reviewer
    button(at, "n · Not sure").click().run()
    assert not at.exception
    assert "c_1" not in fake_api.leases and "c_1" not in fake_api.labels
    assert on_screen(at) == "c_2"
    assert at.info[0].value == "Left for another reviewer."


def test_undo_corrects_the_last_label(reviewer, fake_api) -> None:
    at = reviewer
    button(at, "1 · approve").click().run()
    button(at, "u · Undo/correct last").click().run()
    assert "you chose **approve**" in texts(at)
    assert button(at, "1 · → approve").disabled
    # the case on screen waits: its buttons (and their keys) are off while correcting
    assert all(button(at, b).disabled for b in ("1 · approve", "2 · reject", "s · Skip"))
    assert not button(at, "u · Undo/correct last").disabled  # u closes the panel
    button(at, "2 · → reject").click().run()
    assert not at.exception
    assert fake_api.called("correct") == [("c_1", "reject", None)]
    assert at.success[0].value == "Case c_1 relabelled approve → reject."
    assert on_screen(at) == "c_2"  # the case on screen is untouched
    assert at.session_state[rv.DONE][-1]["label"] == "reject"
    assert not button(at, "1 · approve").disabled  # the panel closed: labelling again


def test_empty_queue_says_so(app, fake_api) -> None:
    at = app("reviewer").run()
    assert not at.exception
    assert "Nothing is waiting in “claims”" in at.success[0].value
    assert not any("held by other reviewers" in c.value for c in at.caption)
    fake_api.held_elsewhere = 17  # the queue counts them; none can be this reviewer's now
    at.run()
    assert any(c.value.startswith("The 17 in the queue are held") for c in at.caption)
    fake_api.held_elsewhere = 0
    fake_api.add_cases(1)
    button(at, "Check again").click().run()
    assert on_screen(at) == "c_1"


def test_claim_outage_offers_retry(app, fake_api) -> None:
    fake_api.add_cases(1)
    fake_api.fail("claim", Unavailable(503, "busy"))
    at = app("reviewer").run()
    assert not at.exception
    assert "temporarily unavailable (busy)" in at.error[0].value
    button(at, "Retry").click().run()
    assert on_screen(at) == "c_1"


def test_switching_task_releases_held_cases(app, fake_api) -> None:
    fake_api.tasks.append({**fake_api.tasks[0], "name": "emails", "labels": ["spam", "ham"]})
    fake_api.add_cases(3)
    at = app("reviewer").run()
    assert set(fake_api.leases) == {"c_1", "c_2"}
    at.selectbox(key="rv_task_select").select("emails").run()
    assert not at.exception
    released = {args[0] for args in fake_api.called("release")}
    assert {"c_1", "c_2"} <= released
    assert [b.label for b in at.button][:2] == ["1 · spam", "2 · ham"]


def test_sign_out_warns_about_an_unsent_label(reviewer, fake_api) -> None:
    at = reviewer
    fake_api.down = True
    button(at, "1 · approve").click().run()
    assert "has not been sent yet; signing out now discards it" in at.sidebar.warning[0].value
    assert at.sidebar.button(key="signout").label == "Sign out and discard it"


def test_review_sample_case_says_why_a_sure_case_is_here(app, fake_api) -> None:
    fake_api.add_cases(
        1,
        confidence=0.99,
        reasons=[
            "confidence 0.99 >= certified threshold 0.90",
            "review sample (rate 0.05): served first",
        ],
    )
    at = app("reviewer").run()
    assert not at.exception
    shown = texts(at)
    assert ":blue-badge[Random sample: checks the model where it may be sure]" in shown
    assert "review sample" in shown and "served first" in shown


def test_many_labels_are_laid_out_in_rows_and_shown_literally(app, fake_api) -> None:
    """Ten labels in one row showed only "1 …"; a label such as ``*a*`` or ``$x$`` was
    drawn as markdown (italics, a formula), so two labels could look alike."""
    labels = ["*a*", "$x$", "[l](http://e.com)", *(f"topic-{i}" for i in range(7))]
    fake_api.tasks[0]["labels"] = labels
    fake_api.add_cases(1, suggestion="*a*", proba={label: 0.1 for label in labels})
    at = app("reviewer").run()
    assert not at.exception
    shown = [b.label for b in at.button if re.match(r"^\d+ · ", b.label)]
    assert shown[:3] == ["1 · \\*a\\*", "2 · \\$x\\$", "3 · \\[l\\]\\(http\u2060\\://e\\.com\\)"]
    assert len(shown) == 10 and shown[9] == "10 · topic\\-6"
    # the long label takes half a row, the short ones a quarter each: three rows, not ten
    assert label_rows(labels) == [[0, 1, 2], [3, 4, 5, 6], [7, 8, 9]]
    halves = [block for block in at.columns if block.proto.weight == 0.5]
    assert len(halves) == 1


def test_a_label_whose_sending_was_interrupted_is_sent_again_without_a_banner(
    reviewer, fake_api
) -> None:
    """Two keys pressed at once: the second rerun stopped the first callback after the
    API had answered but before ``pending`` was cleared, and a false "not confirmed yet"
    banner asked for Retry. A pending label that never failed is sent again (idempotent)."""
    at = reviewer
    claim = at.session_state[rv.CURRENT]
    at.session_state[rv.PENDING] = {
        "action": "label",
        "case_id": claim["case"]["id"],
        "lease_id": claim["lease_id"],
        "label": "approve",
        "comment": None,
        "task": "claims",
        "suggestion": "approve",
        "at": 0.0,
    }
    at.run()
    assert not at.exception and not at.error
    assert at.session_state[rv.PENDING] is None
    assert fake_api.labels["c_1"][0] == "approve" and on_screen(at) == "c_2"


def test_a_key_revoked_mid_session_signs_the_reviewer_out_saying_why(reviewer, fake_api) -> None:
    at = reviewer
    fake_api.fail("label", Unauthorized(401, "unknown or revoked API key"))
    button(at, "1 · approve").click().run()
    assert not at.exception
    shown = "\n".join(e.value for e in at.error)
    assert "no longer accepted" in shown and "c_1 was not recorded" in shown
    assert not any(b.label.startswith("1 · ") for b in at.button)  # the sign-in page


def test_a_case_without_a_suggestion_shows_no_confidence_or_drivers(app, fake_api) -> None:
    """Before the first label the model's even odds are no suggestion: the page said so,
    then showed a confidence bar and "what drove the suggestion" anyway."""
    fake_api.add_cases(1, suggestion=None, confidence=0.5, threshold=1.0)
    at = app("reviewer").run()
    assert not at.exception
    shown = texts(at)
    assert "The model has no suggestion yet" in shown
    assert "What drove the suggestion" not in shown and not at.get("progress")


def test_a_suspended_task_shows_no_automation_threshold(app, fake_api) -> None:
    """Suspended or in assist, a case carries threshold 1.0 (nothing is automated): the
    bar read "automation threshold 100.0%" (the reasons say why it is with a person)."""
    reason = "suspended: bound 0.052 > target 0.05 at threshold 0.875 (n=131, 1 errors)"
    fake_api.add_cases(1, threshold=1.0, reasons=[reason])
    at = app("reviewer").run()
    text = at.get("progress")[0].proto.text
    assert text.startswith("Confidence 62.0%") and "threshold" not in text


def test_direction_overrides_are_shown_not_obeyed(app, fake_api) -> None:
    """A right-to-left override showed the label "\u202egnp.exe" as "exe.png", and a value
    "\u202etxt.exe" as "exe.txt": what the reviewer read was not what was stored. (The API
    now refuses such labels; stored tasks and case values may still carry them.)"""
    labels = ["\u202egnp.exe", "ok"]
    fake_api.tasks[0]["labels"] = labels
    features = {"amount": 3.0, "note": "attachment \u202etxt.exe", "\u202ename": "x"}
    fake_api.add_cases(
        1, features=features, suggestion="ok", proba={"\u202egnp.exe": 0.4, "ok": 0.6}
    )
    at = app("reviewer").run()
    assert not at.exception
    assert any(b.label == "1 · ⟨U\\+202E⟩gnp\\.exe" for b in at.button)
    shown = texts(at)
    assert "attachment ⟨U+202E⟩txt.exe" in shown and "⟨U\\+202E⟩name" in shown
    assert "\u202e" not in shown
    assert list(at.dataframe[0].value["label"]) == ["ok", "⟨U+202E⟩gnp.e…"]  # clipped


def test_a_long_label_is_clipped_in_the_probability_table_and_whole_on_its_button(
    app, fake_api
) -> None:
    """A 128-character label widened the table's label column until the probabilities
    were out of view."""
    long = "L" * 128
    fake_api.tasks[0]["labels"] = [long, "ok"]
    fake_api.add_cases(1, suggestion="ok", proba={long: 0.3, "ok": 0.7})
    at = app("reviewer").run()
    assert not at.exception
    assert list(at.dataframe[0].value["label"]) == ["ok", "L" * 13 + "…"]
    assert any(b.label == f"1 · {long}" for b in at.button)


def test_a_suspended_task_is_said_to_be_so(app, fake_api) -> None:
    fake_api.add_cases(1)
    fake_api.tasks[0]["mode"] = "suspended"
    at = app("reviewer").run()
    assert not at.exception
    assert ":red-badge[Automation suspended: every new case comes to people]" in texts(at)
    fake_api.tasks[0]["mode"] = "automated"
    at = app("reviewer").run()
    assert "Automation suspended" not in texts(at)


def test_what_says_nothing_is_not_shown(app, fake_api) -> None:
    """A case before any model: no probability table of even odds; a driver that rounds
    to ±0.000 is no driver."""
    fake_api.add_cases(1, suggestion=None, proba={"approve": 0.5, "reject": 0.5})
    drivers = [{"feature": "country", "contribution": -0.0001}, {"feature": "amount",
               "contribution": 0.4}]  # fmt: skip
    fake_api.add_cases(1, explanation=drivers)
    at = app("reviewer").run()
    assert not at.exception
    assert "The model has no suggestion yet (too few labels)." in texts(at)
    assert not at.dataframe
    button(at, "s · Skip").click().run()
    assert at.info[0].value.startswith("Skipped: it goes back to the queue")
    shown = texts(at)
    assert "▲ amount" in shown and "country =" not in shown.split("What drove")[-1]
