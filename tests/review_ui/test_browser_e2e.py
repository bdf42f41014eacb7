"""Point 8: a reviewer in headless Chromium against a real API and a real review UI.

Sign in, label three cases from the keyboard, skip one; the API then holds exactly those
three labels, by that reviewer. Screenshots of the review and dashboard pages are saved
to ``tests/artifacts/``.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from tests.review_ui.browser import (
    ARTIFACTS,
    CHROMIUM,
    Stack,
    chromium,
    create_claims_task,
    press,
    running_stack,
    sign_in,
    wait_for_case,
    wait_until_idle,
)
from tests.utils.factories import claims_case

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]

CASES = 6


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, databases) -> Iterator[Stack]:
    """API + review UI on a fresh database, with a task, keys and a few queued cases."""
    if not CHROMIUM.exists():  # `make test` installs it; failing beats skipping silently
        pytest.fail(f"{CHROMIUM} is missing: run `make test` (it installs Debian's chromium)")
    workdir = tmp_path_factory.mktemp("browser-e2e")
    with running_stack(workdir, database_url=databases.fresh(workdir)) as running:
        with running.admin() as admin:
            create_claims_task(admin)
            rng = random.Random(8)
            cases = [{"features": claims_case(rng)[0]} for _ in range(CASES)]
            response = admin.post("/v1/tasks/claims/cases/batch", json={"cases": cases})
            response.raise_for_status()
            running.case_ids = [case["id"] for case in response.json()["results"]]
        running.make_key("reviewer", "rita-e2e")
        running.make_key("analyst", "anna-e2e")
        yield running


@pytest.fixture(scope="module")
def browser(stack: Stack) -> Iterator:
    with chromium() as launched:
        yield launched


def test_reviewer_labels_three_cases_with_the_keyboard_and_skips_one(stack, browser) -> None:
    from playwright.sync_api import expect

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    try:
        page = context.new_page()
        sign_in(page, stack.ui.url, stack.keys["reviewer"])
        expect(page.get_by_role("button", name="1 · approve")).to_be_visible(timeout=30_000)

        labelled: dict[str, str] = {}
        shown = wait_for_case(page)
        wait_until_idle(page)
        # the label buttons sit under the case, on a laptop's first screen (1366 × 768):
        # below both columns the model's explanation pushed them past 900 px
        box = page.get_by_role("button", name="1 · approve").bounding_box()
        assert box is not None and box["y"] + box["height"] < 768, box
        for key, label in [("1", "approve"), ("2", "reject"), ("1", "approve")]:
            wait_until_idle(page)
            press(page, key)
            labelled[shown] = label
            last, shown = shown, wait_for_case(page, previous=shown)
        wait_until_idle(page)
        skipped = shown
        press(page, "s")
        shown = wait_for_case(page, previous=skipped)
        wait_until_idle(page)
        expect(page.get_by_role("button", name="u · Undo/correct last")).to_be_enabled()
        # u, then a number: corrects the last label, never labels the unread case on screen
        press(page, "u")
        expect(page.get_by_role("button", name="2 · → reject")).to_be_enabled()
        wait_until_idle(page)
        press(page, "2")
        expect(page.get_by_text(f"Case {last} relabelled approve → reject.")).to_be_visible()
        labelled[last] = "reject"
        counter = page.get_by_test_id("stMetric").filter(has_text="Labelled this session")
        expect(counter.get_by_test_id("stMetricValue")).to_have_text("3")
        page.screenshot(path=str(ARTIFACTS / "review.png"), full_page=True)
    finally:
        context.close()

    with stack.admin() as admin:
        cases = {case_id: admin.get(f"/v1/cases/{case_id}").json() for case_id in stack.case_ids}
    assert skipped not in labelled and shown not in labelled
    assert {i: c["label"] for i, c in cases.items() if c["label"] is not None} == labelled
    assert {cases[i]["labelled_by"] for i in labelled} == {stack.names["reviewer"]}
    assert cases[skipped]["label"] is None and cases[skipped]["labelled_by"] is None


def test_dashboard_page_renders_for_an_analyst(stack, browser) -> None:
    from playwright.sync_api import expect

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    context = browser.new_context(viewport={"width": 1400, "height": 2000})
    try:
        page = context.new_page()
        sign_in(page, stack.ui.url, stack.keys["analyst"])
        expect(page.get_by_role("heading", name="Dashboard")).to_be_visible(timeout=30_000)
        expect(page.get_by_text("Threshold and mode history")).to_be_visible(timeout=30_000)
        wait_until_idle(page)
        expect(page.locator('[data-testid="stException"]')).to_have_count(0)
        # the four charts draw after the script finishes: wait for them before the picture
        expect(page.locator(".vega-embed canvas, .vega-embed svg")).to_have_count(4, timeout=30_000)
        # Streamlit scrolls inside the page, so the tall viewport is what shows it all
        page.screenshot(path=str(ARTIFACTS / "dashboard.png"), full_page=True)
    finally:
        context.close()


def test_a_very_wide_case_scrolls_in_its_card_and_the_buttons_stay_in_view(stack, browser) -> None:
    with stack.admin() as admin:
        features = {f"f{i:03d}": "number" for i in range(150)} | {"note": "text"}
        admin.post(
            "/v1/tasks",
            json={"name": "wide", "labels": ["yes", "no"], "features": features},
        ).raise_for_status()
        case = {f"f{i:03d}": float(i) for i in range(150)} | {"note": "word " * 2000}
        admin.post("/v1/tasks/wide/cases", json={"features": case}).raise_for_status()
    with first_case_of(browser, stack, "wide", "wanda-e2e", "yes") as page:
        # 150 features and 10,000 characters: the card scrolls, the first label's button
        # is on the first screen (it was some 10,000 px down)
        top = page.get_by_role("button", name="1 · yes").bounding_box()["y"]
        assert top < 900


def test_addresses_in_a_case_are_shown_as_text_not_links(stack, browser) -> None:
    """A phishing mail's link must be readable and copyable, never one stray click away."""
    text = (
        "Account locked: visit https://evil.example.com/login or www.evil.example.org,"
        "\n\nhelp@evil.example.com <b>not bold</b>"
    )
    with stack.admin() as admin:
        admin.post(
            "/v1/tasks",
            json={
                "name": "mail",
                "labels": ["phish", "ok"],
                "features": {"body": "text", "sender": "category"},
            },
        ).raise_for_status()
        case = {"body": text, "sender": "support@bank.example.com"}
        sent = admin.post("/v1/tasks/mail/cases", json={"features": case})
        sent.raise_for_status()
    with first_case_of(browser, stack, "mail", "lee-e2e", "phish") as page:
        main = page.locator("[data-testid='stMain']").first
        assert main.locator("a").count() == 0
        shown = main.inner_text()
        for part in (
            "https://evil.example.com/login",
            "support@bank.example.com",
            "<b>not bold</b>",
        ):
            assert part in shown
        # straight after choosing the task: the dropdown gave the keyboard back, so the key
        # labels the case (it typed into the dropdown)
        page.keyboard.press("1")
        page.get_by_text("Nothing is waiting in “mail”").wait_for(timeout=30_000)
    with stack.admin() as admin:
        assert admin.get(f"/v1/cases/{sent.json()['id']}").json()["label"] == "phish"


def test_on_a_phone_the_page_reads_top_down_below_the_header(stack, browser) -> None:
    """At 390 px Streamlit stacks the columns: the task picker's name was under the
    header bar, the three counter figures took a third of the screen, and the model's
    view came after the buttons."""
    context = browser.new_context(viewport={"width": 390, "height": 844})
    try:
        page = context.new_page()
        sign_in(page, stack.ui.url, stack.make_key("reviewer", "phil-e2e"))
        wait_for_case(page)
        wait_until_idle(page)
        page.screenshot(path=str(ARTIFACTS / "review-phone.png"))
        header = page.get_by_test_id("stHeader").bounding_box()
        name = page.get_by_test_id("stWidgetLabel").filter(has_text="Task").bounding_box()
        assert name["y"] >= header["y"] + header["height"], (name, header)
        tops = {round(m.bounding_box()["y"]) for m in page.get_by_test_id("stMetric").all()}
        assert len(tops) == 1, tops  # one row
        model = page.locator(".st-key-rv_model").bounding_box()
        assert model["y"] < page.get_by_role("button", name="1 · approve").bounding_box()["y"]
    finally:
        context.close()


@contextmanager
def first_case_of(browser, stack: Stack, task: str, reviewer: str, label: str) -> Iterator:
    """A new reviewer signed in at 1280 × 900, with ``task``'s first case on screen (its
    first label's button drawn: the default task's case may be on screen before)."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    try:
        page = context.new_page()
        sign_in(page, stack.ui.url, stack.make_key("reviewer", reviewer))
        wait_until_idle(page)
        page.get_by_label("Task").click()
        page.get_by_role("option", name=task).click()
        page.get_by_role("button", name=f"1 · {label}").wait_for(timeout=30_000)
        wait_for_case(page)
        wait_until_idle(page)
        yield page
    finally:
        context.close()
