"""The input monitor: moves of the inputs reported, unchanged inputs left alone."""

import random

import pytest

from learner.datasets import load_stream
from learner.inputs import InputMonitor
from learner.schema import FeatureSpec

SCHEMA = {
    "amount": FeatureSpec("number"),  # heavy tails
    "flag": FeatureSpec("number"),  # two values, mostly 0
    "pixel": FeatureSpec("number"),  # ties: mostly 0, else 1..16
    "constant": FeatureSpec("number"),
    "optional": FeatureSpec("number", required=False),
    "city": FeatureSpec("category"),
    "vip": FeatureSpec("boolean"),
}


def unchanged_case(rng: random.Random) -> dict:
    case = {
        "amount": rng.lognormvariate(4.0, 2.0),
        "flag": float(rng.random() < 0.1),
        "pixel": 0.0 if rng.random() < 0.8 else float(rng.randint(1, 16)),
        "constant": 3.0,
        "city": rng.choice(["Oslo", "Rome"]),
        "vip": rng.random() < 0.5,
    }
    if rng.random() < 0.5:
        case["optional"] = rng.gauss(0.0, 1.0)
    return case


@pytest.mark.parametrize("seed", range(3))
def test_unchanged_inputs_of_every_shape_are_never_reported(seed):
    rng = random.Random(seed)
    monitor = InputMonitor(SCHEMA)
    assert monitor.names == ["amount", "flag", "pixel", "constant", "optional"]
    moves = [monitor.observe(unchanged_case(rng)) for _ in range(20_000)]
    assert not any(moves)
    assert (monitor.moved, monitor.n_moves) == (None, 0)


def test_a_jump_is_reported_by_name_and_raises_for_a_while():
    rng = random.Random(1)
    monitor = InputMonitor(SCHEMA, raise_cases=100)
    for _ in range(1_000):
        monitor.observe(unchanged_case(rng))
    moves = []
    for _ in range(400):
        case = unchanged_case(rng)
        case["flag"] = 1.0  # a rare value becomes the rule
        moves.append(monitor.observe(case))
    first = next(i for i, m in enumerate(moves) if m)
    assert monitor.stride == 2  # five numeric features, four watched a case at most
    assert moves[first] == "flag" and first < 2 * 40
    assert monitor.n_moves == 1  # the new reference is the new normal
    assert monitor.moved is None and monitor.raise_left == 0  # the raise ran out
    monitor = InputMonitor(SCHEMA, raise_cases=100)
    for _ in range(1_000):
        monitor.observe(unchanged_case(rng))
    for _ in range(80):
        case = unchanged_case(rng)
        case["amount"] *= 1000.0
        monitor.observe(case)
    assert monitor.moved == "amount" and 20 <= monitor.raise_left < 100


def test_inputs_that_keep_moving_keep_being_reported():
    """Two sweeps: the reference drawn across the jump back to the start (x1 from 3 to
    -3) ranks everything in between alike; it is renewed, so the second sweep is seen."""
    stream = load_stream("sweep", n=20_000, seed=16)
    monitor = InputMonitor(stream.schema)
    moved = [monitor.observe(x) for x, _ in stream.rows]
    assert {m for m in moved if m} == {"x1"}  # x2 and x3 do not move
    first, second = moved[:10_000], moved[10_000:]
    assert first.count("x1") >= 20 and second.count("x1") >= 20


def test_a_wide_task_watches_a_few_features_a_case_in_turn():
    schema = {f"x{i}": FeatureSpec("number") for i in range(40)}
    monitor = InputMonitor(schema, budget=4)
    assert monitor.stride == 10
    rng = random.Random(3)
    for _ in range(6_000):  # 2,000 to fill the references
        assert monitor.observe({name: rng.random() for name in schema}) is None
    moved = [monitor.observe({**{n: rng.random() for n in schema}, "x7": 2.0}) for _ in range(400)]
    assert "x7" in moved and moved.index("x7") < 10 * 40


def test_a_feature_no_case_carries_is_never_watched_and_costs_nothing():
    monitor = InputMonitor(SCHEMA, warmup=10)
    for i in range(100):
        assert monitor.observe({"amount": float(i % 7), "city": "Oslo"}) is None
    assert monitor.observe({}) is None
