"""Guardrail rules: parsing against a schema, cleaning, matching."""

from __future__ import annotations

import pytest

from learner import InvalidSchema, Rule, matching_rules, parse_rules, parse_schema

SCHEMA = parse_schema(
    {
        "amount": "number",
        "country": "category",
        "vip": "boolean",
        "note": {"type": "text", "required": False},
    }
)


@pytest.mark.parametrize(
    "rule, expected",
    [
        ({"feature": "amount", "op": ">=", "value": 10}, Rule("amount", ">=", 10)),
        ({"feature": "amount", "op": "in", "value": [1, 2.5]}, Rule("amount", "in", (1, 2.5))),
        ({"feature": "country", "op": "==", "value": 33}, Rule("country", "==", "33")),
        ({"feature": "vip", "op": "!=", "value": True}, Rule("vip", "!=", True)),
        ({"feature": "note", "op": "not_in", "value": ["x"]}, Rule("note", "not_in", ("x",))),
        ({"feature": "note", "op": "missing"}, Rule("note", "missing")),
    ],
)
def test_rules_that_fit_the_schema_are_built_with_clean_values(rule, expected):
    assert parse_rules([rule], SCHEMA) == [expected]


@pytest.mark.parametrize(
    "rule, says",
    [
        ({"feature": "ghost", "op": "==", "value": 1}, "unknown feature"),
        ({"feature": "amount", "op": "==", "value": "big"}, "needs a finite number"),
        ({"feature": "amount", "op": ">", "value": True}, "needs a finite number"),
        ({"feature": "amount", "op": "in", "value": [1, "b"]}, "got 'b'"),
        ({"feature": "vip", "op": "==", "value": "yes"}, "needs true or false"),
        ({"feature": "vip", "op": "in", "value": [{"a": 1}]}, "needs true or false"),
        ({"feature": "country", "op": "==", "value": 5.5}, "a string or an integer"),
        ({"feature": "country", "op": "<", "value": 5}, "compares numbers; country is category"),
        ({"feature": "note", "op": "==", "value": 7}, "needs a string"),
        ({"feature": "note", "op": "missing", "value": 3}, "takes no value"),
        ({"feature": "amount", "op": "in", "value": []}, "non-empty list"),
        ({"feature": "amount", "op": "~", "value": 1}, "unknown op"),
    ],
)
def test_rules_that_cannot_apply_are_refused_naming_the_rule(rule, says):
    with pytest.raises(InvalidSchema, match=says) as refused:
        parse_rules([{"feature": "amount", "op": ">", "value": 0}, rule], SCHEMA)
    assert refused.value.field == "rules[1]"


def test_without_a_schema_any_single_scalar_is_accepted_but_not_a_list_or_object():
    assert parse_rules([{"feature": "x", "op": "==", "value": "a"}], None)
    for value in (None, [1], {"a": 1}):
        with pytest.raises(InvalidSchema, match="single finite number, string or boolean"):
            parse_rules([{"feature": "x", "op": "==", "value": value}], None)


@pytest.mark.parametrize("schema", [SCHEMA, None])
def test_a_rule_must_name_its_feature(schema):
    for feature in (None, 3, ["amount"]):
        with pytest.raises(InvalidSchema, match="feature must name a feature"):
            parse_rules([{"feature": feature, "op": "missing"}], schema)


def test_rules_match_cleaned_features_and_say_which_matched():
    rules = parse_rules(
        [
            {"feature": "amount", "op": ">", "value": 100},
            {"feature": "country", "op": "in", "value": [7, "kp"]},
            {"feature": "note", "op": "missing"},
        ],
        SCHEMA,
    )
    assert matching_rules(rules, {"amount": 50.0, "country": "7", "note": "hi"}) == [
        "rule: country in ['7', 'kp']"
    ]
    assert matching_rules(rules, {"amount": 500.0, "country": "fr"}) == [
        "rule: amount > 100",
        "rule: note missing",
    ]
