"""``make bench-scale``: tierline on PostgreSQL with 1, 2 and 4 processes, against SQLite.

1. **Throughput.** ``POST /v1/tasks/{task}/cases`` under wrk (2 threads, 16 connections)
   for one ``tierline serve`` process on SQLite and for ``tierline serve --workers N``
   (N = 1, 2, 4) on PostgreSQL, each on a fresh database with a task past its cold start,
   one after the other in the same run.
2. **Claims with 1,000,000 cases waiting**, on each backend: the queue is filled in SQL,
   then a server is started and cases are claimed one at a time (one client) and by 8
   clients at once; client-side latency (HTTP included).
3. **Query plans** of the hot statements, captured while the service functions run
   against the 1,000,000-case databases (claim, label, the leader's catch-up, the
   followers' snapshot poll, an external-id lookup); a plan that scans the case, label or
   routing table is flagged.

Figures are printed as Markdown and written to ``bench/out/scale.json``.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import create_engine, event, text

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from api.db import Database  # noqa: E402
from api.live import ModelStore  # noqa: E402
from api.schemas import CaseCreate, LabelCreate  # noqa: E402
from api.security import Principal  # noqa: E402
from api.services import cases as case_service  # noqa: E402
from api.services import review  # noqa: E402
from api.settings import DEV_SECRET  # noqa: E402
from bench.api_bench import ensure_wrk, prepare_task, wrk  # noqa: E402
from tests.utils.databases import TestDatabases  # noqa: E402
from tests.utils.factories import CLAIMS_FEATURES, claims_case  # noqa: E402
from tests.utils.server import ServerProcess  # noqa: E402

ADMIN = "tl_bench_admin"
BIG = 1_000_000
BIG_TABLES = ("case", "label", "routing")


def env_for(url: str) -> dict[str, str]:
    return {
        "TIERLINE_DATABASE_URL": url,
        "TIERLINE_ADMIN_KEY": ADMIN,
        "TIERLINE_ENV": "dev",
        "TIERLINE_WEBHOOK_DISPATCH": "false",
    }


def admin(url: str) -> httpx.Client:
    return httpx.Client(base_url=url, headers={"Authorization": f"Bearer {ADMIN}"}, timeout=120)


# --- 1. throughput ------------------------------------------------------------------------
def throughput(url: str, workers: int, seconds: int, connections: int, rounds: int) -> dict:
    """wrk ``rounds`` times on one server; the round with the median rate (noisy machine)."""
    args = ("--workers", str(workers)) if workers > 1 else ()
    server = ServerProcess(env_for(url), args=args).start()
    try:
        sample, _ = prepare_task(server.url, warm=300)
        time.sleep(1)  # let every worker load the model
        runs = [
            wrk(
                f"{server.url}/v1/tasks/bench/cases",
                {"features": sample},
                ADMIN,
                seconds,
                connections,
            )
            for _ in range(rounds)
        ]
    finally:
        server.stop()
    runs.sort(key=lambda r: r["rps"])
    return {**runs[len(runs) // 2], "rounds_rps": [r["rps"] for r in runs]}


# --- 2. a queue of 1,000,000 ------------------------------------------------------------
FEATURES = json.dumps({"amount": 120.5, "country": "fr", "note": "windscreen repair", "vip": False})
PROBA = json.dumps({"approve": 0.6, "reject": 0.4})


def fill_queue(url: str, task_id: int, n: int) -> float:
    """``n`` waiting review cases (and their routing rows), straight in SQL; seconds taken."""
    start = time.perf_counter()
    engine = create_engine(url)
    if url.startswith("postgresql"):
        series = "generate_series(1, :n) AS g(i)"
        case_id = "'c_' || lpad(g.i::text, 24, '0')"
        rnd = "random()"
        prefix = ""
    else:
        series = "s"
        case_id = "'c_' || printf('%024d', s.i)"
        rnd = "(abs(random()) % 1000000) / 1000000.0"
        prefix = "WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < :n) "
    with engine.begin() as conn:
        conn.execute(
            text(
                prefix + 'INSERT INTO "case" (id, task_id, features, created_at, status, queued,'
                " priority) SELECT "
                + case_id
                + ", :task, :features, :now, 'pending', TRUE, "
                + rnd
                + " FROM "
                + series
            ),
            {"n": n, "task": task_id, "features": FEATURES, "now": time.time()},
        )
        conn.execute(
            text(
                prefix + "INSERT INTO routing (case_id, route, suggestion, confidence, proba,"
                " threshold, audit, reasons, propensity, margin, model_version) SELECT "
                + case_id
                + ", 'review', 'approve', 0.6, :proba, 0.9, FALSE, '[\"bench\"]',"
                " 1.0, 0.2, 0 FROM " + series
            ),
            {"n": n, "proba": PROBA},
        )
        conn.execute(
            text(
                "UPDATE task SET n_cases = n_cases + :n, n_pending = n_pending + :n,"
                " n_queued = n_queued + :n WHERE id = :task"
            ),
            {"n": n, "task": task_id},
        )
        if url.startswith("postgresql"):  # what autovacuum would do soon after such a load
            conn.execute(text('ANALYZE "case"'))
        # (SQLite: no ANALYZE, as the service never runs one. With statistics, SQLite counts
        # the NULL external ids as one value and stops using (task_id, external_id).)
    engine.dispose()
    return time.perf_counter() - start


def bytes_per_case(url: str, n: int) -> float:
    """Disk taken by the case and routing tables with their indexes, per waiting case."""
    if url.startswith("sqlite"):
        return Path(url.removeprefix("sqlite:///")).stat().st_size / n
    engine = create_engine(url)
    with engine.connect() as conn:
        size = conn.execute(
            text("SELECT pg_total_relation_size('\"case\"') + pg_total_relation_size('routing')")
        ).scalar_one()
    engine.dispose()
    return float(size) / n


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def claim_latency(url: str, sequential: int, concurrent: int, clients: int) -> dict:
    """Claims one at a time, then from ``clients`` at once; baseline: ``GET /v1/me`` (the
    same HTTP, auth and JSON, no database), interleaved with the claims of one client."""
    server = ServerProcess(env_for(url)).start()
    try:
        with admin(server.url) as a:
            key = a.post("/v1/keys", json={"name": "rev", "role": "reviewer"}).json()["key"]

        def claims(n: int, out: list[float], baseline: list[float] | None = None) -> None:
            with httpx.Client(
                base_url=server.url, headers={"Authorization": f"Bearer {key}"}, timeout=60
            ) as c:
                for _ in range(n):
                    if baseline is not None:
                        start = time.perf_counter()
                        c.get("/v1/me").raise_for_status()
                        baseline.append((time.perf_counter() - start) * 1000)
                    start = time.perf_counter()
                    r = c.post("/v1/tasks/bench/queue/claim")
                    out.append((time.perf_counter() - start) * 1000)
                    assert r.status_code == 200, r.text

        claims(20, [])  # warm-up
        one: list[float] = []
        floor: list[float] = []
        claims(sequential, one, floor)
        many: list[float] = []
        threads = [
            threading.Thread(target=claims, args=(concurrent // clients, many))
            for _ in range(clients)
        ]
        started = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        elapsed = time.perf_counter() - started
    finally:
        server.stop()
    return {
        "sequential": {
            "n": len(one),
            "p50_ms": statistics.median(one),
            "p99_ms": percentile(one, 0.99),
        },
        "baseline_me": {
            "n": len(floor),
            "p50_ms": statistics.median(floor),
            "p99_ms": percentile(floor, 0.99),
        },
        "concurrent": {
            "clients": clients,
            "n": len(many),
            "p50_ms": statistics.median(many),
            "p99_ms": percentile(many, 0.99),
            "claims_per_s": len(many) / elapsed,
        },
    }


# --- 3. query plans -----------------------------------------------------------------------
@contextmanager
def captured(db: Database) -> Iterator[list[tuple[str, Any]]]:
    """Every statement the service sends while the block runs."""
    seen: list[tuple[str, Any]] = []

    def listen(_conn, _cursor, statement, parameters, _context, _many) -> None:  # type: ignore[no-untyped-def]
        seen.append((statement, parameters))

    engines = {id(db.engine): db.engine, id(db.write_engine): db.write_engine}
    for engine in engines.values():
        event.listen(engine, "before_cursor_execute", listen)
    try:
        yield seen
    finally:
        for engine in engines.values():
            event.remove(engine, "before_cursor_execute", listen)


def hot_statements(url: str) -> dict[str, tuple[str, Any]]:
    """Run the hot service paths once against the big database; their statements by name."""
    db = Database(url)
    store = ModelStore(db, DEV_SECRET.encode())
    who = Principal(id="k_plan", name="planner", role="admin")
    found: dict[str, tuple[str, Any]] = {}

    def first(seen: list[tuple[str, Any]], start: str, name: str, contains: str = "") -> None:
        for statement, params in seen:
            flat = " ".join(statement.split())
            if flat.upper().startswith(start) and contains in flat:
                found[name] = (statement, params)
                return

    try:
        with captured(db) as seen:
            claim = review.claim_next(db, store, "bench", who, 600)
        assert claim is not None
        first(seen, "UPDATE", "claim: lease the most useful waiting case")
        first(seen, "SELECT", "claim: load the case with its routing and task", "JOIN routing")
        with captured(db) as seen:
            review.label_case(
                db, store, claim.case.id, LabelCreate(label="approve", lease_id=claim.lease_id), who
            )
        first(seen, "UPDATE", "label: conditional on the lease", "lease_id")
        task = store.tasks.get("bench")
        with captured(db) as seen:
            store.catch_up(store.new_live(task))
        first(seen, "SELECT", "leader: catch up on the label log", "FROM label")
        with captured(db) as seen:
            case_service.submit_cases(
                db,
                store,
                "bench",
                [CaseCreate(external_id="ext-plan", features=json.loads(FEATURES))],
                max_string_length=10_000,
            )
        first(seen, "SELECT", "cases: external id seen before?", "external_id IN")
        with captured(db) as seen:
            store.newest_snapshots()
        first(seen, "SELECT", "followers: newest snapshot per task", "model_snapshot")
    finally:
        db.dispose()
    return found


def explain(url: str, statement: str, params: Any) -> list[str]:
    """The plan; PostgreSQL runs it (EXPLAIN ANALYZE) in a transaction rolled back."""
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            if url.startswith("postgresql"):
                rows = conn.exec_driver_sql(
                    "EXPLAIN (ANALYZE, COSTS OFF, SUMMARY OFF) " + statement, params
                ).all()
                lines = [r[0] for r in rows]
            else:
                rows = conn.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, params).all()
                lines = [r[-1] for r in rows]
            conn.rollback()
    finally:
        engine.dispose()
    return lines


def scans_big_table(lines: list[str]) -> bool:
    for line in lines:
        for table in BIG_TABLES:
            if f'Seq Scan on "{table}"' in line or f"Seq Scan on {table} " in line + " ":
                return True
            words = line.split()
            if words[:2] == ["SCAN", table] and "INDEX" not in line:
                return True
    return False


# --- the run ------------------------------------------------------------------------------
def big_database(dbs: TestDatabases, workdir: Path, n: int) -> tuple[str, float]:
    url = dbs.fresh(workdir)
    server = ServerProcess(env_for(url)).start()
    try:
        with admin(server.url) as a:
            a.post(
                "/v1/tasks",
                json={
                    "name": "bench",
                    "labels": ["approve", "reject"],
                    "features": CLAIMS_FEATURES,
                    "min_labels": 1_000_000,
                },
            ).raise_for_status()
            rng = random.Random(0)  # a few real cases and labels, so the log is not empty
            a.post(
                "/v1/tasks/bench/cases/batch",
                json={"cases": [{"features": claims_case(rng)[0]} for _ in range(50)]},
            ).raise_for_status()
            task_id = 1
    finally:
        server.stop()
    return url, fill_queue(url, task_id, n)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3, help="wrk runs per configuration")
    parser.add_argument("--processes", default="1,2,4")
    parser.add_argument("--claims", type=int, default=1000)
    parser.add_argument("--queue", type=int, default=BIG, help="cases waiting for the claims")
    args = parser.parse_args()
    ensure_wrk()
    results: dict[str, Any] = {"throughput": {}, "claims": {}, "plans": {}, "queue": args.queue}
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        sqlite = TestDatabases("sqlite", workdir)
        # PostgreSQL as configured (synchronous commits), not the tests' fast-commit databases
        pg = TestDatabases("postgresql", workdir, prefix="tierline_bench", fast_commits=False)
        try:
            print("throughput: SQLite, 1 process", flush=True)
            results["throughput"]["sqlite-1"] = throughput(
                sqlite.fresh(), 1, args.seconds, args.connections, args.rounds
            )
            for n in [int(p) for p in args.processes.split(",")]:
                print(f"throughput: PostgreSQL, {n} process(es)", flush=True)
                results["throughput"][f"postgresql-{n}"] = throughput(
                    pg.fresh(), n, args.seconds, args.connections, args.rounds
                )
            for name, dbs in (("sqlite", sqlite), ("postgresql", pg)):
                print(f"claims with {args.queue:,} waiting: {name}", flush=True)
                url, filled = big_database(dbs, workdir, args.queue)
                latency = claim_latency(url, args.claims, args.claims, clients=8)
                latency["fill_seconds"] = filled
                latency["bytes_per_case"] = bytes_per_case(url, args.queue)
                results["claims"][name] = latency
                plans = {}
                for label, (statement, params) in hot_statements(url).items():
                    lines = explain(url, statement, params)
                    plans[label] = {"plan": lines, "scans_big_table": scans_big_table(lines)}
                results["plans"][name] = plans
        finally:
            pg.drop_all()
    report(results)
    out = ROOT / "bench" / "out"
    out.mkdir(exist_ok=True)
    (out / "scale.json").write_text(json.dumps(results, indent=2))


def report(results: dict[str, Any]) -> None:
    t = results["throughput"]
    base = t["sqlite-1"]["rps"]
    print("\n| backend | processes | cases/s | vs SQLite | p50 ms | p99 ms | non-2xx | rounds |")
    print("|---|---:|---:|---:|---:|---:|---:|---|")
    for name, r in t.items():
        backend, n = name.rsplit("-", 1)
        rounds = ", ".join(f"{x:.0f}" for x in r["rounds_rps"])
        print(
            f"| {backend} | {n} | {r['rps']:.0f} | {r['rps'] / base:.2f} | {r['p50_ms']:.1f} "
            f"| {r['p99_ms']:.1f} | {r['errors']} | {rounds} |"
        )
    print(f"\n| backend ({results['queue']:,} waiting) | claims | p50 ms | p99 ms | claims/s |")
    print("|---|---|---:|---:|---:|")
    for name, r in results["claims"].items():
        s, c, b = r["sequential"], r["concurrent"], r["baseline_me"]
        print(f"| {name} | 1 client, {s['n']} | {s['p50_ms']:.1f} | {s['p99_ms']:.1f} | |")
        print(f"| {name} | baseline GET /v1/me | {b['p50_ms']:.1f} | {b['p99_ms']:.1f} | |")
        print(
            f"| {name} | {c['clients']} clients, {c['n']} | {c['p50_ms']:.1f} "
            f"| {c['p99_ms']:.1f} | {c['claims_per_s']:.0f} |"
        )
    for name, plans in results["plans"].items():
        print(f"\n{name}:")
        for label, p in plans.items():
            flag = "  <-- SCANS A BIG TABLE" if p["scans_big_table"] else ""
            print(f"- {label}{flag}")
            for line in p["plan"]:
                print(f"      {line}")


if __name__ == "__main__":
    main()
