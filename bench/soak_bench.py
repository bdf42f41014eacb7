"""``make bench-soak``: memory and read latency with 1,000,000 stored cases, under a mixed soak.

1. A fresh SQLite database with a task (``bench``: the claims schema, linear model,
   in assist so every case waits for a person) and 1,000,000 waiting cases, filled in
   SQL (as ``make bench-scale`` does).
2. ``tierline serve`` on it: resident memory after start; ``GET /metrics`` and
   ``GET /curve`` 200 times each, and 1,000 claims from one client (each after a
   ``GET /v1/me`` baseline: the same HTTP and auth with no database), latency seen by
   the client.
3. The soak, for ``--minutes`` (10 by default): new cases under wrk (one connection),
   two reviewers claiming and labelling back to back (wrk, as ``make bench-review``),
   and a dashboard reading metrics and the curve every 0.2 s; resident memory of the
   server sampled every 5 s. "No growth trend": the least-squares slope of resident
   memory over the second half of the soak, in MB per minute.

Raw figures go to ``bench/out/soak.json``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.api_bench import ensure_wrk  # noqa: E402
from bench.review_bench import CYCLE_LUA  # noqa: E402
from bench.scale_bench import ADMIN, admin, big_database, env_for, percentile  # noqa: E402
from tests.utils.databases import TestDatabases  # noqa: E402
from tests.utils.factories import claims_case  # noqa: E402
from tests.utils.server import ServerProcess  # noqa: E402

CASES_LUA = """wrk.method = "POST"
wrk.body = [[{body}]]
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer {key}"
"""


def rss_mb(pid: int) -> float:
    return psutil.Process(pid).memory_info().rss / 2**20


def timed_gets(client: httpx.Client, path: str, n: int) -> list[float]:
    times = []
    for _ in range(n):
        start = time.perf_counter()
        client.get(path).raise_for_status()
        times.append((time.perf_counter() - start) * 1000)
    return times


def summary(times: list[float]) -> dict:
    return {
        "n": len(times),
        "p50_ms": statistics.median(times),
        "p99_ms": percentile(times, 0.99),
        "max_ms": max(times),
    }


def claims(client: httpx.Client, n: int) -> tuple[list[float], list[float]]:
    one, floor = [], []
    for _ in range(n):
        start = time.perf_counter()
        client.get("/v1/me").raise_for_status()
        floor.append((time.perf_counter() - start) * 1000)
        start = time.perf_counter()
        r = client.post("/v1/tasks/bench/queue/claim")
        one.append((time.perf_counter() - start) * 1000)
        assert r.status_code == 200, r.text
    return one, floor


def slope_mb_per_min(samples: list[tuple[float, float]]) -> float:
    xs = [t / 60 for t, _ in samples]
    ys = [m for _, m in samples]
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    den = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / den if den else 0.0


def soak(server: ServerProcess, reviewer_key: str, minutes: float) -> dict:
    seconds = max(10, round(minutes * 60))
    pid = server.process.pid  # type: ignore[union-attr]
    case_body = json.dumps({"features": claims_case(__import__("random").Random(1))[0]})
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as cases_script:
        cases_script.write(CASES_LUA.format(body=case_body, key=ADMIN))
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as review_script:
        review_script.write(
            CYCLE_LUA.replace("KEY", reviewer_key)
            .replace("TASK", "bench")
            .replace("LABELS", '"approve", "reject"')
        )
    wrk = ensure_wrk()
    loads = [
        subprocess.Popen(
            [wrk, "-t1", "-c1", f"-d{seconds}s", "-s", cases_script.name,
             f"{server.url}/v1/tasks/bench/cases"],
            stdout=subprocess.PIPE, text=True,
        ),
        subprocess.Popen(
            [wrk, "-t2", "-c2", f"-d{seconds}s", "-s", review_script.name,
             f"{server.url}/v1/tasks/bench/queue/claim"],
            stdout=subprocess.PIPE, text=True,
        ),
    ]  # fmt: skip
    samples: list[tuple[float, float]] = []
    reads: list[float] = []
    stop = threading.Event()

    def dashboard() -> None:
        with httpx.Client(
            base_url=server.url, headers={"Authorization": f"Bearer {ADMIN}"}, timeout=60
        ) as c:
            while not stop.wait(0.2):
                for path in ("/v1/tasks/bench/metrics", "/v1/tasks/bench/curve"):
                    start = time.perf_counter()
                    c.get(path).raise_for_status()
                    reads.append((time.perf_counter() - start) * 1000)

    reader = threading.Thread(target=dashboard, daemon=True)
    reader.start()
    start = time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        samples.append((elapsed, rss_mb(pid)))
        time.sleep(5)
    samples.append((time.perf_counter() - start, rss_mb(pid)))
    stop.set()
    reader.join()
    outputs = [p.communicate()[0] for p in loads]
    import re

    rate = [float(re.search(r"Requests/sec:\s+([\d.]+)", o).group(1)) for o in outputs]  # type: ignore[union-attr]
    labelled = re.search(r"LABELLED (\d+)", outputs[1])
    second_half = [s for s in samples if s[0] >= seconds / 2]
    return {
        "seconds": seconds,
        "cases_per_s": rate[0],
        "review_requests_per_s": rate[1],
        "labels": int(labelled.group(1)) if labelled else None,
        "rss_mb": {
            "first": samples[0][1],
            "last": samples[-1][1],
            "max": max(m for _, m in samples),
            "slope_second_half_mb_per_min": slope_mb_per_min(second_half),
        },
        "reads": summary(reads),
        "samples": samples,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cases", type=int, default=1_000_000)
    parser.add_argument("--minutes", type=float, default=10.0)
    args = parser.parse_args()
    ensure_wrk()
    results: dict = {"stored_cases": args.cases}
    with tempfile.TemporaryDirectory() as tmp:
        dbs = TestDatabases("sqlite", Path(tmp))
        url, results["fill_s"] = big_database(dbs, Path(tmp), args.cases)
        server = ServerProcess(env_for(url)).start()
        try:
            pid = server.process.pid  # type: ignore[union-attr]
            results["rss_after_start_mb"] = rss_mb(pid)
            with admin(server.url) as a:
                key = a.post("/v1/keys", json={"name": "rev", "role": "reviewer"}).json()["key"]
                results["metrics"] = summary(timed_gets(a, "/v1/tasks/bench/metrics", 200))
                results["curve"] = summary(timed_gets(a, "/v1/tasks/bench/curve", 200))
            with httpx.Client(
                base_url=server.url, headers={"Authorization": f"Bearer {key}"}, timeout=60
            ) as r:
                claims(r, 20)  # warm-up
                one, floor = claims(r, 1000)
            results["claim"] = summary(one)
            results["baseline_me"] = summary(floor)
            results["soak"] = soak(server, key, args.minutes)
            results["rss_end_mb"] = rss_mb(pid)
        finally:
            server.stop()
    s = results["soak"]
    print(
        f"\n{args.cases:,} stored cases (filled in {results['fill_s']:.1f} s); resident "
        f"memory after start {results['rss_after_start_mb']:.0f} MB\n\n"
        "| read | n | p50 ms | p99 ms | max ms |\n|---|---:|---:|---:|---:|"
    )
    for name in ("metrics", "curve", "claim", "baseline_me"):
        r = results[name]
        print(f"| {name} | {r['n']} | {r['p50_ms']:.1f} | {r['p99_ms']:.1f} | {r['max_ms']:.1f} |")
    rss = s["rss_mb"]
    print(
        f"\nsoak {s['seconds']} s: {s['cases_per_s']:.0f} cases/s, {s['labels']} labels, "
        f"metrics+curve reads p50 {s['reads']['p50_ms']:.1f} ms p99 {s['reads']['p99_ms']:.1f} ms; "
        f"RSS first {rss['first']:.0f} MB, last {rss['last']:.0f} MB, max {rss['max']:.0f} MB, "
        f"slope over the second half {rss['slope_second_half_mb_per_min']:+.2f} MB/min"
    )
    out = ROOT / "bench" / "out"
    out.mkdir(exist_ok=True)
    (out / "soak.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
