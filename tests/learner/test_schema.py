"""Schemas: parsing, JSON round trip, inference and feature validation."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from learner import (
    FeatureSpec,
    InvalidFeatures,
    InvalidSchema,
    LearnerError,
    infer_schema,
    parse_schema,
    schema_to_json,
    validate_features,
)
from learner.schema import MAX_MAGNITUDE

SCHEMA = parse_schema(
    {
        "amount": "number",
        "country": "category",
        "note": {"type": "text", "required": False},
        "vip": {"type": "boolean", "required": False},
    }
)

names = st.from_regex(r"[A-Za-z_][A-Za-z0-9_.-]{0,63}", fullmatch=True)
kinds = st.sampled_from(["number", "category", "text", "boolean"])
specs = st.builds(FeatureSpec, kinds, st.booleans())
schemas = st.dictionaries(names, specs, min_size=1, max_size=20)


def test_parse_schema_reads_kind_strings_and_dicts():
    schema = SCHEMA
    assert schema == {
        "amount": FeatureSpec("number"),
        "country": FeatureSpec("category"),
        "note": FeatureSpec("text", required=False),
        "vip": FeatureSpec("boolean", required=False),
    }


def test_parse_schema_keeps_order():
    assert list(parse_schema({"b": "number", "a": "number"})) == ["b", "a"]


def test_parse_schema_rejects_unknown_kind_naming_field():
    with pytest.raises(InvalidSchema) as info:
        parse_schema({"amount": "number", "colour": "color"})
    assert info.value.field == "colour"
    assert "unknown kind 'color'" in info.value.reason
    assert str(info.value) == f"colour: {info.value.reason}"


@pytest.mark.parametrize(
    "name",
    ["", "  ", "a" * 65, "a=b", "a:b", "tab\there", "nl\n", "\u200b", "\u202eabc", "a\u200db"],
)
def test_parse_schema_rejects_bad_names(name):
    with pytest.raises(InvalidSchema) as info:
        parse_schema({name: "number"})
    assert info.value.field == name


def test_parse_schema_rejects_non_string_name():
    with pytest.raises(InvalidSchema) as info:
        parse_schema({3: "number"})
    assert info.value.field == "3"


@pytest.mark.parametrize(
    "name", ["sepal length (cm)", "od280/od315_of_diluted_wines", "2fa_enabled", "montant été"]
)
def test_parse_schema_accepts_the_names_data_sets_use(name):
    assert list(parse_schema({name: "number"})) == [name]


def test_parse_schema_accepts_longest_name():
    assert list(parse_schema({"a" * 64: "number"})) == ["a" * 64]


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ({}, "at least one feature"),
        ({f"f{i}": "number" for i in range(513)}, "at most 512"),
        ([("a", "number")], "expected an object"),
    ],
)
def test_parse_schema_rejects_empty_oversized_or_non_dict(raw, reason):
    with pytest.raises(InvalidSchema) as info:
        parse_schema(raw)
    assert info.value.field == "schema"
    assert reason in info.value.reason


def test_parse_schema_accepts_512_features():
    assert len(parse_schema({f"f{i}": "number" for i in range(512)})) == 512


@pytest.mark.parametrize(
    "spec",
    [
        {"required": False},
        {"type": "number", "required": "no"},
        {"type": "number", "default": 1},
        3,
        None,
    ],
)
def test_parse_schema_rejects_malformed_spec(spec):
    with pytest.raises(InvalidSchema) as info:
        parse_schema({"amount": spec})
    assert info.value.field == "amount"


def test_invalid_schema_is_a_learner_error():
    assert issubclass(InvalidSchema, LearnerError)
    assert issubclass(InvalidFeatures, LearnerError)


@given(schemas)
def test_schema_to_json_round_trips(schema):
    assert parse_schema(schema_to_json(schema)) == schema


def test_schema_to_json_is_compact():
    assert schema_to_json(SCHEMA) == {
        "amount": "number",
        "country": "category",
        "note": {"type": "text", "required": False},
        "vip": {"type": "boolean", "required": False},
    }


def test_infer_schema_guesses_kinds():
    schema = infer_schema(
        {
            "vip": True,
            "n": 3,
            "amount": 9.5,
            "country": "FR",
            "note": "the parcel arrived two weeks late",
            "id": "x" * 40,
        }
    )
    assert {name: spec.kind for name, spec in schema.items()} == {
        "vip": "boolean",
        "n": "number",
        "amount": "number",
        "country": "category",
        "note": "text",
        "id": "category",
    }
    assert all(spec.required for spec in schema.values())


def test_infer_schema_short_sentence_is_category():
    assert infer_schema({"s": "two words"})["s"].kind == "category"


@pytest.mark.parametrize("value", [None, [1, 2], {"a": 1}])
def test_infer_schema_rejects_unusable_value_naming_field(value):
    with pytest.raises(InvalidFeatures) as info:
        infer_schema({"ok": 1, "bad": value})
    assert info.value.field == "bad"


def test_infer_schema_rejects_bad_name():
    with pytest.raises(InvalidFeatures) as info:
        infer_schema({"ratio:debt": 1})
    assert info.value.field == "ratio:debt"


def test_infer_schema_rejects_empty():
    with pytest.raises(InvalidFeatures):
        infer_schema({})


def test_validate_features_cleans_and_orders_by_schema():
    clean = validate_features(SCHEMA, {"vip": False, "country": 33, "amount": 2})
    assert clean == {"amount": 2.0, "country": "33", "vip": False}
    assert list(clean) == ["amount", "country", "vip"]
    assert isinstance(clean["amount"], float)


def test_validate_features_treats_none_as_missing():
    assert validate_features(SCHEMA, {"amount": 1.0, "country": "FR", "note": None}) == {
        "amount": 1.0,
        "country": "FR",
    }


def test_validate_features_rejects_unknown_feature():
    with pytest.raises(InvalidFeatures) as info:
        validate_features(SCHEMA, {"amount": 1.0, "country": "FR", "colour": "red"})
    assert info.value.field == "colour"
    assert info.value.reason.startswith("unknown feature; expected one of amount, country")


def test_validate_features_rejects_missing_required():
    with pytest.raises(InvalidFeatures) as info:
        validate_features(SCHEMA, {"amount": 1.0, "country": None})
    assert (info.value.field, info.value.reason) == ("country", "missing required feature")


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("amount", True),
        ("amount", "12"),
        ("amount", math.nan),
        ("amount", math.inf),
        ("amount", 10**400),
        ("country", 1.5),
        ("country", True),
        ("country", ["FR"]),
        ("note", 12),
        ("vip", 1),
        ("vip", "true"),
    ],
)
def test_validate_features_rejects_wrong_type(field, value):
    features = {"amount": 1.0, "country": "FR", field: value}
    with pytest.raises(InvalidFeatures) as info:
        validate_features(SCHEMA, features)
    assert info.value.field == field


def test_validate_features_rejects_long_strings():
    assert validate_features(SCHEMA, {"amount": 1, "country": "FR", "note": "x" * 10_000})
    with pytest.raises(InvalidFeatures) as info:
        validate_features(
            SCHEMA, {"amount": 1, "country": "FR", "note": "x" * 11}, max_string_length=10
        )
    assert info.value.field == "note"
    assert validate_features(SCHEMA, {"amount": 1, "country": "x" * 10}, max_string_length=10)


def test_validate_features_rejects_huge_int_category():
    with pytest.raises(InvalidFeatures) as info:
        validate_features(SCHEMA, {"amount": 1, "country": 10**5000})
    assert info.value.field == "country"


@given(st.floats(min_value=MAX_MAGNITUDE, exclude_min=True, allow_infinity=False))
def test_validate_features_rejects_numbers_that_would_overflow_the_model(huge):
    # 1e155 once made the running variance infinite and the model score NaN for good
    for number in (huge, -huge):
        with pytest.raises(InvalidFeatures) as info:
            validate_features(SCHEMA, {"amount": number, "country": "fr"})
        assert info.value.field == "amount"


def test_validate_features_rejects_non_dict():
    with pytest.raises(InvalidFeatures):
        validate_features(SCHEMA, ["amount", 1])


@given(
    st.fixed_dictionaries(
        {
            "amount": st.floats(-MAX_MAGNITUDE, MAX_MAGNITUDE) | st.integers(-(10**6), 10**6),
            "country": st.text(max_size=20) | st.integers(),
        },
        optional={"note": st.text(max_size=50) | st.none(), "vip": st.booleans()},
    )
)
def test_validate_features_accepts_every_valid_case(features):
    clean = validate_features(SCHEMA, features)
    assert validate_features(SCHEMA, clean) == clean
    assert set(clean) <= set(SCHEMA)
