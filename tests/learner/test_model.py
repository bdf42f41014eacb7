"""TaskModel: probabilities, learning, explanations, persistence and determinism."""

from __future__ import annotations

import itertools
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
from river import linear_model

from learner import (
    MODEL_FAMILIES,
    InvalidLabel,
    LearnerError,
    TaskModel,
    load_stream,
    parse_schema,
)
from learner.evaluate import prequential

ROOT = Path(__file__).resolve().parents[2]


def trained(name: str, family: str, n: int, seed: int = 0) -> tuple[TaskModel, list]:
    """A model trained on the first ``n`` rows of a stream, and the next 50 rows."""
    stream = load_stream(name, seed=seed, n=n + 50)
    rows = list(stream.rows)
    model = TaskModel(stream.labels, stream.schema, family, seed=seed)
    for x, y in rows[:n]:
        model.learn_one(x, y)
    return model, rows[n:]


@pytest.mark.parametrize("family", MODEL_FAMILIES)
@pytest.mark.parametrize("labels", [["no", "yes"], ["a", "b", "c"]])
def test_predict_proba_one_is_uniform_before_learning(family, labels):
    model = TaskModel(labels, parse_schema({"v": "number"}), family)
    assert model.predict_proba_one({"v": 1.0}) == {label: 1 / len(labels) for label in labels}
    assert model.n_learned == 0


@pytest.mark.parametrize("family", MODEL_FAMILIES)
@pytest.mark.parametrize("name", ["phishing", "tickets"])
def test_predict_proba_one_covers_every_label_in_order(family, name):
    model, rows = trained(name, family, n=60)
    for x, _ in rows:
        proba = model.predict_proba_one(x)
        assert list(proba) == model.labels
        assert math.isclose(sum(proba.values()), 1.0)
        assert all(0.0 <= p <= 1.0 for p in proba.values())


def test_predict_proba_one_covers_labels_never_seen():
    model = TaskModel(["a", "b", "c"], parse_schema({"v": "number"}), "forest")
    model.learn_one({"v": 1.0}, "b")
    proba = model.predict_proba_one({"v": 1.0})
    assert list(proba) == ["a", "b", "c"]
    assert math.isclose(sum(proba.values()), 1.0)


def test_predict_proba_one_does_not_share_its_dict():
    model = TaskModel(["no", "yes"], parse_schema({"v": "number"}))
    model.predict_proba_one({"v": 1.0})["no"] = 7.0
    assert model.predict_proba_one({"v": 1.0})["no"] == 0.5


def test_learn_one_rejects_unknown_label():
    model = TaskModel(["no", "yes"], parse_schema({"v": "number"}))
    with pytest.raises(InvalidLabel) as info:
        model.learn_one({"v": 1.0}, "maybe")
    assert info.value.label == "maybe"
    with pytest.raises(InvalidLabel):
        model.learn_one({"v": 1.0}, True)
    assert model.n_learned == 0


def test_learn_one_counts_labels():
    model, _ = trained("tickets", "linear", n=7)
    assert model.n_learned == 7


@pytest.mark.parametrize(
    ("name", "family", "minimum"),
    [
        ("phishing", "linear", 0.85),
        ("tickets", "linear", 0.7),
        ("imagesegments", "linear", 0.8),
        ("bananas", "forest", 0.8),
    ],
)
def test_model_learns(name, family, minimum):
    stream = load_stream(name, n=1000)
    result = prequential(TaskModel(stream.labels, stream.schema, family), stream.rows)
    assert result.accuracy > minimum


def test_forest_beats_linear_on_non_linear_data():
    accuracy = {}
    for family in MODEL_FAMILIES:
        stream = load_stream("bananas", n=800)
        model = TaskModel(stream.labels, stream.schema, family)
        accuracy[family] = prequential(model, stream.rows).accuracy
    assert accuracy["forest"] > accuracy["linear"] + 0.15


@pytest.mark.parametrize(
    ("labels", "family", "error"),
    [
        (["only"], "linear", "two distinct"),
        (["a", "a"], "linear", "two distinct"),
        (["a", "b"], "boosted", "unknown model family"),
        ([1, 2], "linear", "strings"),
    ],
)
def test_task_model_rejects_bad_arguments(labels, family, error):
    with pytest.raises(LearnerError, match=error):
        TaskModel(labels, parse_schema({"v": "number"}), family)


def test_task_model_rejects_binary_classifier_for_three_labels():
    with pytest.raises(LearnerError, match="binary"):
        TaskModel(
            ["a", "b", "c"],
            parse_schema({"v": "number"}),
            classifier=linear_model.LogisticRegression(),
        )


# --- explanations ---------------------------------------------------------------------------


@pytest.mark.parametrize("family", MODEL_FAMILIES)
def test_explain_one_names_schema_features_by_decreasing_weight(family):
    model, rows = trained("tickets", family, n=300)
    for x, _ in rows[:10]:
        explanation = model.explain_one(x, top=3)
        assert len(explanation) <= 3
        assert {name for name, _ in explanation} <= set(model.schema)
        sizes = [abs(c) for _, c in explanation]
        assert sizes == sorted(sizes, reverse=True)


def test_explain_one_is_signed_toward_the_suggestion():
    schema = parse_schema({"signal": "number", "noise": "number"})
    model = TaskModel(["low", "high"], schema)
    for i in range(200):
        model.learn_one({"signal": float(i % 2), "noise": (i * 7 % 5) / 5}, ["low", "high"][i % 2])
    high = model.explain_one({"signal": 1.0, "noise": 0.4})
    low = model.explain_one({"signal": 0.0, "noise": 0.4})
    assert high[0][0] == low[0][0] == "signal"
    assert high[0][1] > 0 and low[0][1] > 0  # both push toward their own suggestion


def test_explain_one_multiclass_linear_points_at_the_text():
    model, rows = trained("tickets", "linear", n=500)
    x = {
        "channel": "email",
        "customer_years": 5.0,
        "vip": False,
        "subject": "refund money charged twice",
    }
    assert model.explain_one(x)[0][0] == "subject"


def test_explain_one_before_learning_is_empty():
    assert TaskModel(["a", "b"], parse_schema({"v": "number"})).explain_one({"v": 1.0}) == []


# --- persistence and determinism -----------------------------------------------------------


@pytest.mark.parametrize("family", MODEL_FAMILIES)
def test_to_bytes_round_trip_gives_identical_predictions_and_learning(family):
    model, rows = trained("tickets", family, n=150)
    copy = TaskModel.from_bytes(model.to_bytes())
    assert (copy.labels, copy.schema, copy.family, copy.seed, copy.n_learned) == (
        model.labels,
        model.schema,
        model.family,
        model.seed,
        model.n_learned,
    )
    for x, y in rows:
        assert copy.predict_proba_one(x) == model.predict_proba_one(x)
        copy.learn_one(x, y)
        model.learn_one(x, y)
    assert copy.predict_proba_one(rows[0][0]) == model.predict_proba_one(rows[0][0])


def test_from_bytes_rejects_garbage():
    with pytest.raises(LearnerError):
        TaskModel.from_bytes(b"not a model")


@pytest.mark.parametrize("family", MODEL_FAMILIES)
def test_replaying_the_same_labels_gives_identical_models(family):
    first, rows = trained("tickets", family, n=200)
    second, _ = trained("tickets", family, n=200)
    for x, _ in rows:
        assert first.predict_proba_one(x) == second.predict_proba_one(x)
        assert first.explain_one(x) == second.explain_one(x)


@pytest.mark.parametrize("family", MODEL_FAMILIES)
def test_predicting_between_labels_does_not_change_the_fold(family):
    stream = load_stream("tickets", n=250)
    rows = list(stream.rows)
    live = TaskModel(stream.labels, stream.schema, family)
    replayed = TaskModel(stream.labels, stream.schema, family)
    for x, y in rows[:200]:
        live.predict_proba_one(x)
        live.explain_one(x)
        live.learn_one(x, y)
        replayed.learn_one(x, y)
    for x, _ in rows[200:]:
        assert live.predict_proba_one(x) == replayed.predict_proba_one(x)


def test_task_model_accepts_a_json_schema():
    raw = {"v": "number", "note": {"type": "text", "required": False}}
    assert TaskModel(["a", "b"], raw).schema == parse_schema(raw)


def test_different_seeds_give_different_forests():
    first, rows = trained("bananas", "forest", n=200, seed=0)
    second = TaskModel(first.labels, first.schema, "forest", seed=1)
    for x, y in itertools.islice(load_stream("bananas", seed=0, n=200).rows, 200):
        second.learn_one(x, y)
    assert any(first.predict_proba_one(x) != second.predict_proba_one(x) for x, _ in rows)


FINGERPRINT = """
from learner import TaskModel, load_stream
for family in ("linear", "forest"):
    for name in ("tickets", "phishing", "agrawal"):
        stream = load_stream(name, n=250)
        rows = list(stream.rows)
        model = TaskModel(stream.labels, stream.schema, family)
        for x, y in rows[:200]:
            model.learn_one(x, y)
        for x, _ in rows[200:]:
            print(repr(model.predict_proba_one(x)), model.explain_one(x, top=2))
"""


def fingerprint(hash_seed: str) -> str:
    env = {**os.environ, "PYTHONHASHSEED": hash_seed}
    done = subprocess.run(
        [sys.executable, "-c", FINGERPRINT],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    return done.stdout


def test_models_are_identical_across_processes_with_different_hash_seeds():
    first = fingerprint("1")
    assert first.count("\n") == 300
    assert fingerprint("2") == first
