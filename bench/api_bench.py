"""``make bench``: tierline's case routes against a bare FastAPI endpoint, in one run.

The baseline is ``bench/bare_app.py``'s ``/bare`` (a plain ``def`` route, as the
issue measured it); ``/bare-async`` (the same as ``async def``, no threadpool hop) is
shown too, as the framework's own ceiling.

Both servers run the same way (uvicorn, one process, no access log) on this
machine and are loaded by the same generator (wrk, 2 threads, 16 connections),
one after the other. The figure that matters is the ratio to the bare endpoint.
Results are printed as a Markdown table and written to ``bench/out/api.json``.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
from itertools import islice
from pathlib import Path

import httpx
import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from learner import load_stream, schema_to_json  # noqa: E402
from tests.utils.server import ServerProcess, free_port  # noqa: E402

ADMIN = "tl_bench_admin"
LUA = """wrk.method = "POST"
wrk.body = [[{body}]]
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer {key}"
"""


def ensure_wrk() -> str:
    found = shutil.which("wrk")
    if found:
        return found
    print("installing wrk (Debian package) ...", flush=True)
    subprocess.run(
        ["apt-get", "install", "-y", "-q", "wrk"], check=False, stdout=subprocess.DEVNULL
    )
    if not shutil.which("wrk"):
        subprocess.run(["apt-get", "update", "-q"], check=True, stdout=subprocess.DEVNULL)
        subprocess.run(
            ["apt-get", "install", "-y", "-q", "wrk"], check=True, stdout=subprocess.DEVNULL
        )
    return shutil.which("wrk") or "wrk"


def wrk(
    url: str, body: dict, key: str, seconds: int, connections: int, pid: int | None = None
) -> dict:
    """wrk's rate and latency; with the server's ``pid``, also its CPU time per request
    (a figure other work on the machine barely moves, unlike requests per second)."""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(LUA.format(body=json.dumps(body), key=key))
    cpu_before = cpu_seconds(pid)
    out = subprocess.run(
        [
            ensure_wrk(),
            "-t2",
            f"-c{connections}",
            f"-d{seconds}s",
            "--latency",
            "-s",
            script.name,
            url,
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    cpu = cpu_seconds(pid) - cpu_before
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    total = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {
        "rps": rps,
        "cpu_us_per_request": cpu / total * 1e6 if pid and total else None,
        "p50_ms": _ms(out, "50%"),
        "p99_ms": _ms(out, "99%"),
        "errors": int(non2xx.group(1)) if non2xx else 0,
    }


def cpu_seconds(pid: int | None) -> float:
    """The process's CPU time so far, user + system (0 without a pid)."""
    if pid is None:
        return 0.0
    times = psutil.Process(pid).cpu_times()
    return times.user + times.system


def _ms(out: str, pct: str) -> float:
    value, unit = re.search(rf"{pct}\s+([\d.]+)(us|ms|s)", out).groups()  # type: ignore[union-attr]
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def start_bare() -> subprocess.Popen:
    port = free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "bench.bare_app:app",
            "--port",
            str(port),
            "--log-level",
            "warning",
            "--no-access-log",
        ],
        cwd=ROOT,
    )
    process.url = f"http://127.0.0.1:{port}"  # type: ignore[attr-defined]
    for _ in range(100):
        try:
            httpx.post(f"{process.url}/bare", json={})  # type: ignore[attr-defined]
            return process
        except httpx.TransportError:
            time.sleep(0.1)
    raise TimeoutError("bare server did not start")


def prepare_task(url: str, warm: int) -> tuple[dict, list[dict]]:
    """A phishing task past its cold start; returns a sample case and a batch of 1000."""
    stream = load_stream("phishing", seed=0)
    rows = list(islice(stream.rows, warm + 1000))
    with httpx.Client(
        base_url=url, headers={"Authorization": f"Bearer {ADMIN}"}, timeout=60
    ) as client:
        client.post(
            "/v1/tasks",
            json={
                "name": "bench",
                "labels": stream.labels,
                "features": schema_to_json(stream.schema),
                "min_labels": 50,
                "threshold": 0.9,
            },
        ).raise_for_status()
        truth = {}
        for x, y in rows[:warm]:
            truth[client.post("/v1/tasks/bench/cases", json={"features": x}).json()["id"]] = y
        while (claim := client.post("/v1/tasks/bench/queue/claim")).status_code == 200:
            claim = claim.json()
            client.post(
                f"/v1/cases/{claim['case']['id']}/label",
                json={
                    "label": truth.get(claim["case"]["id"], stream.labels[0]),
                    "lease_id": claim["lease_id"],
                },
            ).raise_for_status()
    return rows[warm][0], [{"features": x} for x, _ in rows[warm:]]


def batch_rate(url: str, batch: list[dict], seconds: float) -> tuple[float, int]:
    """One client sending the same 1,000-case body back to back, encoded once (as wrk sends
    one body for the other rows): the server's work, not the client's JSON encoding, which
    on a 2-core machine would take a core's time between calls."""
    body = json.dumps({"cases": batch}).encode()
    headers = {"Authorization": f"Bearer {ADMIN}", "Content-Type": "application/json"}
    with httpx.Client(base_url=url, headers=headers, timeout=60) as client:
        sent, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            client.post("/v1/tasks/bench/cases/batch", content=body).raise_for_status()
            sent += len(batch)
        return sent / (time.perf_counter() - start), sent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=16)
    args = parser.parse_args()
    ensure_wrk()
    results: dict[str, dict] = {}
    bare = start_bare()
    try:
        for name, path in (("bare", "/bare"), ("bare_async", "/bare-async")):
            results[name] = wrk(
                f"{bare.url}{path}",  # type: ignore[attr-defined]
                {"features": {"a": 1}},
                "none",
                args.seconds,
                args.connections,
                bare.pid,
            )
    finally:
        bare.terminate()
        bare.wait()
    with tempfile.TemporaryDirectory() as tmp:
        server = ServerProcess(
            {
                "TIERLINE_DATABASE_URL": f"sqlite:///{tmp}/bench.db",
                "TIERLINE_ADMIN_KEY": ADMIN,
                "TIERLINE_ENV": "dev",
            }
        ).start()
        try:
            sample, batch = prepare_task(server.url, warm=300)
            pid = server.process.pid  # type: ignore[union-attr]
            results["predict"] = wrk(
                f"{server.url}/v1/tasks/bench/predict",
                {"features": sample},
                ADMIN,
                args.seconds,
                args.connections,
                pid,
            )
            results["cases"] = wrk(
                f"{server.url}/v1/tasks/bench/cases",
                {"features": sample},
                ADMIN,
                args.seconds,
                args.connections,
                pid,
            )
            cpu_before = cpu_seconds(pid)
            rate, sent = batch_rate(server.url, batch, args.seconds)
            results["batch"] = {
                "cases_per_s": rate,
                "cpu_us_per_case": (cpu_seconds(pid) - cpu_before) / sent * 1e6,
            }
        finally:
            server.stop()
    base, base_async = results["bare"]["rps"], results["bare_async"]["rps"]
    print(
        "\n| endpoint | requests/s | ratio to bare | ratio to bare async | p50 ms | p99 ms "
        "| server CPU µs/request |\n|---|---|---|---|---|---|---|"
    )
    for name in ("bare", "bare_async", "predict", "cases"):
        r = results[name]
        print(
            f"| {name} | {r['rps']:.0f} | {r['rps'] / base:.2f} | {r['rps'] / base_async:.2f} "
            f"| {r['p50_ms']:.2f} | {r['p99_ms']:.2f} | {r['cpu_us_per_request']:.0f} |"
        )
    b = results["batch"]
    print(
        f"\nbatch (1,000 cases per call): {b['cases_per_s']:.0f} cases/s, "
        f"server CPU {b['cpu_us_per_case']:.0f} µs/case"
    )
    out = ROOT / "bench" / "out"
    out.mkdir(exist_ok=True)
    (out / "api.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
