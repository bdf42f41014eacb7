"""Sign-in and role-based pages."""

from __future__ import annotations

import pytest

from api.client import Unavailable
from review_ui import session


def sign_in(at, key: str):
    at.run()
    at.sidebar.text_input(key="signin_key").input(key)
    at.sidebar.button[0].click()
    return at.run()


def test_signed_out_shows_only_the_key_form(app, fake_api) -> None:
    at = app().run()
    assert not at.exception
    assert (
        at.sidebar.text_input(key="signin_key").proto.type
        == at.sidebar.text_input(key="signin_key").proto.PASSWORD
    )
    assert "Sign in with your API key" in at.markdown[0].value
    assert fake_api.calls == []


@pytest.mark.parametrize(
    ("key", "expected"),
    [("tl_reviewer", "1 · approve"), ("tl_admin", "1 · approve")],
)
def test_reviewer_and_admin_land_on_review(app, fake_api, key, expected) -> None:
    fake_api.add_cases(2)
    at = sign_in(app(), key)
    assert not at.exception
    assert [b.label for b in at.button][0] == expected
    assert at.session_state[session.ME]["role"] == key.removeprefix("tl_")
    # the key is kept once, under the session's key, and not left in the input box
    assert "signin_key" not in at.session_state or at.session_state["signin_key"] == ""


def test_analyst_lands_on_dashboard(app, fake_api) -> None:
    at = sign_in(app(), "tl_analyst")
    assert not at.exception
    assert at.title[0].value == "Dashboard"
    assert not fake_api.called("claim")


def test_wrong_key_is_refused_plainly(app, fake_api) -> None:
    at = sign_in(app(), "tl_nope")
    assert not at.exception
    assert at.sidebar.error[0].value == "That key was not accepted."
    assert session.ME not in at.session_state


def test_api_down_at_sign_in_says_so(app, fake_api) -> None:
    fake_api.down = True
    at = sign_in(app(), "tl_reviewer")
    assert not at.exception
    assert "cannot be reached" in at.sidebar.error[0].value
    assert session.ME not in at.session_state


def test_api_unavailable_503_at_sign_in(app, fake_api) -> None:
    fake_api.fail("me", Unavailable(503, "database is busy"))
    at = sign_in(app(), "tl_reviewer")
    assert "temporarily unavailable (database is busy)" in at.sidebar.error[0].value


def test_service_key_gets_no_pages(app, fake_api) -> None:
    at = sign_in(app(), "tl_service")
    assert not at.exception
    assert "have no pages" in at.warning[0].value


def test_sign_out_releases_leases_and_forgets_the_key(app, fake_api) -> None:
    fake_api.add_cases(3)
    at = sign_in(app(), "tl_reviewer")
    held = dict(fake_api.leases)
    assert len(held) == 2  # the case on screen and the one claimed in advance
    at.sidebar.button(key="signout").click().run()
    assert not at.exception
    assert fake_api.leases == {}
    assert sorted(args[0] for args in fake_api.called("release")) == sorted(held)
    assert session.KEY not in at.session_state
    assert at.sidebar.text_input(key="signin_key").value == ""


def test_leaving_the_review_page_gives_held_cases_back(app, fake_api) -> None:
    """An admin lands on Review (which claims a case and prefetches the next); on the Admin
    page those cases would sit held, shown to nobody, until sign-out or lease expiry."""
    fake_api.add_cases(3)
    at = sign_in(app(), "tl_admin")
    assert fake_api.leases  # the case on screen and the prefetched one
    at.switch_page("views/admin.py").run()
    assert not at.exception
    assert fake_api.leases == {}
    assert fake_api.called("release")
