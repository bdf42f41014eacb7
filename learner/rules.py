"""Guardrail rules: cases that match always go to a person, whatever the confidence.

A rule is ``{"feature": name, "op": op, "value": v}`` with ``op`` one of
``> >= < <= == !=`` (numbers; ``==``/``!=`` also strings and booleans), ``in`` /
``not_in`` (membership in a list) or ``missing`` (the feature is absent or null).
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from learner.errors import InvalidSchema
from learner.routing import RoutingDecision
from learner.schema import MAX_MAGNITUDE, FeatureSpec

__all__ = ["Rule", "apply_guardrails", "matching_rules", "parse_rules"]

RULE_REASON = "rule: "  # how a case's reasons name a rule that held it for a person
_COMPARE: dict[str, Callable[[Any, Any], bool]] = {
    ">": operator.gt,
    ">=": operator.ge,
    "<": operator.lt,
    "<=": operator.le,
    "==": operator.eq,
    "!=": operator.ne,
}
_ORDERED = {">", ">=", "<", "<="}


@dataclass(frozen=True)
class Rule:
    """One guardrail.

    Examples
    --------
    >>> rule = Rule("amount", ">", 10000)
    >>> rule.matches({"amount": 12000}), rule.matches({"amount": 50}), rule.matches({})
    (True, False, False)
    >>> str(rule)
    'rule: amount > 10000'
    >>> Rule("country", "in", ("ru", "kp")).matches({"country": "kp"})
    True
    >>> Rule("note", "missing").matches({"note": None})
    True
    """

    feature: str
    op: str
    value: Any = None

    def matches(self, features: dict) -> bool:
        present = features.get(self.feature)
        if self.op == "missing":
            return present is None
        if present is None:
            return False
        if self.op == "in":
            return present in self.value
        if self.op == "not_in":
            return present not in self.value
        return _COMPARE[self.op](present, self.value)

    def __str__(self) -> str:
        if self.op == "missing":
            return f"{RULE_REASON}{self.feature} missing"
        shown = list(self.value) if self.op in ("in", "not_in") else self.value
        return f"{RULE_REASON}{self.feature} {self.op.replace('_', ' ')} {shown}"


def _fits(value: Any, kind: str | None) -> Any:
    """``value`` as a feature of ``kind`` is cleaned (categories as strings), or ``None``
    when it cannot be one (``kind`` None: any single number, string or boolean)."""
    if isinstance(value, bool):
        return value if kind in (None, "boolean") else None
    if isinstance(value, int | float):
        if value != value or abs(value) > MAX_MAGNITUDE:
            return None  # no feature holds NaN, an infinity or beyond ±1e100
        if kind in (None, "number"):
            return value
        return str(value) if kind == "category" and isinstance(value, int) else None
    if isinstance(value, str):
        return value if kind in (None, "category", "text") else None
    return None


_WANTS = {
    None: "a single finite number, string or boolean",
    "number": "a finite number within ±1e100",
    "category": "a string or an integer",
    "text": "a string",
    "boolean": "true or false",
}


def parse_rules(raw: list[dict], schema: dict[str, FeatureSpec] | None) -> list[Rule]:
    """Check rules against a schema (when known) and build them, values cleaned as the
    features they compare with are (a category's ``33`` is ``"33"``).

    Raises :class:`InvalidSchema` naming ``rules[i]`` and what is wrong.

    Examples
    --------
    >>> from learner.schema import parse_schema
    >>> schema = parse_schema({"amount": "number", "country": "category"})
    >>> parse_rules([{"feature": "amount", "op": ">", "value": 10000}], schema)
    [Rule(feature='amount', op='>', value=10000)]
    >>> parse_rules([{"feature": "country", "op": "in", "value": ["fr", 33]}], schema)
    [Rule(feature='country', op='in', value=('fr', '33'))]
    >>> parse_rules([{"feature": "amount", "op": "==", "value": "big"}], schema)
    Traceback (most recent call last):
    ...
    learner.errors.InvalidSchema: rules[0]: 'amount == ...' needs a finite number ..., got 'big'
    """
    rules = []
    for i, item in enumerate(raw):
        where = f"rules[{i}]"
        feature, op, value = item.get("feature"), item.get("op"), item.get("value")
        if not isinstance(feature, str):
            raise InvalidSchema(where, f"feature must name a feature, got {feature!r}")
        if schema is not None and feature not in schema:
            raise InvalidSchema(where, f"unknown feature {feature!r}")
        kind = schema[feature].kind if schema is not None else None
        if op == "missing":
            if value is not None:
                raise InvalidSchema(where, f"'{feature} missing' takes no value, got {value!r}")
            rules.append(Rule(feature, op))
            continue
        if op in _ORDERED and kind not in (None, "number"):
            raise InvalidSchema(where, f"{op} compares numbers; {feature} is {kind}")
        if op in ("in", "not_in"):
            if not isinstance(value, list) or not value:
                raise InvalidSchema(where, f"{op} needs a non-empty list of values")
            values = value
        elif op in _COMPARE:
            values = [value]
        else:
            raise InvalidSchema(where, f"unknown op {op!r}")
        want = "number" if op in _ORDERED else kind
        cleaned = [_fits(v, want) for v in values]
        for v, c in zip(values, cleaned, strict=True):
            if c is None:
                raise InvalidSchema(where, f"'{feature} {op} ...' needs {_WANTS[want]}, got {v!r}")
        rules.append(Rule(feature, op, tuple(cleaned) if op in ("in", "not_in") else cleaned[0]))
    return rules


def held_by_rule(reasons: Sequence[str]) -> bool:
    """Whether a guardrail rule sent the case to a person (its reasons name the rule).

    Such a case can never be automated, so its label is no evidence about the error of
    automated decisions: it teaches the model, not the risk controller (a rule usually
    singles out cases unlike the rest, and their errors would be mixed into the region's).

    >>> held_by_rule(["rule: amount > 10", "confidence 0.90 >= threshold 0.50"])
    True
    >>> held_by_rule(["confidence 0.90 >= threshold 0.50", "audit sample (rate 0.05)"])
    False
    """
    return any(reason.startswith(RULE_REASON) for reason in reasons)


def matching_rules(rules: list[Rule], features: dict) -> list[str]:
    """The reasons of every rule that ``features`` match (empty when none do).

    Examples
    --------
    >>> matching_rules([Rule("amount", ">", 10)], {"amount": 11})
    ['rule: amount > 10']
    """
    return [str(rule) for rule in rules if rule.matches(features)]


def apply_guardrails(
    decision: RoutingDecision, rules: list[Rule], features: dict
) -> RoutingDecision:
    """Send a case that matches any rule to ``assist``, the rules first in its reasons
    (they decided it; the confidence that would have decided it follows).

    Examples
    --------
    >>> from learner.routing import RoutingPolicy, route_case
    >>> policy = RoutingPolicy(threshold=0.5, min_labels=0)
    >>> d = route_case({"yes": 0.9, "no": 0.1}, policy=policy, n_labels=10, task="t", case_key="c")
    >>> guarded = apply_guardrails(d, [Rule("amount", ">", 10)], {"amount": 50})
    >>> guarded.route, guarded.reasons[0], guarded.propensity
    ('assist', 'rule: amount > 10', 1.0)
    >>> audited = route_case({"yes": 0.9, "no": 0.1}, policy=policy, n_labels=10, task="t",
    ...                      case_key="c", draw=0.0)
    >>> apply_guardrails(audited, [Rule("amount", ">", 10)], {"amount": 50}).reasons
    ['rule: amount > 10', 'confidence 0.90 >= threshold 0.50']
    """
    matched = matching_rules(rules, features)
    if not matched:
        return decision
    # a person decides it anyway: no audit sample of an automated decision to speak of
    kept = [r for r in decision.reasons if not (decision.audit and r.startswith("audit sample"))]
    return replace(decision, route="assist", audit=False, propensity=1.0, reasons=[*matched, *kept])
