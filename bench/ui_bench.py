"""``make bench-ui``: how fast the next case appears after a label, with 100,000 cases queued.

One real API (``tierline serve``, SQLite in a temporary directory) and one real review UI
(``tierline ui``) run on this machine; Debian's headless Chromium, driven by Playwright,
signs in as a reviewer and labels cases with the keyboard like a person would: it waits
until the page is idle (the UI has claimed the next case in advance), then presses a label
key. The page itself records when the key went down and when the next case's id entered
the DOM (``performance.now()`` on both sides, so Playwright's own overhead is not counted).

For comparison, the same reviewer loop is timed against the API alone (label, then claim
the next case, over one kept-alive connection through ``api.client``): that is the part
of the time spent in the API, the rest is Streamlit and the browser.

Results are printed as Markdown and written to ``bench/out/ui.json``.
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

warnings.filterwarnings("ignore", category=DeprecationWarning)  # starlette's, via test helpers
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from api.client import TierlineClient  # noqa: E402
from review_ui.session import UI_RETRIES, UI_TIMEOUT  # noqa: E402
from tests.review_ui.browser import (  # noqa: E402
    CHROMIUM,
    WATCH_CASES,
    UiProcess,
    chromium,
    create_claims_task,
    press,
    running_stack,
    sign_in,
    wait_for_case,
    wait_until_idle,
)
from tests.utils.factories import claims_case  # noqa: E402

OUT = ROOT / "bench" / "out" / "ui.json"
BATCH = 1000
LABEL_KEYS = ["1", "2"]
BARE_APP = """
import streamlit as st

st.session_state.setdefault("n", 0)


def bump():
    st.session_state.n += 1


st.button("1 · next", shortcut="1", on_click=bump)
st.button("2 · next", shortcut="2", on_click=bump)
st.markdown(f"`c_{st.session_state.n:06x}`")
"""


def quantiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    p90 = ordered[min(len(ordered) - 1, int(round(0.9 * (len(ordered) - 1))))]
    return {
        "n": len(ordered),
        "median_ms": round(statistics.median(ordered), 1),
        "p90_ms": round(p90, 1),
        "min_ms": round(ordered[0], 1),
        "max_ms": round(ordered[-1], 1),
    }


def fill_queue(admin: Any, count: int, seed: int = 11) -> float:
    """Queue ``count`` cases through the batch route; the seconds it took."""
    rng = random.Random(seed)
    started = time.perf_counter()
    sent = 0
    while sent < count:
        size = min(BATCH, count - sent)
        cases = [{"features": claims_case(rng)[0]} for _ in range(size)]
        admin.post("/v1/tasks/claims/cases/batch", json={"cases": cases}).raise_for_status()
        sent += size
        if sent % 10_000 == 0:
            print(f"  queued {sent:,} cases ({time.perf_counter() - started:.0f} s)", flush=True)
    return time.perf_counter() - started


def keyboard_loop(page: Any, labels: int, warmup: int) -> dict[str, Any]:
    """Press label keys on the page; key-down → next case id on screen, per press."""
    in_page: list[float] = []
    seen_by_driver: list[float] = []
    shown = wait_for_case(page)
    page.evaluate(WATCH_CASES)
    for n in range(warmup + labels):
        wait_until_idle(page)  # as after a person's reading time: the next case is claimed
        time.sleep(0.05)
        keys_before = page.evaluate("() => window.__tl.keys.length")
        started = time.perf_counter()
        press(page, LABEL_KEYS[n % 2])
        new = wait_for_case(page, previous=shown)
        elapsed = (time.perf_counter() - started) * 1000
        down, seen = page.evaluate(
            "([i, id]) => [window.__tl.keys[i][1], window.__tl.seen[id]]", [keys_before, new]
        )
        if n >= warmup:
            in_page.append(seen - down)
            seen_by_driver.append(elapsed)
        shown = new
    return {"in_page": quantiles(in_page), "driver": quantiles(seen_by_driver)}


def review_ui_loop(browser: Any, ui_url: str, key: str, labels: int, warmup: int) -> dict:
    """A reviewer signed in to the review UI labels cases from the keyboard."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    try:
        page = context.new_page()
        sign_in(page, ui_url, key)
        return keyboard_loop(page, labels, warmup)
    finally:
        context.close()


def bare_streamlit_loop(browser: Any, workdir: Path, labels: int, warmup: int) -> dict:
    """Baseline: a bare Streamlit page whose key shortcut only changes the id shown."""
    script = workdir / "bare_streamlit.py"
    script.write_text(BARE_APP)
    ui = UiProcess("http://127.0.0.1:9", log=workdir / "bare.log", entry=script)
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    try:
        ui.start()
        page = context.new_page()
        page.goto(ui.url)
        return keyboard_loop(page, labels, warmup)
    finally:
        context.close()
        ui.stop()


def api_loop(api_url: str, key: str, labels: int, warmup: int) -> dict[str, Any]:
    """The reviewer's loop against the API alone, with the UI's client settings."""
    label_ms: list[float] = []
    claim_ms: list[float] = []
    metrics_ms: list[float] = []
    with TierlineClient(api_url, key, timeout=UI_TIMEOUT, max_retries=UI_RETRIES) as tl:
        claim = tl.claim("claims")
        for n in range(warmup + labels):
            assert claim is not None
            t0 = time.perf_counter()
            tl.label(claim["case"]["id"], ["approve", "reject"][n % 2], claim["lease_id"])
            t1 = time.perf_counter()
            claim = tl.claim("claims")
            t2 = time.perf_counter()
            tl.metrics("claims")
            t3 = time.perf_counter()
            if n >= warmup:
                label_ms.append((t1 - t0) * 1000)
                claim_ms.append((t2 - t1) * 1000)
                metrics_ms.append((t3 - t2) * 1000)
    both = [a + b for a, b in zip(label_ms, claim_ms, strict=True)]
    return {
        "label": quantiles(label_ms),
        "claim": quantiles(claim_ms),
        "label_plus_claim": quantiles(both),
        "metrics": quantiles(metrics_ms),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=100_000, help="cases queued first")
    parser.add_argument("--labels", type=int, default=40, help="labels measured")
    parser.add_argument("--warmup", type=int, default=5, help="labels not measured")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    if not CHROMIUM.exists():
        sys.exit(f"{CHROMIUM} is missing: apt-get install chromium")

    with tempfile.TemporaryDirectory(prefix="tierline-ui-bench-") as tmp:
        workdir = Path(tmp)
        with running_stack(workdir) as stack, chromium() as browser:
            with stack.admin(timeout=120) as admin:
                create_claims_task(admin)
                print(f"queueing {args.cases:,} cases ...", flush=True)
                fill_seconds = fill_queue(admin, args.cases)
                depth = admin.get("/v1/tasks/claims/metrics").json()["queue_depth"]
            print("baseline: a bare Streamlit page in the same browser ...", flush=True)
            bare = bare_streamlit_loop(browser, workdir, args.labels, args.warmup)
            print(f"queue depth {depth:,}; labelling in the review UI ...", flush=True)
            reviewer = stack.make_key("reviewer", "bench-ui")
            ui = review_ui_loop(browser, stack.ui.url, reviewer, args.labels, args.warmup)
            print("timing the same loop against the API alone ...", flush=True)
            api = api_loop(
                stack.api.url, stack.make_key("reviewer", "bench-api"), args.labels, args.warmup
            )

    result = {
        "cases_queued": args.cases,
        "queue_depth": depth,
        "fill_seconds": round(fill_seconds, 1),
        "ui_key_to_next_case": ui["in_page"],
        "ui_key_to_next_case_seen_by_driver": ui["driver"],
        "bare_streamlit_key_to_next_id": bare["in_page"],
        "ratio_ui_to_bare_median": round(
            ui["in_page"]["median_ms"] / bare["in_page"]["median_ms"], 2
        ),
        "api": api,
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(result, indent=2) + "\n")
    rows = [
        ("UI: label key → next case id on screen (in page)", ui["in_page"]),
        ("UI: same, seen by the Playwright driver", ui["driver"]),
        ("Baseline: bare Streamlit page, key → new id (in page)", bare["in_page"]),
        ("API: label", api["label"]),
        ("API: claim next", api["claim"]),
        ("API: label + claim", api["label_plus_claim"]),
        ("API: metrics", api["metrics"]),
    ]
    print(f"\n{args.cases:,} cases queued in {fill_seconds:.0f} s (batches of {BATCH})\n")
    print("| step | n | median ms | p90 ms | max ms |")
    print("|---|---:|---:|---:|---:|")
    for name, q in rows:
        print(f"| {name} | {q['n']} | {q['median_ms']} | {q['p90_ms']} | {q['max_ms']} |")
    print(f"\nreview UI / bare Streamlit (median): {result['ratio_ui_to_bare_median']}")
    verdict = "meets" if ui["in_page"]["median_ms"] <= 300 else "MISSES"
    print(f"\nmedian {ui['in_page']['median_ms']} ms {verdict} the 300 ms target")


if __name__ == "__main__":
    main()
