"""Label quality benchmark (``make bench-quality``): noisy reviewers, overlap, second opinions.

Every run replays a seeded stream through :func:`learner.simulate.simulate` (the real
model, routing, queue and certified governor) with three simulated reviewers, two
accurate and one noisy (:class:`learner.panel.SimulatedReviewer`), under one label-quality
policy (:class:`learner.panel.QualityPolicy`):

- ``perfect``: the reference, one reviewer who is never wrong;
- ``single``: every case labelled once by one of the three (no quality rules);
- ``second``: second opinions when a label contradicts a model at least 0.98 sure or the
  reviewer's recent agreement (over gold cases, served at 5% of labels, and earlier
  checks) is below 0.95; at most 40% of labels get one;
- ``overlap2`` / ``overlap3``: two / three distinct reviewers per case, a lead decides
  disagreements.

Two kinds of noisy reviewer: ``bias`` takes the model's suggestion unchecked on every
case (automation bias: wrong exactly when the model is, about 10% of the cases they see)
and ``random`` gives a random other label on 10% of cases. The realized error of
automated decisions is measured against the stream's true labels; a run *violates* when
it exceeds the target by more than binomial noise (one-sided test at 5%).

``--quick`` runs a small smoke version. Results go to ``bench/out/quality/``.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from learner.panel import QualityPolicy, SimulatedReviewer  # noqa: E402
from learner.simulate import SimulationConfig, simulate  # noqa: E402

log = logging.getLogger("quality_bench")
OUT = Path(__file__).resolve().parent / "out" / "quality"

NOISE = {"bias": ("suggestion", 1.0), "random": ("random", 0.10)}
POLICIES: dict[str, QualityPolicy | None] = {
    "perfect": None,
    "single": QualityPolicy(),
    "second": QualityPolicy(
        second_opinion_confidence=0.98,
        second_opinion_agreement=0.95,
        second_opinion_share=0.4,
        gold_rate=0.05,
    ),
    "overlap2": QualityPolicy(labels_per_case=2),
    "overlap3": QualityPolicy(labels_per_case=3),
}


def team(noise: str) -> tuple[SimulatedReviewer, ...]:
    errors, rate = NOISE[noise]
    return (
        SimulatedReviewer("accurate-1", 0.0, errors),
        SimulatedReviewer("accurate-2", 0.0, errors),
        SimulatedReviewer("noisy", rate, errors),
    )


def run(stream: str, n: int, noise: str, policy: str, seed: int, target: float) -> dict[str, Any]:
    quality = POLICIES[policy]
    config = SimulationConfig(
        stream,
        seed=seed,
        n=n,
        target_error=target,
        reviewers=() if quality is None else team(noise),
        quality=quality,
    )
    result = simulate(config)
    review = result.review
    return {
        "stream": stream,
        "noise": noise,
        "policy": policy,
        "seed": seed,
        "automation": result.automation_rate,
        "realized_error": result.realized_auto_error,
        "above_target": (result.realized_auto_error or 0.0) > target,
        "violated": result.violated,
        "labels": result.labels,
        "opinions": review.get("opinions", result.labels),
        "second_opinion_share": review.get("second_opinion_share", 0.0),
        "escalations": review.get("escalations", 0),
        "final_label_error": review.get("final_label_error", 0.0),
        "noisy_reviewer_error": review.get("reviewer_error", {}).get("noisy"),
    }


def summarize(rows: pd.DataFrame) -> pd.DataFrame:
    grouped = rows.groupby(["stream", "noise", "policy"], sort=False)
    return (
        grouped.agg(
            runs=("seed", "count"),
            mean_error=("realized_error", "mean"),
            max_error=("realized_error", "max"),
            above_target=("above_target", "sum"),
            violated=("violated", "sum"),
            automation=("automation", "mean"),
            opinions_per_label=("opinions", "sum"),
            labels=("labels", "sum"),
            second_share=("second_opinion_share", "mean"),
            final_label_error=("final_label_error", "mean"),
            noisy_error=("noisy_reviewer_error", "mean"),
        )
        .assign(opinions_per_label=lambda f: f.opinions_per_label / f.labels)
        .drop(columns="labels")
    )


def claim_pick_cost(url: str, n_cases: int = 50_000, rounds: int = 20) -> dict[str, float]:
    """Time the claim's pick query with and without the label-quality filter.

    A queue of ``n_cases`` cases (0.2% leased, 0.2% with an opinion already), batches of
    100 picks alternating between the two forms; medians of the per-pick times.
    """
    import random
    import statistics

    from sqlalchemy import select, text
    from sqlmodel import col

    from api import migrate
    from api.db import Database
    from api.security import Principal
    from api.services import quality
    from api.tables import Case, Task

    migrate.upgrade(url)
    db = Database(url)
    now = time.time()
    rng = random.Random(0)
    with db.write() as session:
        task = Task(
            name="pick-bench",
            labels=["a", "b"],
            target_error=0.05,
            audit_rate=0.05,
            min_labels=10,
            threshold=0.9,
            delta=0.05,
            model_family="linear",
            created_at=now,
            updated_at=now,
        )
        session.add(task)
        session.flush()
        rows = []
        for i in range(n_cases):
            priority = rng.random()
            rows.append(
                {
                    "id": f"c_{i:08d}",
                    "task_id": task.id,
                    "features": {},
                    "created_at": now,
                    "status": "pending",
                    "queued": True,
                    "priority": priority,
                    "lease_id": "l" if priority < 0.002 else None,
                    "lease_expires_at": now + 3600 if priority < 0.002 else None,
                    "opinions": 1 if 0.002 <= priority < 0.004 else 0,
                }
            )
        session.execute(Case.__table__.insert(), rows)  # type: ignore[attr-defined]
        task_id = task.id
    if db.is_postgres:
        with db.engine.connect() as conn:
            conn.execute(text("COMMIT"))
            conn.execute(text("ANALYZE"))
    who = Principal(id="k_bench", name="bench", role="reviewer")

    def pick(with_quality: bool):  # type: ignore[no-untyped-def]
        query = select(Case.id).where(
            col(Case.task_id) == task_id,
            col(Case.queued).is_(True),
            col(Case.lease_expires_at).is_(None) | (col(Case.lease_expires_at) < time.time()),
        )
        if with_quality:
            query = query.where(quality.claimable_by(who))
        return query.order_by(col(Case.priority)).limit(1)

    times: dict[bool, list[float]] = {False: [], True: []}
    with db.engine.connect() as conn:
        for _ in range(rounds):
            for with_quality in (False, True):
                statement = pick(with_quality)
                start = time.perf_counter()
                for _ in range(100):
                    conn.execute(statement).scalar()
                times[with_quality].append((time.perf_counter() - start) / 100 * 1e6)
    db.dispose()
    plain, checked = statistics.median(times[False]), statistics.median(times[True])
    return {"plain_us": plain, "quality_us": checked, "ratio": checked / plain}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 seeds, 5 000 cases")
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--n", type=int, default=20_000)
    parser.add_argument("--target", type=float, default=0.05)
    parser.add_argument("--streams", nargs="+", default=["hyperplane", "sea", "tickets"])
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument(
        "--claims",
        metavar="DATABASE_URL",
        help="instead: time the claim's pick with and without the label-quality filter "
        "on this (empty) database",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    if args.claims:
        cost = claim_pick_cost(args.claims)
        print(
            f"claim pick: {cost['plain_us']:.0f} us plain, {cost['quality_us']:.0f} us with "
            f"the label-quality filter (ratio {cost['ratio']:.2f})"
        )
        return 0
    seeds, n = (2, 5_000) if args.quick else (args.seeds, args.n)
    started = time.perf_counter()
    rows = []
    for stream in args.streams:
        for noise in NOISE:
            for policy in POLICIES:
                for seed in range(seeds):
                    rows.append(run(stream, n, noise, policy, seed, args.target))
            print(f"{stream} / {noise}: done ({time.perf_counter() - started:.0f} s)", flush=True)
    frame = pd.DataFrame(rows)
    table = summarize(frame)
    args.out.mkdir(parents=True, exist_ok=True)
    frame.to_csv(args.out / "runs.csv", index=False)
    table.to_csv(args.out / "summary.csv")
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        text = table.to_string(float_format=lambda v: f"{v:.4f}" if not np.isnan(v) else "-")
    header = (
        f"quality bench: target {args.target:g}, {seeds} seeds x {n} cases per stream, "
        f"{time.perf_counter() - started:.0f} s"
    )
    (args.out / "report.md").write_text(f"{header}\n\n```\n{text}\n```\n")
    print(header)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
