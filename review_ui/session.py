"""The signed-in session: one API client per browser session, built from session state.

The key lives only in ``st.session_state``; every HTTP call goes through the client made
by :func:`make_client`, which tests replace with a fake.
"""

from __future__ import annotations

import logging
import os
from collections.abc import MutableMapping
from typing import Any, cast

import streamlit as st

from api.client import DEFAULT_API_URL, TierlineClient, TierlineError, Unauthorized, Unavailable

logger = logging.getLogger(__name__)

KEY = "tl_key"
ME = "tl_me"
CLIENT = "tl_client"
SIGNIN_ERROR = "tl_signin_error"

# The UI answers people: fail fast rather than retrying for half a minute.
UI_TIMEOUT = 8.0
UI_RETRIES = 2


def api_url() -> str:
    """Where the API runs: ``$TIERLINE_API_URL`` or the local default."""
    return os.environ.get("TIERLINE_API_URL") or DEFAULT_API_URL


def make_client(key: str) -> TierlineClient:
    """Build the API client for ``key`` (tests monkeypatch this factory)."""
    return TierlineClient(api_url(), key, timeout=UI_TIMEOUT, max_retries=UI_RETRIES)


def state() -> MutableMapping[str, Any]:
    """This browser session's state (a seam for tests)."""
    return cast(MutableMapping[str, Any], st.session_state)


def signed_in() -> bool:
    return ME in state()


def me() -> dict[str, Any]:
    """The signed-in key's ``{"id", "name", "role"}``."""
    return state()[ME]


def role() -> str | None:
    return state()[ME]["role"] if signed_in() else None


def client() -> TierlineClient:
    """The session's client, created on first use from the key in session state."""
    session = state()
    if session.get(CLIENT) is None:
        session[CLIENT] = make_client(session[KEY])
    return session[CLIENT]


def describe(error: TierlineError) -> str:
    """A sentence for people about an API error."""
    if isinstance(error, Unavailable):
        if error.status is None:
            return f"The tierline API at {api_url()} cannot be reached. Is it running?"
        return f"The tierline API is temporarily unavailable ({error.message}). Try again shortly."
    if isinstance(error, Unauthorized):
        return "That key was not accepted (unknown or revoked)."
    return error.message


def sign_in(key: str) -> bool:
    """Check ``key`` with ``/v1/me``; on success keep it (and the client) in session state."""
    session = state()
    session.pop(SIGNIN_ERROR, None)
    key = key.strip()
    if not key:
        session[SIGNIN_ERROR] = "Enter an API key."
        return False
    candidate = make_client(key)
    try:
        who = candidate.me()
    except Unauthorized:
        candidate.close()
        session[SIGNIN_ERROR] = "That key was not accepted."
        return False
    except TierlineError as error:
        candidate.close()
        logger.warning("sign-in failed: %s", error)
        session[SIGNIN_ERROR] = describe(error)
        return False
    session[KEY], session[ME], session[CLIENT] = key, dict(who), candidate
    logger.info("signed in as %s (%s)", who.get("name"), who.get("role"))
    return True


def sign_out() -> None:
    """Give back any held leases, close the client and forget everything."""
    from review_ui import reviewing  # late import: reviewing imports this module

    session = state()
    tl = session.get(CLIENT)
    if tl is not None:
        reviewing.release_all(tl, session)
        try:
            tl.close()
        except Exception:  # closing must never block signing out
            logger.exception("closing the API client failed")
    for name in list(session.keys()):
        del session[name]
