"""``make bench-review``: claim-and-label cycles per second through the review routes.

One ``tierline serve`` on a fresh SQLite database; a ``phishing`` task (linear model)
kept in assist mode (``min_labels`` out of reach), so every case waits for a person,
is filled with cases through the batch route. Then reviewers run back to back, each
on its own connection (wrk, one thread and one connection per reviewer): claim the
next case, label it, claim the next ... Every label is stored in the label log and
applied to the live model (and its governor) before the call returns. A cycle is one
claim plus one label; the figure is labels answered 2xx per second.

Baseline in the same run: the bare FastAPI endpoint (``bench/bare_app.py``) under the
same wrk settings, two requests per cycle, so the ratio reads as "cycles per second as
a share of what two bare requests per cycle would allow". Results go to
``bench/out/review.json``.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import time
from itertools import cycle, islice
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.api_bench import ADMIN, cpu_seconds, ensure_wrk, start_bare, wrk  # noqa: E402
from learner import load_stream, schema_to_json  # noqa: E402
from tests.utils.server import ServerProcess  # noqa: E402

# wrk calls request() for the next request of a thread and response() for each answer; with
# one connection per thread they alternate: claim, label the claimed case, claim ...
CYCLE_LUA = r"""
local headers = {["Content-Type"] = "application/json", ["Authorization"] = "Bearer KEY"}
local labels = {LABELS}
pending, n, labelled, empty = nil, 0, 0, 0  -- globals: done() reads them per thread
local threads = {}
setup = function(thread) table.insert(threads, thread) end
request = function()
  if pending then
    n = n + 1
    local label = labels[(n % #labels) + 1]
    local body = '{"label":"' .. label .. '","lease_id":"' .. pending.lease .. '"}'
    local path = "/v1/cases/" .. pending.id .. "/label"
    pending = nil
    return wrk.format("POST", path, headers, body)
  end
  return wrk.format("POST", "/v1/tasks/TASK/queue/claim", headers, "")
end
response = function(status, hdrs, body)
  if status == 200 and body:find('"lease_id"', 1, true) then
    pending = {lease = body:match('"lease_id":"(l_%x+)"'), id = body:match('"id":"(c_%x+)"')}
    if not pending.id then pending = nil end
  elseif status == 200 then
    labelled = labelled + 1
  elseif status == 204 then
    empty = empty + 1
  end
end
done = function(summary, latency, requests)
  local total, none = 0, 0
  for _, t in ipairs(threads) do
    total = total + t:get("labelled")
    none = none + t:get("empty")
  end
  io.write(string.format("LABELLED %d EMPTY %d\n", total, none))
end
"""


def fill_queue(url: str, n: int) -> list[str]:
    stream = load_stream("phishing", seed=0)
    rows = [x for x, _ in islice(stream.rows, 1000)]
    with httpx.Client(
        base_url=url, headers={"Authorization": f"Bearer {ADMIN}"}, timeout=120
    ) as client:
        client.post(
            "/v1/tasks",
            json={
                "name": "review",
                "labels": stream.labels,
                "features": schema_to_json(stream.schema),
                "min_labels": 1_000_000,  # stays in assist: every case waits for a person
            },
        ).raise_for_status()
        source = cycle(rows)
        for start in range(0, n, 1000):
            batch = [{"features": next(source)} for _ in range(min(1000, n - start))]
            client.post("/v1/tasks/review/cases/batch", json={"cases": batch}).raise_for_status()
    return stream.labels


def cycles(url: str, labels: list[str], seconds: int, reviewers: int, pid: int) -> dict:
    lua = (
        CYCLE_LUA.replace("KEY", ADMIN)
        .replace("TASK", "review")
        .replace("LABELS", ", ".join(f'"{label}"' for label in labels))
    )
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(lua)
    cpu_before = cpu_seconds(pid)
    out = subprocess.run(
        [
            ensure_wrk(),
            f"-t{reviewers}",
            f"-c{reviewers}",
            f"-d{seconds}s",
            "--latency",
            "-s",
            script.name,
            f"{url}/v1/tasks/review/queue/claim",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    cpu = cpu_seconds(pid) - cpu_before
    found = re.search(r"LABELLED (\d+) EMPTY (\d+)", out)
    assert found, out
    labelled, empty = int(found.group(1)), int(found.group(2))
    p50 = re.search(r"50%\s+([\d.]+)(us|ms|s)", out)
    p99 = re.search(r"99%\s+([\d.]+)(us|ms|s)", out)
    scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}
    return {
        "cycles_per_s": labelled / seconds,
        "labels": labelled,
        "empty_claims": empty,
        "cpu_ms_per_cycle": cpu / labelled * 1000 if labelled else None,
        "p50_ms": float(p50.group(1)) * scale[p50.group(2)] if p50 else None,
        "p99_ms": float(p99.group(1)) * scale[p99.group(2)] if p99 else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--reviewers", type=int, default=4)
    parser.add_argument("--cases", type=int, default=20_000)
    args = parser.parse_args()
    ensure_wrk()
    results: dict = {}
    bare = start_bare()
    try:
        results["bare"] = wrk(
            f"{bare.url}/bare",  # type: ignore[attr-defined]
            {"features": {"a": 1}},
            "none",
            args.seconds,
            args.reviewers,
        )
    finally:
        bare.terminate()
        bare.wait()
    with tempfile.TemporaryDirectory() as tmp:
        server = ServerProcess(
            {
                "TIERLINE_DATABASE_URL": f"sqlite:///{tmp}/review.db",
                "TIERLINE_ADMIN_KEY": ADMIN,
                "TIERLINE_ENV": "dev",
            }
        ).start()
        try:
            start = time.perf_counter()
            labels = fill_queue(server.url, args.cases)
            results["fill_s"] = time.perf_counter() - start
            results["review"] = cycles(
                server.url, labels, args.seconds, args.reviewers, server.process.pid
            )
        finally:
            server.stop()
    bare_cycles = results["bare"]["rps"] / 2
    r = results["review"]
    r["ratio_to_bare"] = r["cycles_per_s"] / bare_cycles
    print(
        f"\n| what | per second | ratio |\n|---|---:|---:|\n"
        f"| bare endpoint, 2 requests per cycle ({args.reviewers} connections) "
        f"| {bare_cycles:.0f} | 1.00 |\n"
        f"| claim + label cycles ({args.reviewers} reviewers) | {r['cycles_per_s']:.0f} "
        f"| {r['ratio_to_bare']:.2f} |\n\nserver CPU {r['cpu_ms_per_cycle']:.2f} ms a cycle; "
        f"request latency p50 {r['p50_ms']} ms, p99 "
        f"{r['p99_ms']} ms; {r['labels']} labels, {r['empty_claims']} empty claims; "
        f"queue of {args.cases} filled in {results['fill_s']:.1f} s"
    )
    out = ROOT / "bench" / "out"
    out.mkdir(exist_ok=True)
    (out / "review.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
