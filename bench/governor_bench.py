"""The cost of certification per label: ``TaskGovernor.observe`` alone.

Records the evidence of the bare import loop (predict, route, learn, governor; as in
``bench/import_bench.py``) on 20,000 rows of SEA and of Hyperplane, then replays it into
fresh governors and times ``observe`` only: one evidence window of 3,000 labels (the
setting before several windows), and the defaults (windows of 1,000, 4,000 and 16,000
labels). ``--controller PATH`` times another copy of ``learner/controller.py`` too (e.g.
an older version from git), with both settings, on the same evidence; each is run
``--repeats`` times (default 3), interleaved, and the fastest run counts. Run:
``python bench/governor_bench.py [--controller OLD.py]``.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from learner import TaskModel  # noqa: E402
from learner import controller as current  # noqa: E402
from learner.datasets import load_stream  # noqa: E402
from learner.routing import RoutingPolicy, route_case  # noqa: E402


def record(dataset: str, n: int) -> list[tuple[str, current.Evidence]]:
    stream = load_stream(dataset, seed=0, n=n)
    model = TaskModel(stream.labels, stream.schema, "linear")
    governor = current.TaskGovernor(target_error=0.05, min_labels=50, window=3000)
    evidence = []
    for i, (x, y) in enumerate(stream.rows):
        on = governor.mode == "automated"
        policy = RoutingPolicy(
            threshold=governor.threshold if on else 1.0, min_labels=50, automation_on=on
        )
        d = route_case(
            model.predict_proba_one(x), policy=policy, n_labels=i, task="b", case_key=str(i)
        )
        model.learn_one(x, y)
        e = current.Evidence(d.confidence, d.suggestion == y, 1.0, on, d.route)
        governor.observe(str(i), e)
        evidence.append((str(i), e))
    return evidence


def time_observe(module, evidence, **settings) -> float:  # type: ignore[no-untyped-def]
    governor = module.TaskGovernor(target_error=0.05, min_labels=50, **settings)
    items = [
        (k, module.Evidence(e.confidence, e.correct, e.propensity, e.audit, e.route))
        for k, e in evidence
    ]
    started = time.perf_counter()
    for key, e in items:
        governor.observe(key, e)
    return 1e6 * (time.perf_counter() - started) / len(items)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--controller", type=Path, help="another learner/controller.py to time")
    parser.add_argument("--n", type=int, default=20_000)
    parser.add_argument("--repeats", type=int, default=3, help="runs of each; the best counts")
    args = parser.parse_args()
    variants = [
        ("one window of 3,000 labels", current, {"window": 3000}),
        ("default windows", current, {}),
    ]
    if args.controller:
        spec = importlib.util.spec_from_file_location("controller_other", args.controller)
        assert spec is not None and spec.loader is not None
        other = importlib.util.module_from_spec(spec)
        sys.modules["controller_other"] = other
        spec.loader.exec_module(other)
        variants[:0] = [
            (f"{args.controller} (window 3,000)", other, {"window": 3000}),
            (f"{args.controller} (default windows)", other, {}),
        ]
    print("| governor | " + " | ".join(f"{d} (µs/label)" for d in ("sea", "hyperplane")) + " |")
    print("|---|---:|---:|")
    data = {d: record(d, args.n) for d in ("sea", "hyperplane")}
    best: dict[tuple[str, str], float] = {}
    for _ in range(args.repeats):  # interleaved, the best of each: load hits all alike
        for name, module, settings in variants:
            for d in data:
                took = time_observe(module, data[d], **settings)
                best[name, d] = min(best.get((name, d), took), took)
    for name, _, _ in variants:
        print(f"| {name} | " + " | ".join(f"{best[name, d]:.0f}" for d in data) + " |")


if __name__ == "__main__":
    main()
