"""Labelled streams: every name loads, deterministically, with valid schemas and rows."""

from __future__ import annotations

import itertools

import pytest

from learner import STREAM_NAMES, LearnerError, load_stream, parse_schema, schema_to_json
from learner.schema import validate_features

SYNTHETIC = ("hyperplane", "agrawal", "randomrbf", "sea", "tickets")


@pytest.mark.parametrize("name", STREAM_NAMES)
def test_load_stream_gives_valid_rows(name):
    stream = load_stream(name, n=200)
    assert stream.name == name
    assert parse_schema(schema_to_json(stream.schema)) == stream.schema
    assert all(isinstance(label, str) for label in stream.labels)
    rows = list(stream.rows)
    assert len(rows) == 200
    for x, y in rows:
        assert validate_features(stream.schema, x) == x
        assert y in stream.labels


@pytest.mark.parametrize("name", STREAM_NAMES)
def test_load_stream_is_deterministic_per_seed(name):
    first = list(load_stream(name, seed=3, n=50).rows)
    assert list(load_stream(name, seed=3, n=50).rows) == first
    assert list(load_stream(name, seed=4, n=50).rows) != first


@pytest.mark.parametrize(
    ("name", "size"),
    [("phishing", 1250), ("bananas", 5300), ("imagesegments", 2310), ("digits", 1797)],
)
def test_load_stream_file_data_sets_are_whole_by_default(name, size):
    assert sum(1 for _ in load_stream(name).rows) == size


def test_load_stream_shuffle_off_keeps_file_order():
    first = list(load_stream("phishing", seed=1, n=20, shuffle=False).rows)
    assert first == list(load_stream("phishing", seed=2, n=20, shuffle=False).rows)


def test_load_stream_synthetic_default_length():
    rows = load_stream("sea").rows
    assert sum(1 for _ in itertools.islice(rows, 30_001)) == 30_000


def test_load_stream_covers_every_label():
    for name, n in [("imagesegments", 500), ("digits", 500), ("randomrbf", 500), ("tickets", 500)]:
        stream = load_stream(name, n=n)
        assert {y for _, y in stream.rows} == set(stream.labels)


def test_load_stream_sanitises_feature_names():
    assert set(load_stream("bananas", n=1).schema) == {"x1", "x2"}
    assert set(load_stream("hyperplane", n=1).schema) == {f"x{i}" for i in range(10)}


def test_load_stream_agrawal_has_categories():
    kinds = {name: spec.kind for name, spec in load_stream("agrawal", n=1).schema.items()}
    assert kinds["car"] == kinds["zipcode"] == kinds["elevel"] == "category"
    assert kinds["salary"] == "number"


def test_load_stream_tickets_mixes_kinds_and_absent_features():
    stream = load_stream("tickets", n=300)
    assert {spec.kind for spec in stream.schema.values()} == {
        "number",
        "category",
        "text",
        "boolean",
    }
    rows = list(stream.rows)
    assert any("subject" not in x for x, _ in rows)
    assert any("amount" not in x for x, _ in rows)


def test_load_stream_rejects_unknown_name():
    with pytest.raises(LearnerError, match="expected one of phishing, bananas"):
        load_stream("mnist")
