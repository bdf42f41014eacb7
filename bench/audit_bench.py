"""``make bench-audit``: what the audit trail costs on the case write path, and how fast
``tierline audit verify`` walks the trail.

Cases are sent through the service layer (validate, score, route, store: the work of
``POST /v1/tasks/{task}/cases`` without HTTP) on a fresh SQLite database, one case per
call and in batches of 1,000, with the audit row recorded (as shipped) and with the
audit call replaced by a no-op (the baseline). The two are interleaved round by round in
one run, so machine noise hits both alike; the figure is the ratio. Results are printed
as a Markdown table and written to ``bench/out/audit.json``.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from api import migrate  # noqa: E402
from api.db import Database  # noqa: E402
from api.live import ModelStore  # noqa: E402
from api.schemas import CaseCreate, TaskCreate  # noqa: E402
from api.services import audit  # noqa: E402
from api.services.cases import submit_cases  # noqa: E402
from api.services.tasks import create_task  # noqa: E402
from tests.utils.factories import CLAIMS_FEATURES, claims_case  # noqa: E402


def _setup(directory: Path) -> tuple[Database, ModelStore]:
    url = f"sqlite:///{directory / 'bench.db'}"
    migrate.upgrade(url)
    db = Database(url)
    with db.write() as session:
        body = TaskCreate(
            name="claims", labels=["approve", "reject"], features=CLAIMS_FEATURES, min_labels=10
        )
        create_task(session, body)
    return db, ModelStore(db, b"bench-secret")


def _send(db: Database, store: ModelStore, items: list[CaseCreate], batch: int) -> float:
    """Seconds to store ``items`` in calls of ``batch`` cases."""
    start = time.perf_counter()
    for i in range(0, len(items), batch):
        submit_cases(db, store, "claims", items[i : i + batch], max_string_length=10_000)
    return time.perf_counter() - start


def _nothing(*args: object, **kwargs: object) -> None:
    """The baseline: no audit entry built, no row written."""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--singles", type=int, default=1000, help="single-case calls per round")
    parser.add_argument("--batches", type=int, default=5, help="1,000-case batches per round")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()

    rng = random.Random(0)
    real, real_entry = audit.record_many, audit.routed_entry
    # time spent in the audit code itself, per path: [seconds, cases]
    inside = {"single": [0.0, 0], "batch": [0.0, 0]}
    kind = ["single"]

    def timed_record(session, actor, task, entries):  # type: ignore[no-untyped-def]
        start = time.perf_counter()
        real(session, actor, task, entries)
        inside[kind[0]][0] += time.perf_counter() - start
        inside[kind[0]][1] += len(entries)

    def timed_entry(case, routing):  # type: ignore[no-untyped-def]
        start = time.perf_counter()
        entry = real_entry(case, routing)
        inside[kind[0]][0] += time.perf_counter() - start
        return entry

    results: dict[str, dict[str, list[float]]] = {
        "single": {"audited": [], "baseline": []},
        "batch": {"audited": [], "baseline": []},
    }
    with tempfile.TemporaryDirectory() as tmp:
        db, store = _setup(Path(tmp))
        for _ in range(args.rounds):
            for variant in ("audited", "baseline"):
                audited = variant == "audited"
                audit.record_many = timed_record if audited else _nothing  # type: ignore[assignment]
                audit.routed_entry = timed_entry if audited else _nothing  # type: ignore[assignment]
                kind[0] = "single"
                singles = [CaseCreate(features=claims_case(rng)[0]) for _ in range(args.singles)]
                seconds = _send(db, store, singles, 1)
                results["single"][variant].append(args.singles / seconds)
                kind[0] = "batch"
                batch = [
                    CaseCreate(features=claims_case(rng)[0]) for _ in range(1000 * args.batches)
                ]
                seconds = _send(db, store, batch, 1000)
                results["batch"][variant].append(len(batch) / seconds)
        audit.record_many, audit.routed_entry = real, real_entry  # type: ignore[assignment]
        with db.read() as session:
            start = time.perf_counter()
            verified = audit.verify(session)
            verify_seconds = time.perf_counter() - start
        db.group.stop() if hasattr(db, "group") else None
        db.dispose()

    summary = {
        kind: {variant: statistics.median(values) for variant, values in variants.items()}
        for kind, variants in results.items()
    }
    print("| path | audited cases/s | baseline cases/s | ratio |")
    print("|---|---:|---:|---:|")
    for kind, label in (("single", "one case per call"), ("batch", "1,000-case batches")):
        a, b = summary[kind]["audited"], summary[kind]["baseline"]
        print(f"| {label} | {a:,.0f} | {b:,.0f} | {a / b:.2f} |")
    per_case = {k: seconds / max(n, 1) * 1e6 for k, (seconds, n) in inside.items()}
    print(
        f"\ntime inside the audit code (digest, chain head, hashes, insert): "
        f"{per_case['single']:.0f} us per single-case call, "
        f"{per_case['batch']:.0f} us per case in batches"
    )
    rate = verified.rows / verify_seconds
    print(
        f"\naudit verify: {verified.rows:,} rows in {verify_seconds:.2f} s ({rate:,.0f} rows/s), "
        f"ok={verified.ok}"
    )
    out = ROOT / "bench" / "out"
    out.mkdir(exist_ok=True)
    (out / "audit.json").write_text(
        json.dumps(
            {
                "rounds": results,
                "median": summary,
                "verify_rows": verified.rows,
                "verify_seconds": verify_seconds,
                "audit_us_per_case": per_case,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
