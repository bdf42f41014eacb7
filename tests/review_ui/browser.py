"""A real API, a real review UI and Debian's Chromium, for the browser test and the benchmark.

Nothing here downloads a browser: Playwright drives ``/usr/bin/chromium`` (``make test``
installs it when it is missing).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from api.cli import UI_ENTRY, ui_command
from tests.utils.factories import ADMIN_KEY, CLAIMS_FEATURES, auth
from tests.utils.server import ROOT, ServerProcess, free_port

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ARTIFACTS = ROOT / "tests" / "artifacts"
CASE_ID = re.compile(r"^c_[0-9a-f]+$")

# Runs in the page: remember when a key went down and when each case id first showed.
WATCH_CASES = """
() => {
  if (window.__tl) return;
  window.__tl = {keys: [], seen: {}};
  document.addEventListener('keydown', (e) => {
    window.__tl.keys.push([e.key, performance.now()]);
  }, true);
  const look = () => {
    for (const el of document.querySelectorAll('[data-testid="stMain"] code')) {
      const text = (el.textContent || '').trim();
      if (/^c_[0-9a-f]+$/.test(text) && !(text in window.__tl.seen)) {
        window.__tl.seen[text] = performance.now();
      }
    }
  };
  new MutationObserver(look).observe(document.body, {
    subtree: true, childList: true, characterData: true,
  });
  look();
}
"""


class UiProcess:
    """``tierline ui`` in a child process (its own process group, stopped with SIGTERM)."""

    def __init__(
        self,
        api_url: str,
        log: Path | None = None,
        port: int | None = None,
        entry: Path | None = None,
    ):
        self.port = port or free_port()
        self.entry = entry  # another Streamlit script instead of the review UI
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {**os.environ, "TIERLINE_API_URL": api_url}
        self.log = log
        self.process: subprocess.Popen | None = None

    def start(self, timeout: float = 60) -> UiProcess:
        out = open(self.log, "ab") if self.log else subprocess.DEVNULL  # noqa: SIM115
        command = ui_command(self.port)
        if self.entry is not None:
            command[command.index(str(UI_ENTRY))] = str(self.entry)
        self.process = subprocess.Popen(
            command,
            env=self.env,
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"streamlit exited with {self.process.returncode}")
            try:
                if httpx.get(f"{self.url}/_stcore/health", timeout=1).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        raise TimeoutError("review UI not ready")

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()


@dataclass
class Stack:
    """Handles on the running API and UI, and keys for each role."""

    api: ServerProcess
    ui: UiProcess
    keys: dict[str, str] = field(default_factory=dict)  # role → key
    names: dict[str, str] = field(default_factory=dict)  # role → key name
    case_ids: list[str] = field(default_factory=list)

    def admin(self, timeout: float = 30) -> httpx.Client:
        return httpx.Client(base_url=self.api.url, headers=auth(ADMIN_KEY), timeout=timeout)

    def make_key(self, role: str, name: str) -> str:
        with self.admin() as client:
            response = client.post("/v1/keys", json={"name": name, "role": role})
            response.raise_for_status()
        self.keys[role], self.names[role] = response.json()["key"], name
        return self.keys[role]


def create_claims_task(client: httpx.Client, name: str = "claims") -> None:
    """A two-label task that stays in assist mode, so every case waits for a person."""
    client.post(
        "/v1/tasks",
        json={
            "name": name,
            "labels": ["approve", "reject"],
            "features": CLAIMS_FEATURES,
            "min_labels": 1_000_000,
        },
    ).raise_for_status()


@contextmanager
def running_stack(
    workdir: Path, api_env: dict[str, str] | None = None, database_url: str | None = None
) -> Iterator[Stack]:
    """Start the API on a fresh database (default: a SQLite file in ``workdir``) and the
    review UI against it; stop both after."""
    env = {
        "TIERLINE_DATABASE_URL": database_url or f"sqlite:///{workdir / 'tierline.db'}",
        "TIERLINE_ADMIN_KEY": ADMIN_KEY,
        "TIERLINE_ENV": "dev",
        **(api_env or {}),
    }
    with ExitStack() as stop:
        api = ServerProcess(env, log=workdir / "api.log")
        stop.callback(lambda: api.process is not None and api.stop())
        api.start()
        ui = UiProcess(api.url, log=workdir / "ui.log")
        stop.callback(ui.stop)
        ui.start()
        yield Stack(api=api, ui=ui)


@contextmanager
def chromium() -> Iterator[Any]:
    """Debian's headless Chromium under Playwright; closed afterwards."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True
        )
        try:
            yield browser
        finally:
            browser.close()


def sign_in(page: Any, ui_url: str, key: str) -> None:
    """Open the UI and sign in with ``key`` from the sidebar (Enter submits)."""
    from playwright.sync_api import expect

    page.goto(ui_url)
    field = page.get_by_label("API key")
    expect(field).to_be_visible(timeout=30_000)
    field.fill(key)
    field.press("Enter")
    expect(page.get_by_role("button", name=re.compile(r"^Sign out"))).to_be_visible(timeout=30_000)


def case_on_screen(page: Any) -> Any:
    """The locator of the case id shown on the review page."""
    return page.locator('[data-testid="stMain"] code').filter(has_text=CASE_ID).first


def wait_for_case(page: Any, previous: str | None = None, timeout: float = 30_000) -> str:
    """Wait until a case other than ``previous`` is on screen and return its id."""
    from playwright.sync_api import expect

    if previous is not None:
        expect(case_on_screen(page)).not_to_have_text(previous, timeout=timeout)
    expect(case_on_screen(page)).to_have_text(CASE_ID, timeout=timeout)
    return case_on_screen(page).inner_text().strip()


def wait_until_idle(page: Any, timeout: float = 30_000) -> None:
    """Wait until Streamlit has finished the current script run."""
    page.locator('[data-testid="stApp"][data-test-script-state="notRunning"]').wait_for(
        timeout=timeout
    )


def press(page: Any, key: str) -> None:
    """Press a shortcut with nothing focused (shortcuts do not fire inside text inputs)."""
    page.evaluate("() => document.activeElement && document.activeElement.blur()")
    page.keyboard.press(key)
