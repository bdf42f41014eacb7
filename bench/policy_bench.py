"""Certified automation benchmark (``make bench-policy``): validity, efficiency, drift, AL.

Every run replays a seeded stream through :func:`learner.simulate.simulate`: the real
model, routing, review queue and governor, with a simulated reviewer.

- **Validity** (issue 3, point 5): targets 0.01, 0.02 and 0.05 at delta = 0.05, 20 seeds
  per stream, 30 000 cases per synthetic stream (every case of the shipped files). A run
  *violates* when the realized error of its automated decisions exceeds the target by
  more than binomial noise (one-sided binomial test at 5% on the realized count). The
  point-estimate and fixed-0.9 baselines run the same way.
- **Efficiency** (point 6): automation as a share of the best fixed threshold in
  hindsight (same run's predictions), beside the clairvoyant ceiling
  (:func:`learner.simulate.clairvoyant_automation`: what a certifier that saw every
  earlier case labelled could take), and labels per 1 000 cases; also on 100 000-case
  Hyperplane and SEA streams (``--only long``), where the warm-up weighs less.
- **Drift** (point 7): abrupt drift at case 15 000 of 25 000; cases and automated cases
  until the suspension, realized error of automated decisions in the 2 000 cases after
  the change, re-certification.
- **Inputs that move** (``--only shift``): the ``sweep`` stream, whose x1 sweeps across
  its range in order, so the evidence always lags the inputs; with the input monitor
  (:class:`learner.inputs.InputMonitor`, as shipped) and without it.
- **Active learning** (point 8): reviewers label 20% of arrivals; margin-ordered queue
  vs FIFO vs random: labels needed to reach the prequential accuracy FIFO ends with.

``--quick`` runs a small smoke version (a minute or two). Results go to
``bench/out/policy/`` (CSV per section, ``report.md`` with the tables, example curves).
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import sys
import time
from collections.abc import Callable, Iterable
from multiprocessing import Pool
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import binom

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from learner.simulate import SimulationConfig, simulate, write_outputs  # noqa: E402

log = logging.getLogger("policy_bench")
OUT = Path(__file__).resolve().parent / "out" / "policy"

#: (stream, model family, cases or None for the whole file)
VALIDITY_STREAMS: list[tuple[str, str, int | None]] = [
    ("sea", "linear", 30_000),
    ("shuttle", "linear", 30_000),
    ("hyperplane", "linear", 30_000),
    ("tickets", "linear", 30_000),
    ("agrawal", "linear", 30_000),
    ("randomrbf", "linear", 30_000),
    ("phishing", "linear", None),
    ("imagesegments", "linear", None),
    ("imagesegments", "forest", None),  # the family README.md recommends for it
    ("digits", "linear", None),
    ("bananas", "forest", None),
]
#: Short or hard streams for the efficiency figure at target 0.05 only.
HARD_STREAMS: list[tuple[str, str, int | None]] = [
    ("randomrbf", "forest", 6_000),
    ("tickets", "linear", 6_000),
]
#: Long stationary streams for the efficiency figure at target 0.05: how much of the gap to
#: hindsight at 30,000 cases is the warm-up before anything can be certified.
LONG_STREAMS: list[tuple[str, str, int | None]] = [
    ("hyperplane", "linear", 100_000),
    ("sea", "linear", 100_000),
]
TARGETS = (0.01, 0.02, 0.05)
SEEDS = 20
#: (stream, family, target, audit rate): abrupt drift at case 15 000 of 25 000.
DRIFT_RUNS: list[tuple[str, str, float, float]] = [
    ("sea", "linear", 0.05, 0.05),
    ("sea", "linear", 0.02, 0.05),
    ("sea", "linear", 0.05, 0.10),
    ("shuttle", "linear", 0.05, 0.05),
    ("tickets", "linear", 0.05, 0.05),
    ("hyperplane", "linear", 0.10, 0.05),
]
DRIFT_AT, DRIFT_N, DRIFT_SEEDS = 15_000, 25_000, 10
#: Inputs that move (covariate shift): the sweep stream (learner.datasets), one sweep of x1
#: across [-3, 3] per 10,000 cases, with the input monitor (as shipped) and without it.
SHIFT_N, SHIFT_SEEDS, SHIFT_TARGETS = 20_000, 20, (0.02, 0.05)
#: (stream, family, cases) under limited reviewer capacity.
AL_STREAMS: list[tuple[str, str, int | None]] = [
    ("sea", "linear", 10_000),
    ("hyperplane", "linear", 10_000),
    ("tickets", "linear", 10_000),
    ("phishing", "linear", None),
    ("imagesegments", "linear", None),
    ("digits", "linear", None),
    ("bananas", "forest", None),
]
AL_CAPACITY, AL_SEEDS, AL_ORDERS = 0.2, 10, ("margin", "fifo", "random")
#: Variants of the margin queue (one case arrives per second): as shipped (the hour of
#: ageing of :func:`learner.routing.queue_priority` bounded by the backlog, a review sample
#: at the audit rate served first), without the review sample, and without ageing.
AL_VARIANTS: dict[str, dict[str, Any]] = {
    "": {},
    " (no review sample)": {"review_sample": False},
    " (no ageing)": {"ageing_seconds": 1e12},
}


# --- one run per task (in a worker process) --------------------------------------------------


def _run(task: dict[str, Any]) -> dict[str, Any]:
    logging.getLogger("learner").setLevel(logging.WARNING)
    section = task.pop("section")
    curve_out = task.pop("curve_out", None)
    variant = task.pop("variant", "")
    started = time.perf_counter()
    result = simulate(SimulationConfig(**task))
    row: dict[str, Any] = {"section": section, "family": task.get("family", "linear")}
    row.update(result.summary())
    row["audit_rate"] = task.get("audit_rate", 0.05)
    row["watch_inputs"] = task.get("watch_inputs", True)
    row["seconds"] = time.perf_counter() - started
    if section == "active":
        # Prequential accuracy over the trailing tenth of the stream, at 100 points.
        n = result.cases
        width = max(1, n // 10)
        rolling = np.convolve(result.correct.astype(float), np.ones(width) / width, "valid")
        points = np.linspace(width - 1, n - 1, 100).round().astype(int)
        row["rolling_accuracy"] = rolling[points - (width - 1)].tolist()
        row["labels_at"] = result.labels_so_far[points].tolist()
        row["queue_order"] = task["queue_order"] + variant
    if curve_out:
        write_outputs(result, Path(curve_out))
    return row


def _tasks(quick: bool) -> list[dict[str, Any]]:
    seeds = range(3 if quick else SEEDS)
    validity = VALIDITY_STREAMS
    targets: Iterable[float] = TARGETS
    if quick:
        validity = [("sea", "linear", 5_000), ("phishing", "linear", None)]
        targets = (0.05,)
    curves = str(OUT / "curves")
    tasks: list[dict[str, Any]] = []
    for (name, family, n), seed in ((s, seed) for s in validity for seed in seeds):
        base = {"dataset": name, "family": family, "n": n, "seed": seed}
        tasks.append({"section": "validity", "policy": "fixed", **base})
        for target in targets:
            for policy in ("certified", "point"):
                task = {"section": "validity", "policy": policy, "target_error": target, **base}
                if policy == "certified" and seed == 0 and target == 0.05:
                    task["curve_out"] = curves
                tasks.append(task)
    efficiency_only = () if quick else (("hard", HARD_STREAMS), ("long", LONG_STREAMS))
    for section, streams in efficiency_only:
        for (name, family, n), seed in ((s, seed) for s in streams for seed in seeds):
            tasks.append(
                {
                    "section": section,
                    "dataset": name,
                    "family": family,
                    "n": n,
                    "seed": seed,
                    "target_error": 0.05,
                }
            )
    drift_runs = DRIFT_RUNS[:1] if quick else DRIFT_RUNS
    for (name, family, target, audit_rate), seed in (
        (r, seed) for r in drift_runs for seed in range(2 if quick else DRIFT_SEEDS)
    ):
        task = {
            "section": "drift",
            "dataset": name,
            "family": family,
            "seed": seed,
            "n": 9_000 if quick else DRIFT_N,
            "drift_at": 6_000 if quick else DRIFT_AT,
            "target_error": target,
            "audit_rate": audit_rate,
        }
        if seed == 0:
            task["curve_out"] = curves
        tasks.append(task)
    shift_targets = SHIFT_TARGETS[-1:] if quick else SHIFT_TARGETS
    for target, watch, seed in (
        (t, w, seed)
        for t in shift_targets
        for w in (True, False)
        for seed in range(2 if quick else SHIFT_SEEDS)
    ):
        tasks.append(
            {
                "section": "shift",
                "dataset": "sweep",
                "seed": seed,
                "n": 5_000 if quick else SHIFT_N,
                "target_error": target,
                "watch_inputs": watch,
            }
        )
    al_streams = [("phishing", "linear", None)] if quick else AL_STREAMS
    for (name, family, n), order, variant, seed in (
        (s, o, v, seed)
        for s in al_streams
        for o in AL_ORDERS
        for v in AL_VARIANTS
        for seed in range(2 if quick else AL_SEEDS)
    ):
        if variant and order != "margin":
            continue  # the variants only change the margin queue's order
        tasks.append(
            {
                "section": "active",
                "dataset": name,
                "family": family,
                "n": n,
                "seed": seed,
                "reviewer_capacity": AL_CAPACITY,
                "queue_order": order,
                "target_error": 0.05,
                "variant": variant,
                **AL_VARIANTS[variant],
            }
        )
    # Long runs first so that the two workers finish together.
    cost = {"forest": 4.0, "linear": 1.0}
    tasks.sort(key=lambda t: -(t.get("n") or 3_000) * cost[t.get("family", "linear")])
    return tasks


# --- tables ------------------------------------------------------------------------------------


def _pct(x: float | None, digits: int = 1) -> str:
    return (
        "–" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{100 * x:.{digits}f}%"
    )


def _violated(errors: int, cases: int, target: float) -> bool:
    return cases > 0 and binom.sf(errors - 1, cases, target) < 0.05


def validity_table(rows: pd.DataFrame) -> tuple[pd.DataFrame, str]:
    out = []
    fixed = rows[rows.policy == "fixed"]
    for (dataset, family), group in rows.groupby(["dataset", "family"], sort=False):
        fixed_runs = fixed[(fixed.dataset == dataset) & (fixed.family == family)]
        for target in sorted(group.target_error[group.policy == "certified"].unique()):
            line: dict[str, Any] = {
                "stream": dataset,
                "model": family,
                "cases": int(group.cases.iloc[0]),
                "target": target,
            }
            for policy in ("certified", "point"):
                runs = group[(group.policy == policy) & (group.target_error == target)]
                line[f"{policy}_runs"] = len(runs)
                line[f"{policy}_violations"] = int(runs.violated.sum())
                line[f"{policy}_automation"] = runs.automation_rate.mean()
                line[f"{policy}_error"] = (
                    runs.auto_errors.sum() / runs.auto_cases.sum()
                    if runs.auto_cases.sum()
                    else math.nan
                )
                line[f"{policy}_max_error"] = runs.realized_auto_error.max()
            flags = [
                _violated(int(r.auto_errors), int(r.auto_cases), target)
                for r in fixed_runs.itertuples()
            ]
            line["fixed_runs"] = len(flags)
            line["fixed_violations"] = int(sum(flags))
            line["fixed_automation"] = fixed_runs.automation_rate.mean()
            line["fixed_error"] = (
                fixed_runs.auto_errors.sum() / fixed_runs.auto_cases.sum()
                if fixed_runs.auto_cases.sum()
                else math.nan
            )
            out.append(line)
    table = pd.DataFrame(out)
    lines = [
        "| stream (model) | cases | target | certified: violations | automation | realized error "
        "(max) | point estimate: violations | automation | fixed 0.9: violations | automation "
        "| realized error |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in table.itertuples():
        lines.append(
            f"| {r.stream} ({r.model}) | {r.cases:,} | {r.target:g} | "
            f"{r.certified_violations}/{r.certified_runs} | {_pct(r.certified_automation)} | "
            f"{_pct(r.certified_error, 2)} ({_pct(r.certified_max_error, 2)}) | "
            f"{r.point_violations}/{r.point_runs} | {_pct(r.point_automation)} | "
            f"{r.fixed_violations}/{r.fixed_runs} | {_pct(r.fixed_automation)} | "
            f"{_pct(r.fixed_error, 1)} |"
        )
    return table, "\n".join(lines)


def efficiency_table(rows: pd.DataFrame) -> tuple[pd.DataFrame, str]:
    certified = rows[(rows.policy == "certified") & (rows.target_error == 0.05)]
    out = []
    for (dataset, family, cases), group in certified.groupby(
        ["dataset", "family", "cases"], sort=False
    ):
        hindsight = group.hindsight_automation.mean()
        out.append(
            {
                "stream": dataset,
                "model": family,
                "cases": int(cases),
                "runs": len(group),
                "automation": group.automation_rate.mean(),
                "hindsight": hindsight,
                "share_of_hindsight": (
                    group.automation_rate.mean() / hindsight if hindsight else math.nan
                ),
                "ceiling": group.ceiling_automation.mean(),
                "ceiling_share": group.ceiling_automation.mean() / hindsight
                if hindsight
                else math.nan,
                "labels_per_1000": group.labels_per_1000.mean(),
                "realized_error": group.auto_errors.sum() / max(1, group.auto_cases.sum()),
                "violations": sum(
                    _violated(r.auto_errors, r.auto_cases, 0.05) for r in group.itertuples()
                ),
                "suspensions": group.suspensions.mean(),
                "drift_alarms": group.drift_detections.mean(),
            }
        )
    table = pd.DataFrame(out)
    lines = [
        "| stream (model) | cases | automation | best fixed threshold in hindsight | share of "
        "hindsight | clairvoyant ceiling (share of hindsight) | labels / 1,000 cases "
        "| realized error | runs over target | suspensions / run | drift alarms / run |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in table.itertuples():
        nothing = r.hindsight < 0.01
        share = "n/a (nothing to automate)" if nothing else _pct(r.share_of_hindsight, 0)
        ceiling = f"{_pct(r.ceiling)} ({'n/a' if nothing else _pct(r.ceiling_share, 0)})"
        lines.append(
            f"| {r.stream} ({r.model}) | {r.cases:,} | {_pct(r.automation)} | {_pct(r.hindsight)} "
            f"| {share} | {ceiling} | {r.labels_per_1000:.0f} | {_pct(r.realized_error, 2)} | "
            f"{r.violations}/{r.runs} | {r.suspensions:.1f} | {r.drift_alarms:.2f} |"
        )
    return table, "\n".join(lines)


def drift_table(rows: pd.DataFrame) -> tuple[pd.DataFrame, str]:
    out = []
    for (dataset, target, audit_rate), group in rows.groupby(
        ["dataset", "target_error", "audit_rate"], sort=False
    ):
        suspended = group.suspended_at.notna()
        cases_to_suspend = (group.suspended_at - group.drift_at)[suspended]
        post = group.post_change_auto_error
        out.append(
            {
                "stream": dataset,
                "target": target,
                "audit_rate": audit_rate,
                "runs": len(group),
                "automation_before": group.auto_before_drift_rate.mean(),
                "suspended": int(suspended.sum()),
                "median_cases_to_suspend": cases_to_suspend.median()
                if suspended.any()
                else math.nan,
                "median_auto_before_suspension": group.auto_before_suspension[suspended].median(),
                "max_auto_before_suspension": group.auto_before_suspension[suspended].max(),
                "within_300": int((group.auto_before_suspension[suspended] <= 300).sum()),
                "median_auto_before_found": group.auto_before_audited_error.median(),
                "found_within_300": int((group.auto_before_audited_error <= 300).sum()),
                "post_error_median": post.median(),
                "post_error_max": post.max(),
                "under_2x": int((post.fillna(0.0) < 2 * target).sum()),
                "recertified": int(group.recertified_at.notna().sum()),
                "median_cases_to_recertify": (group.recertified_at - group.drift_at).median(),
            }
        )
    table = pd.DataFrame(out)
    lines = [
        "| stream | target | audit rate | automation before | suspended | automated cases "
        "until suspension (median, max) | ≤ 300 | automated cases until an audit finds an "
        "error (median; ≤ 300) | realized error, 2,000 cases after (median, max) | < 2× target "
        "| re-certified (median cases after change) |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in table.itertuples():
        lines.append(
            f"| {r.stream} | {r.target:g} | {r.audit_rate:g} | {_pct(r.automation_before)} | "
            f"{r.suspended}/{r.runs} | {r.median_auto_before_suspension:.0f}, "
            f"{r.max_auto_before_suspension:.0f} | {r.within_300}/{r.runs} | "
            f"{r.median_auto_before_found:.0f}; {r.found_within_300}/{r.runs} | "
            f"{_pct(r.post_error_median)}, {_pct(r.post_error_max)} | {r.under_2x}/{r.runs} | "
            f"{r.recertified}/{r.runs} ({r.median_cases_to_recertify:,.0f}) |"
        )
    return table, "\n".join(lines)


def shift_table(rows: pd.DataFrame) -> tuple[pd.DataFrame, str]:
    out = []
    for (target, watch), group in rows.groupby(["target_error", "watch_inputs"], sort=True):
        errors = group.auto_errors / group.auto_cases.where(group.auto_cases > 0)
        out.append(
            {
                "target": target,
                "input_monitor": "on" if watch else "off",
                "runs": len(group),
                "violations": int(group.violated.sum()),
                "automation": group.automation_rate.mean(),
                "realized_error": group.auto_errors.sum() / max(1, group.auto_cases.sum()),
                "realized_error_max": errors.max(),
                "labels_per_1000": group.labels_per_1000.mean(),
                "input_moves": group.input_moves.mean(),
                "suspensions": group.suspensions.mean(),
            }
        )
    table = pd.DataFrame(out)
    lines = [
        "| target | input monitor | violations | automation | realized error (max run) "
        "| labels / 1,000 cases | moves reported / run | suspensions / run |",
        "| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in table.itertuples():
        lines.append(
            f"| {r.target:g} | {r.input_monitor} | {r.violations}/{r.runs} | "
            f"{_pct(r.automation)} | {_pct(r.realized_error, 2)} ({_pct(r.realized_error_max, 2)}) "
            f"| {r.labels_per_1000:.0f} | {r.input_moves:.0f} | {r.suspensions:.1f} |"
        )
    return table, "\n".join(lines)


def active_table(rows: pd.DataFrame) -> tuple[pd.DataFrame, str]:
    out = []
    orders = list(dict.fromkeys([*(f"margin{v}" for v in AL_VARIANTS), *AL_ORDERS]))
    for dataset, group in rows.groupby("dataset", sort=False):
        curves = {}
        for order in orders:
            runs = group[group.queue_order == order]
            if runs.empty:
                continue
            curves[order] = (
                np.mean(np.array(runs.rolling_accuracy.tolist()), axis=0),
                np.mean(np.array(runs.labels_at.tolist()), axis=0),
                runs.automation_rate.mean(),
            )
        fifo_acc, fifo_labels, _ = curves["fifo"]
        goal, fifo_spent = fifo_acc[-1], fifo_labels[-1]
        line: dict[str, Any] = {
            "stream": dataset,
            "runs": len(group[group.queue_order == "fifo"]),
            "fifo_final_accuracy": goal,
            "fifo_labels": fifo_spent,
            "fifo_automation": curves["fifo"][2],
        }
        for order in orders:
            if order == "fifo" or order not in curves:
                continue
            acc, labels, automation = curves[order]
            reached = np.nonzero(acc >= goal)[0]
            line[f"{order}_labels"] = labels[reached[0]] if len(reached) else math.nan
            line[f"{order}_share"] = line[f"{order}_labels"] / fifo_spent
            line[f"{order}_final_accuracy"] = acc[-1]
            line[f"{order}_automation"] = automation
        out.append(line)
    table = pd.DataFrame(out)
    shown = [o for o in orders if o != "fifo" and f"{o}_share" in table]
    header = "| stream | FIFO: final accuracy | FIFO labels | " + " | ".join(
        f"{o}: share of FIFO's labels to reach it | final accuracy | automation" for o in shown
    )
    lines = [header + " |", "| --- | ---: | ---: |" + " ---: | ---: | ---: |" * len(shown)]
    for r in table.to_dict("records"):
        cells = [r["stream"], _pct(r["fifo_final_accuracy"]), f"{r['fifo_labels']:,.0f}"]
        for o in shown:
            share = r[f"{o}_share"]
            cells.append("not reached" if math.isnan(share) else _pct(share, 0))
            cells.append(_pct(r[f"{o}_final_accuracy"]))
            cells.append(_pct(r[f"{o}_automation"]))
        lines.append("| " + " | ".join(cells) + " |")
    return table, "\n".join(lines)


# --- main ----------------------------------------------------------------------------------------


def run(tasks: list[dict[str, Any]], processes: int) -> pd.DataFrame:
    rows = []
    started = time.perf_counter()
    with Pool(processes) as pool:
        for i, row in enumerate(pool.imap_unordered(_run, tasks), 1):
            rows.append(row)
            if i % 25 == 0 or i == len(tasks):
                log.info("%d/%d runs, %.0f s", i, len(tasks), time.perf_counter() - started)
    return pd.DataFrame(rows)


def report(rows: pd.DataFrame, seconds: float, quick: bool, suffix: str = "") -> str:
    sections: list[tuple[str, str, Callable]] = [
        ("validity", "Validity (realized error of automated decisions vs target)", validity_table),
        ("efficiency", "Efficiency at target 0.05", efficiency_table),
        ("drift", "Abrupt drift", drift_table),
        ("shift", "Inputs that move (the sweep stream)", shift_table),
        ("active", f"Active learning, reviewers at {AL_CAPACITY:.0%} of arrivals", active_table),
    ]
    parts = [
        f"# Certified automation benchmark{' (quick)' if quick else ''}",
        f"{len(rows)} runs, {seconds / 60:.1f} min on {os.cpu_count()} cores.",
    ]
    for key, title, make in sections:
        if key == "efficiency":
            subset = rows[rows.section.isin(["validity", "hard", "long"])]
        else:
            subset = rows[rows.section == key]
        if subset.empty:
            continue
        table, text = make(subset)
        table.to_csv(OUT / f"{key}{suffix}.csv", index=False)
        parts += [f"## {title}", text]
    return "\n\n".join(parts) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a small smoke run")
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument(
        "--only",
        choices=["validity", "hard", "long", "drift", "shift", "active"],
        help="run one section (its report goes to report-SECTION.md)",
    )
    parser.add_argument(
        "--policy",
        choices=["certified", "point", "fixed"],
        help="only the validity runs of this policy (the other sections are certified)",
    )
    parser.add_argument(
        "--dataset", nargs="+", help="only the runs on these data sets (to rerun a row)"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    logging.getLogger("learner").setLevel(logging.WARNING)
    OUT.mkdir(parents=True, exist_ok=True)
    tasks = _tasks(args.quick)
    if args.only:
        tasks = [t for t in tasks if t["section"] == args.only]
    if args.policy:
        tasks = [t for t in tasks if t.get("policy", "certified") == args.policy]
    if args.dataset:
        tasks = [t for t in tasks if t["dataset"] in args.dataset]
    log.info("%d runs on %d processes", len(tasks), args.processes)
    started = time.perf_counter()
    rows = run(tasks, args.processes)
    seconds = time.perf_counter() - started
    suffix = (
        ("-quick" if args.quick else "")
        + (f"-{args.only}" if args.only else "")
        + (f"-{args.policy}" if args.policy else "")
        + "".join(f"-{name}" for name in args.dataset or ())
    )
    rows.drop(columns=["rolling_accuracy", "labels_at"], errors="ignore").to_csv(
        OUT / f"runs{suffix}.csv", index=False
    )
    text = report(rows, seconds, args.quick, "-quick" if args.quick else "")
    (OUT / f"report{suffix}.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
