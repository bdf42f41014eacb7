"""``make bench-learner``: the learner's per-case overhead against river's own pipeline.

For each stream, one model is trained (linear family, 1,000 labels). The baseline is
river's ``Pipeline(features, classifier).predict_proba_one`` built from that model's own
trained feature union and classifier, so both sides compute the same numbers. Against
it, per case:

- ``score + route``: ``TaskModel.predict_proba_one``, ``route_case`` (suggestion,
  margin, reasons, the audit draw read from the case id's random bits, as the service
  does) and ``queue_priority`` — what the service does per case in ``learner/`` after
  validation;
- ``+ validate``: the same with ``validate_features`` first (the request's checks).

Loops are interleaved and repeated; the best (lowest) per-case time of the repeats is
shown: on a shared machine, the repeat least disturbed by other work.
Results go to ``bench/out/learner.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from itertools import islice
from pathlib import Path

from river import compose

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from learner import (  # noqa: E402
    RoutingPolicy,
    TaskModel,
    id_draw,
    load_stream,
    queue_priority,
    route_case,
    validate_features,
)


def per_case_us(fn, rows: list, repeats: int) -> list[float]:  # type: ignore[no-untyped-def]
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn(rows)
        times.append((time.perf_counter() - start) / len(rows) * 1e6)
    return times


def measure(name: str, n_train: int, n_score: int, repeats: int) -> dict:
    stream = load_stream(name, seed=0)
    rows = list(islice(stream.rows, n_train + n_score))
    model = TaskModel(stream.labels, stream.schema, family="linear")
    for x, y in rows[:n_train]:
        model.learn_one(x, y)
    pipeline = compose.Pipeline(model.features, model.classifier)  # the same trained steps
    held_out = [x for x, _ in rows[n_train:]]  # cycled: small files hold few rows
    xs = [held_out[i % len(held_out)] for i in range(n_score)]
    # the service's case ids: 12 hex digits of time, 64 random bits (the audit draw)
    keys = [f"c_{i:012x}{os.urandom(8).hex()}" for i in range(len(xs))]
    # as the service routes: audits and a review sample at the audit rate
    policy = RoutingPolicy(threshold=0.9, min_labels=50, audit_rate=0.05, sample_rate=0.05)
    version, now = model.n_learned, time.time()

    def river_only(batch: list) -> None:
        for x in batch:
            pipeline.predict_proba_one(x)

    def score_route(batch: list) -> None:
        for x, key in zip(batch, keys, strict=False):
            d = route_case(
                model.predict_proba_one(x),
                policy=policy,
                n_labels=version,
                task=name,
                case_key=key,
                draw=id_draw(key),
            )
            queue_priority(d.margin, now, audit=d.audit, sample=d.sample)

    def validate_score_route(batch: list) -> None:
        schema = model.schema
        for x, key in zip(batch, keys, strict=False):
            clean = validate_features(schema, x, max_string_length=10_000)
            d = route_case(
                model.predict_proba_one(clean),
                policy=policy,
                n_labels=version,
                task=name,
                case_key=key,
                draw=id_draw(key),
            )
            queue_priority(d.margin, now, audit=d.audit, sample=d.sample)

    loops = {"river": river_only, "score_route": score_route, "validate": validate_score_route}
    runs: dict[str, list[float]] = {k: [] for k in loops}
    for _ in range(repeats):  # interleaved, so machine noise hits every loop alike
        for key, fn in loops.items():
            runs[key] += per_case_us(fn, xs, 1)
    med = {k: min(v) for k, v in runs.items()}
    return {
        "stream": name,
        "labels": len(stream.labels),
        "features": len(stream.schema),
        "river_us": med["river"],
        "score_route_us": med["score_route"],
        "validate_us": med["validate"],
        "ratio": med["score_route"] / med["river"],
        "ratio_with_validation": med["validate"] / med["river"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--streams", default="phishing,tickets,imagesegments")
    parser.add_argument("--train", type=int, default=1000)
    parser.add_argument("--cases", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=25)
    args = parser.parse_args()
    results = [
        measure(name, args.train, args.cases, args.repeats) for name in args.streams.split(",")
    ]
    print(
        "\n| stream | labels | features | river predict_proba_one µs | score + route µs | ratio "
        "| + validate µs | ratio |\n|---|---:|---:|---:|---:|---:|---:|---:|"
    )
    for r in results:
        print(
            f"| {r['stream']} | {r['labels']} | {r['features']} | {r['river_us']:.1f} "
            f"| {r['score_route_us']:.1f} | {r['ratio']:.2f} | {r['validate_us']:.1f} "
            f"| {r['ratio_with_validation']:.2f} |"
        )
    out = ROOT / "bench" / "out"
    out.mkdir(exist_ok=True)
    (out / "learner.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
