"""The reviewer's loop, kept apart from widgets: claim, label, skip, correct, retry.

Every function takes the API client and a session-state mapping, so the loop can be
tested without Streamlit. Rules:

- at most one case on screen (``current``) and one claimed in advance (``prefetched``);
- a label the API could not receive is kept as ``pending`` until it is sent or the API
  refuses it; it is never dropped silently;
- a skipped case is released only after the next one is claimed, and is passed over
  for the rest of the session while other cases wait.
"""

from __future__ import annotations

import logging
import time
from collections.abc import MutableMapping
from typing import Any

from api.client import (
    Claim,
    Conflict,
    NotFound,
    RateLimited,
    TierlineClient,
    TierlineError,
    Unauthorized,
    Unavailable,
)
from review_ui.formatting import escape_markdown, seconds_left

logger = logging.getLogger(__name__)

State = MutableMapping[str, Any]

TASK = "rv_task"
CURRENT = "rv_current"
PREFETCHED = "rv_prefetched"
SKIPPED = "rv_skipped"
DONE = "rv_done"
COUNT = "rv_count"
PENDING = "rv_pending"
NOTICE = "rv_notice"
EMPTY = "rv_empty"
ONLY_SKIPPED = "rv_only_skipped"
CLAIM_ERROR = "rv_claim_error"
CORRECTING = "rv_correcting"
COMMENT = "rv_comment"

CONFLICT_MESSAGE = (
    "Case {case_id} was taken by another reviewer after your lease expired, so your label "
    "“{label}” was not recorded. Here is the next case."
)
MIN_LEASE_SECONDS = 20  # a prefetched case with less time left is claimed afresh
MAX_EXCLUDED = 1000  # skipped cases a claim passes over at most (the API's limit)
KEEP_DONE = 50


def setup(state: State) -> None:
    """Create the review keys once per session."""
    defaults: dict[str, Any] = {
        TASK: None,
        CURRENT: None,
        PREFETCHED: None,
        SKIPPED: set(),
        DONE: [],
        COUNT: 0,
        PENDING: None,
        NOTICE: None,
        EMPTY: False,
        ONLY_SKIPPED: 0,
        CLAIM_ERROR: None,
        CORRECTING: False,
    }
    for name, value in defaults.items():
        state.setdefault(name, value)


def notify(state: State, level: str, text: str) -> None:
    """Leave a message for the next render (``level``: info, success, warning, error)."""
    state[NOTICE] = (level, text)


def _unavailable(error: TierlineError) -> bool:
    return isinstance(error, Unavailable | RateLimited)


# --- leases -----------------------------------------------------------------------------
def _release(client: TierlineClient, claim: Claim | None) -> None:
    """Give a lease back; failures only mean the lease will lapse on its own."""
    if not claim:
        return
    try:
        client.release(claim["case"]["id"], claim["lease_id"])
    except TierlineError as error:
        logger.info("release of %s failed (%s); the lease will expire", claim["case"]["id"], error)


def release_all(client: TierlineClient, state: State) -> None:
    """Release the case on screen and the prefetched one (sign-out, task switch)."""
    for name in (CURRENT, PREFETCHED):
        claim = state.get(name)
        # a case whose label is waiting to be sent keeps its lease
        pending = state.get(PENDING)
        if claim and not (pending and pending.get("case_id") == claim["case"]["id"]):
            _release(client, claim)
        state[name] = None


def _fresh_enough(claim: Claim) -> bool:
    left = seconds_left(claim.get("lease_expires_at"))
    return left is None or left > MIN_LEASE_SECONDS


def _claim_unseen(client: TierlineClient, state: State) -> Claim | None:
    """Claim the next case this reviewer has not skipped (the API passes over those);
    ``None`` if there is none. When nothing else waits, one claim without them tells
    whether skipped cases do (that case is given straight back)."""
    task, skipped = state[TASK], state[SKIPPED]
    # resume: a case this key holds that the page does not show (it reloaded) comes first
    shown = [claim["case"]["id"] for claim in (state[CURRENT], state[PREFETCHED]) if claim]
    passed_over = shown + sorted(skipped)[: MAX_EXCLUDED - len(shown)]
    found = client.claim(task, exclude=passed_over, resume=True)
    state[ONLY_SKIPPED] = 0
    if found is None and skipped:
        left = client.claim(task)
        if left is not None:
            _release(client, left)
            state[ONLY_SKIPPED] = 1
    return found


def ensure_case(client: TierlineClient, state: State) -> None:
    """Put a case on screen if none is: the prefetched one, or a fresh claim."""
    if state[PENDING] or state[CURRENT] or not state[TASK]:
        return
    prefetched = state[PREFETCHED]
    state[PREFETCHED] = None
    if prefetched and _fresh_enough(prefetched):
        state[CURRENT], state[EMPTY] = prefetched, False
        return
    _release(client, prefetched)
    try:
        claim = _claim_unseen(client, state)
    except TierlineError as error:
        logger.warning("claim on %s failed: %s", state[TASK], error)
        state[CLAIM_ERROR] = error
        return
    state[CLAIM_ERROR] = None
    state[CURRENT], state[EMPTY] = claim, claim is None


def prefetch(client: TierlineClient, state: State) -> None:
    """Claim the next case in advance so it shows at once after a label (best effort)."""
    if state[PENDING] or not state[CURRENT] or state[PREFETCHED] or not state[TASK]:
        return
    try:
        state[PREFETCHED] = _claim_unseen(client, state)
    except TierlineError as error:
        logger.info("prefetch on %s failed: %s", state[TASK], error)


def switch_task(client: TierlineClient, state: State, task: str | None) -> None:
    """Work on another task: give back held cases and start afresh."""
    if task == state[TASK]:
        return
    release_all(client, state)
    state[TASK] = task
    state[EMPTY], state[ONLY_SKIPPED], state[CLAIM_ERROR], state[CORRECTING] = (
        False,
        0,
        None,
        False,
    )


def retry_claim(client: TierlineClient, state: State) -> None:
    """Try again after an outage or an empty queue."""
    state[CLAIM_ERROR], state[EMPTY] = None, False
    ensure_case(client, state)


def review_skipped(client: TierlineClient, state: State) -> None:
    """Let skipped cases come back (when nothing else is waiting)."""
    state[SKIPPED] = set()
    retry_claim(client, state)


# --- decisions --------------------------------------------------------------------------
def submit_label(client: TierlineClient, state: State, label: str) -> None:
    """Label the case on screen with ``label`` and move on to the next case."""
    claim = state[CURRENT]
    if not claim or state[PENDING]:
        return
    comment = (state.get(COMMENT) or "").strip() or None
    state[PENDING] = {
        "action": "label",
        "case_id": claim["case"]["id"],
        "lease_id": claim["lease_id"],
        "label": label,
        "comment": comment,
        "task": state[TASK],
        "suggestion": claim["case"].get("suggestion"),
        "at": time.time(),
    }
    send_pending(client, state)


def correct_last(client: TierlineClient, state: State, label: str) -> None:
    """Relabel the case this reviewer labelled last."""
    if not state[DONE] or state[PENDING]:
        return
    last = state[DONE][-1]
    comment = (state.get(COMMENT) or "").strip() or None
    state[PENDING] = {
        "action": "correct",
        "case_id": last["case_id"],
        "label": label,
        "previous": last["label"],
        "comment": comment,
        "at": time.time(),
    }
    send_pending(client, state)


def send_pending(client: TierlineClient, state: State) -> None:
    """Send the kept submission; keep it while the API is unreachable."""
    pending = state[PENDING]
    if not pending:
        return
    answer = None
    try:
        if pending["action"] == "label":
            answer = client.label(
                pending["case_id"], pending["label"], pending["lease_id"], pending["comment"]
            )
        else:
            client.correct(pending["case_id"], pending["label"], pending["comment"])
    except TierlineError as error:
        if _unavailable(error):
            logger.warning(
                "%s of %s kept for retry: %s", pending["action"], pending["case_id"], error
            )
            pending["error"] = kept_message(pending, error)
            return
        state[PENDING] = None
        _refused(client, state, pending, error)
        return
    state[PENDING] = None
    state[COMMENT] = ""
    state[CORRECTING] = False
    if pending["action"] == "label":
        _labelled(client, state, pending)
        if answer is not None and answer.get("label") is None:  # an opinion, held
            notify(
                state,
                "info",
                f"Your label for case {pending['case_id']} is recorded; it counts once the "
                "case has its other answers (another reviewer's, or a lead's).",
            )
    else:
        for entry in state[DONE]:
            if entry["case_id"] == pending["case_id"]:
                entry["label"] = pending["label"]
        notify(
            state,
            "success",
            f"Case {pending['case_id']} relabelled {escape_markdown(pending['previous'])} → "
            f"{escape_markdown(pending['label'])}.",
        )


def resume_interrupted(client: TierlineClient, state: State) -> None:
    """Send again a submission whose sending was cut short, not refused: a second key
    pressed at once starts a rerun that stops the first callback after the API answered,
    before it cleared ``pending``. It never failed (no ``error``), and labels and
    corrections are idempotent, so the reviewer is not asked to press Retry."""
    pending = state[PENDING]
    if pending and "error" not in pending:
        send_pending(client, state)


def kept_message(pending: dict[str, Any], error: TierlineError | None = None) -> str:
    """Tell the reviewer their submission is kept and how to send it."""
    what = "label" if pending["action"] == "label" else "correction"
    if error is None:
        reason = "has not confirmed it yet"
    elif error.status is None:
        reason = "cannot be reached"
    else:
        reason = f"is unavailable right now ({error.message})"
    return (
        f"The tierline API {reason}. Your {what} “{escape_markdown(pending['label'])}” for case "
        f"{pending['case_id']} is kept and will be sent when you press Retry."
    )


def _labelled(client: TierlineClient, state: State, pending: dict[str, Any]) -> None:
    state[COUNT] += 1
    state[DONE].append(
        {
            "case_id": pending["case_id"],
            "task": pending["task"],
            "label": pending["label"],
            "suggestion": pending["suggestion"],
        }
    )
    del state[DONE][:-KEEP_DONE]
    current = state[CURRENT]
    if current and current["case"]["id"] == pending["case_id"]:
        state[CURRENT] = None
    state[NOTICE] = None
    ensure_case(client, state)


def _refused(
    client: TierlineClient, state: State, pending: dict[str, Any], error: TierlineError
) -> None:
    """The API answered no: say why; a lost case makes way for the next one."""
    logger.info("%s of %s refused: %s", pending["action"], pending["case_id"], error)
    if isinstance(error, Unauthorized):  # revoked or expired mid-session: sign out
        from review_ui import session  # late import: session imports this module

        session.sign_out()
        state[session.SIGNIN_ERROR] = (
            f"Your key is no longer accepted (revoked or expired), so your "
            f"{'label' if pending['action'] == 'label' else 'correction'} for case "
            f"{pending['case_id']} was not recorded. Sign in with a valid key."
        )
        return
    if pending["action"] == "correct":
        notify(state, "error", f"The correction was not accepted: {error.message}")
        return
    if isinstance(error, Conflict | NotFound):
        notify(
            state,
            "warning",
            CONFLICT_MESSAGE.format(
                case_id=pending["case_id"], label=escape_markdown(pending["label"])
            )
            if isinstance(error, Conflict)
            else f"Case {pending['case_id']} no longer exists; here is the next one.",
        )
        state[CURRENT] = None
        ensure_case(client, state)
        return
    notify(state, "error", f"The label was not accepted: {error.message}")


def skip(client: TierlineClient, state: State, reason: str = "skip") -> None:
    """Put the case back and show another; this reviewer will not see it again soon.

    ``reason`` is ``"skip"`` or ``"unsure"`` (the "Not sure" button).
    """
    claim = state[CURRENT]
    if not claim or state[PENDING]:
        return
    state[SKIPPED].add(claim["case"]["id"])
    state[CURRENT] = None
    state[CORRECTING] = False
    ensure_case(client, state)  # claims the next one while we still hold this one
    _release(client, claim)
    state[NOTICE] = (
        ("info", "Left for another reviewer.")
        if reason == "unsure"
        else ("info", "Skipped: it goes back to the queue, and comes to you again last.")
    )
