"""Feature pipelines built from schemas."""

from __future__ import annotations

import pickle

from learner import build_features, parse_schema, source_feature

MIXED = parse_schema(
    {
        "amount": "number",
        "age": {"type": "number", "required": False},
        "country": "category",
        "note": {"type": "text", "required": False},
        "vip": "boolean",
    }
)
CASE = {"amount": 10.0, "age": 30.0, "country": "FR", "note": "Late, LATE parcel!", "vip": True}


def learned(schema, cases):
    features = build_features(schema)
    for x in cases:
        features.learn_one(x)
    return features


def test_build_features_encodes_every_kind():
    features = learned(MIXED, [CASE, {**CASE, "amount": 20.0, "age": 50.0}])
    out = features.transform_one(CASE)
    assert out["amount"] == -1.0  # standard-scaled: mean 15, std 5
    assert out["age"] == -1.0
    assert out["country=FR"] == 1.0
    assert out["vip"] == 1.0
    assert set(out) == {"amount", "age", "country=FR", "vip", "note:late", "note:parcel"}
    assert out["note:late"] > out["note:parcel"] > 0  # lowercased, counted, TF-IDF


def test_build_features_outputs_only_numbers():
    out = learned(MIXED, [CASE]).transform_one(CASE)
    assert all(isinstance(v, float) for v in out.values())


def test_build_features_handles_absent_optional_features():
    features = learned(MIXED, [CASE, {"amount": 1.0, "country": "DE", "vip": False}])
    out = features.transform_one({"amount": 1.0, "country": "DE", "vip": False})
    assert out["age=<missing>"] == 1.0
    assert "age" not in out  # contributes 0 after scaling
    assert not any(name.startswith("note:") for name in out)
    assert out["vip"] == 0.0


def test_build_features_text_only_schema():
    schema = parse_schema({"body": "text"})
    features = learned(schema, [{"body": "cheap pills"}, {"body": "lunch at noon"}])
    out = features.transform_one({"body": "Cheap lunch"})
    assert set(out) == {"body:cheap", "body:lunch"}
    assert features.transform_one({"body": ""}) == {}


def test_build_features_two_text_fields_stay_apart():
    schema = parse_schema({"subject": "text", "body": "text"})
    out = learned(schema, []).transform_one({"subject": "refund now", "body": "refund please"})
    assert {"subject:refund", "body:refund"} <= set(out)


def test_build_features_unknown_category_value_is_a_new_column():
    features = learned(MIXED, [CASE])
    assert features.transform_one({**CASE, "country": "IT"})["country=IT"] == 1.0


def test_build_features_output_order_ignores_input_order():
    features = learned(MIXED, [CASE])
    reordered = dict(reversed(list(CASE.items())))
    assert list(features.transform_one(reordered).items()) == list(
        features.transform_one(CASE).items()
    )


def test_build_features_ignores_unknown_keys():
    features = learned(MIXED, [CASE])
    assert features.transform_one({**CASE, "extra": 1.0}) == features.transform_one(CASE)


def test_build_features_for_trees_keeps_raw_numbers_and_dense_categories():
    features = build_features(MIXED, for_trees=True)
    for country in ("FR", "DE"):
        features.learn_one({**CASE, "country": country})
    out = features.transform_one({**CASE, "country": "IT"})
    assert out["amount"] == 10.0
    assert (out["country=FR"], out["country=DE"], out["country=IT"]) == (0.0, 0.0, 1.0)


def test_build_features_pickles():
    features = learned(MIXED, [CASE])
    assert pickle.loads(pickle.dumps(features)).transform_one(CASE) == features.transform_one(CASE)


def test_source_feature_maps_every_output_back():
    out = learned(MIXED, [CASE]).transform_one({"amount": 1.0, "country": "a=b:c", "vip": True})
    assert {source_feature(name) for name in out} == {"amount", "age", "country", "vip"}
