"""``make bench-import``: bulk import of labelled history and of cases, in one run.

The baseline is the learner's own prequential loop on the same rows, with nothing stored:
predict, route, ``learn_one`` and the governor's ``observe`` (which re-certifies the
threshold after every label). A label import does all of that plus parsing, validation,
the label log, cases, routing records and curve points in SQLite, so the ratio to the
baseline is the cost of durability. Results are printed as a Markdown table and written
to ``bench/out/import.json``.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from api import migrate  # noqa: E402
from api.db import Database  # noqa: E402
from api.live import ModelStore  # noqa: E402
from api.schemas import TaskCreate  # noqa: E402
from api.services.imports import run_import  # noqa: E402
from api.services.tasks import create_task  # noqa: E402
from learner import (  # noqa: E402
    Evidence,
    RoutingPolicy,
    TaskGovernor,
    TaskModel,
    load_stream,
    route_case,
    schema_to_json,
)


def baseline(labels: list[str], schema: dict, rows: list[tuple[dict, str]]) -> float:
    """Labels per second of the bare prequential loop (model and governor only)."""
    model = TaskModel(labels, schema, "linear")
    governor = TaskGovernor(target_error=0.05, min_labels=50)
    started = time.perf_counter()
    for i, (x, y) in enumerate(rows):
        on = governor.mode == "automated"
        policy = RoutingPolicy(
            threshold=governor.threshold if on else 1.0,
            min_labels=50,
            automation_on=on,
        )
        d = route_case(
            model.predict_proba_one(x), policy=policy, n_labels=i, task="b", case_key=str(i)
        )
        model.learn_one(x, y)
        governor.observe(str(i), Evidence(d.confidence, d.suggestion == y, 1.0, on, d.route))
    return len(rows) / (time.perf_counter() - started)


def fresh_store(directory: Path, name: str, labels: list[str], schema: dict):  # type: ignore[no-untyped-def]
    url = f"sqlite:///{directory / name}.db"
    migrate.upgrade(url)
    db = Database(url)
    with db.write() as session:
        create_task(
            session, TaskCreate(name="bench", labels=labels, features=schema_to_json(schema))
        )
    return db, ModelStore(db, b"bench-secret", snapshot_every=200)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dataset", default="sea")
    parser.add_argument("--n", type=int, default=20_000)
    args = parser.parse_args()
    stream = load_stream(args.dataset, seed=0, n=args.n)
    rows = list(stream.rows)
    names = list(stream.schema)
    results = {"dataset": args.dataset, "rows": len(rows)}
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        history = directory / "history.jsonl"
        with open(history, "w") as out:
            for i, (x, y) in enumerate(rows):
                out.write(json.dumps({"external_id": f"h{i}", "features": x, "label": y}) + "\n")
        cases = directory / "cases.csv"
        with open(cases, "w", newline="") as out:
            writer = csv.writer(out)
            writer.writerow(["external_id", *names])
            for i, (x, _) in enumerate(rows):
                writer.writerow([f"c{i}", *[x.get(k) for k in names]])

        results["baseline_labels_per_s"] = baseline(stream.labels, stream.schema, rows)
        db, store = fresh_store(directory, "labels", stream.labels, stream.schema)
        report = run_import(db, store, "bench", history, "labels")
        results["import_labels_per_s"] = report.rate
        db.dispose()
        db, store = fresh_store(directory, "cases", stream.labels, stream.schema)
        report = run_import(db, store, "bench", cases, "cases")
        results["import_cases_per_s"] = report.rate
        db.dispose()

    ratio = results["import_labels_per_s"] / results["baseline_labels_per_s"]
    results["labels_ratio_to_baseline"] = ratio
    print(f"{args.dataset}, {len(rows):,} rows, linear model, SQLite\n")
    print("| what | per second | ratio |")
    print("|---|---|---|")
    print(
        f"| learner loop alone (predict, route, learn, governor) | "
        f"{results['baseline_labels_per_s']:,.0f} | 1.00 |"
    )
    print(
        f"| `tierline import labels` (JSON Lines) | {results['import_labels_per_s']:,.0f} | "
        f"{ratio:.2f} |"
    )
    print(f"| `tierline import cases` (CSV) | {results['import_cases_per_s']:,.0f} | |")
    out = ROOT / "bench" / "out"
    out.mkdir(exist_ok=True)
    (out / "import.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
