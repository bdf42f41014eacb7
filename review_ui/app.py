"""tierline review UI entry point: ``streamlit run review_ui/app.py``.

Sign in with an API key in the sidebar; the pages offered follow the key's role.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import streamlit as st

HERE = Path(__file__).resolve().parent
if str(HERE.parent) not in sys.path:  # run from a checkout without `pip install -e .`
    sys.path.insert(0, str(HERE.parent))

from review_ui import reviewing, session  # noqa: E402
from review_ui.formatting import escape_markdown  # noqa: E402

logger = logging.getLogger("review_ui")

PAGES = {
    "review": ("views/review.py", "Review", ":material/task_alt:"),
    "dashboard": ("views/dashboard.py", "Dashboard", ":material/monitoring:"),
    "admin": ("views/admin.py", "Admin", ":material/admin_panel_settings:"),
}
PAGES_BY_ROLE = {
    "reviewer": ["review"],
    "analyst": ["dashboard"],
    "admin": ["review", "dashboard", "admin"],
}


def _submit_key() -> None:
    if session.sign_in(st.session_state.get("signin_key", "")):
        st.session_state["signin_key"] = ""


def sign_in_form() -> None:
    """The sidebar form that takes an API key."""
    with st.sidebar.form("signin", border=False):
        st.text_input(
            "API key", type="password", key="signin_key", autocomplete="off", placeholder="tl_…"
        )
        st.form_submit_button("Sign in", type="primary", on_click=_submit_key)
    error = st.session_state.get(session.SIGNIN_ERROR)
    if error:
        st.sidebar.error(error)


def welcome() -> None:
    """The only page before sign-in."""
    st.title("tierline")
    st.write("Sign in with your API key in the sidebar to review cases or read the dashboard.")
    st.caption(f"API: {session.api_url()}")


def no_pages() -> None:
    st.title("tierline")
    st.warning(
        f"Keys with the role “{session.role()}” have no pages in the review UI. "
        "Use an admin, reviewer or analyst key."
    )


def account_box() -> None:
    """Who is signed in, and the sign-out button."""
    who = session.me()
    st.sidebar.markdown(f"**{escape_markdown(who['name'])}** · {who['role']}")
    pending = st.session_state.get(reviewing.PENDING)
    if pending:
        st.sidebar.warning(
            f"Your {'label' if pending['action'] == 'label' else 'correction'} "
            f"“{pending['label']}” for case {pending['case_id']} has not been sent yet; "
            "signing out now discards it."
        )
    label = "Sign out and discard it" if pending else "Sign out"
    st.sidebar.button(label, key="signout", on_click=session.sign_out)


#: Less empty space above the page, so the label buttons are on a laptop's first screen;
#: button and figure names wrap instead of ending in "…" (a label must read whole); a
#: narrow window gives the sidebar (a name and a button) less room; on a phone, where the
#: columns stack, the model's view comes before the case and its buttons (read top to
#: bottom, then press, instead of scrolling past the buttons to read and back up), the
#: page starts below the header bar (which hid the task picker's name) and the review
#: counter's three figures share one row (stacked they took a third of the screen).
STYLE = """<style>
[data-testid="stMainBlockContainer"] { padding-top: 2.5rem; }
[data-testid="stMain"] button p, [data-testid="stMain"] button div,
[data-testid="stMetricLabel"] p {
  white-space: normal; overflow-wrap: break-word; text-overflow: clip; overflow: visible;
}
@media (max-width: 1000px) {
  section[data-testid="stSidebar"] { width: 200px !important; min-width: 200px !important; }
}
@media (max-width: 640px) {
  [data-testid="stColumn"]:has(.st-key-rv_model) { order: -1; }
  [data-testid="stMainBlockContainer"] { padding-top: 4rem; }
  .st-key-rv_counter [data-testid="stHorizontalBlock"] { flex-wrap: nowrap; }
  .st-key-rv_counter [data-testid="stColumn"] {
    min-width: 0 !important; width: auto !important; flex: 1 1 0 !important;
  }
  .st-key-rv_counter [data-testid="stMetricValue"] { font-size: 1.5rem; }
}
</style>"""


def main() -> None:
    st.set_page_config(page_title="tierline", layout="wide")
    st.html(STYLE)
    if not session.signed_in():
        sign_in_form()
        pages = [st.Page(welcome, title="Sign in", url_path="signin", default=True)]
    else:
        names = PAGES_BY_ROLE.get(session.role() or "", [])
        pages = [
            st.Page(
                HERE / PAGES[name][0],
                title=PAGES[name][1],
                icon=PAGES[name][2],
                url_path=name,
                default=index == 0,
            )
            for index, name in enumerate(names)
        ]
        if not pages:
            pages = [st.Page(no_pages, title="tierline", url_path="none", default=True)]
    page = st.navigation(pages, position="sidebar" if len(pages) > 1 else "hidden")
    if session.signed_in():
        account_box()
        if page.title != PAGES["review"][1]:  # held cases go back to the queue, not idle here
            # (by title: a default page's url_path is "")
            state = session.state()
            if state.get(reviewing.CURRENT) or state.get(reviewing.PREFETCHED):
                reviewing.release_all(session.client(), state)
    page.run()


main()
