"""Task schemas: which features a case carries and of which kind.

A schema maps each feature name to a :class:`FeatureSpec`. Its JSON form maps a name to
a kind string (``"number"``) or, for an optional feature, to
``{"type": "number", "required": false}``.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from learner.errors import InvalidFeatures, InvalidSchema

__all__ = [
    "FEATURE_KINDS",
    "MAX_FEATURES",
    "FeatureSpec",
    "infer_schema",
    "label_of",
    "parse_schema",
    "schema_to_json",
    "validate_features",
]

FEATURE_KINDS = ("number", "category", "text", "boolean")
_KIND_LIST = ", ".join(FEATURE_KINDS)
MAX_FEATURES = 512
MAX_NAME_LENGTH = 64
# Numbers beyond this would overflow the model's arithmetic (a running variance squares
# them: 1e155 ** 2 is infinite) and leave it scoring NaN for good; no measurement is this
# large.
MAX_MAGNITUDE = 1e100
# ``=`` and ``:`` join a feature to its value in the model's inputs (``country=FR``,
# ``note:late``, see learner.features); anything else printable is a name (data sets
# name columns "sepal length (cm)", "od280/od315", "2fa_enabled", "montant_été")
_RESERVED = re.compile(r"[=:\x00-\x1f\x7f-\x9f]")
# Whole-schema problems (not about one feature) name this field.
SCHEMA_FIELD = "schema"


@dataclass(frozen=True)
class FeatureSpec:
    """The kind of one feature and whether every case must carry it.

    Examples
    --------
    >>> FeatureSpec("number")
    FeatureSpec(kind='number', required=True)
    """

    kind: str
    required: bool = True


def invisible_characters(text: str) -> str:
    """The invisible characters in ``text`` (controls, format characters such as
    zero-width spaces and direction overrides), as code points; ``""`` when none.

    >>> invisible_characters("evil\u202ename\u0007"), invisible_characters("Ana María")
    ('U+0007, U+202E', '')
    """
    found = {f"U+{ord(c):04X}" for c in text if unicodedata.category(c) in ("Cc", "Cf")}
    return ", ".join(sorted(found))


#: Letters of other scripts drawn like Latin ones (Cyrillic, Greek): a reviewer cannot
#: tell "а" (Cyrillic) from "a" on a button, nor an analyst "аmount" from "amount".
_LATIN_LOOKS = str.maketrans(
    "аеорсухіјѕԁԛԝАВЕКМНОРСТХУІЈЅοαικνρτυχΑΒΕΖΗΙΚΜΝΟΡΤΥΧ",
    "aeopcyxijsdqwABEKMHOPCTXYIJSoaikvptuxABEZHIKMNOPTYX",
)


def screen_form(text: str) -> str:
    """What ``text`` looks like on screen, for telling names apart: Unicode's
    compatibility form (``"ﬁ"`` is ``"fi"``, a full-width ``"Ａ"`` is ``"A"``) with look-alike
    Cyrillic and Greek letters read as the Latin ones.

    >>> screen_form("ﬁx") == screen_form("fix"), screen_form("аpprove") == "approve"
    (True, True)
    """
    return unicodedata.normalize("NFKC", text).translate(_LATIN_LOOKS)


def label_of(labels: Sequence[str], given: str) -> str | None:
    """The label of ``labels`` that ``given`` is, written as the task writes it: the same
    text in another Unicode encoding is the same label ("é" as one code point or as "e"
    and a combining accent, as macOS writes it); a look-alike is not. ``None``: none.

    >>> label_of(["refusé", "ok"], "refuse\u0301"), label_of(["ok"], "оk")
    ('refusé', None)
    """
    if given in labels:
        return given
    form = unicodedata.normalize("NFC", given)
    return next((label for label in labels if unicodedata.normalize("NFC", label) == form), None)


def look_alike(names: Iterable[str]) -> tuple[str, str] | None:
    """The first two of ``names`` that look the same on screen (:func:`screen_form`).

    >>> look_alike(["amount", "аmount"]), look_alike(["yes", "no"])
    (('amount', 'аmount'), None)
    """
    seen: dict[str, str] = {}
    for name in names:
        form = screen_form(name)
        if form in seen:
            return seen[form], name
        seen[form] = name
    return None


def _name_problem(name: object) -> str | None:
    """Why ``name`` is not a valid feature name, or ``None`` when it is.

    >>> _name_problem("sepal length (cm)") is None, _name_problem("a=b")
    (True, "feature names may not contain '=', ':' or control characters")
    >>> _name_problem("  ")
    'feature names may not be blank (spaces only)'
    >>> _name_problem("a\u200db")
    'feature names may not contain invisible characters (U+200D)'
    """
    if not isinstance(name, str) or not name:
        return "feature names must be non-empty strings"
    if len(name) > MAX_NAME_LENGTH:
        return f"feature names must be at most {MAX_NAME_LENGTH} characters"
    if _RESERVED.search(name):
        return "feature names may not contain '=', ':' or control characters"
    hidden = invisible_characters(name)
    if hidden:  # zero-width characters, direction overrides: names people cannot read
        return f"feature names may not contain invisible characters ({hidden})"
    if not name.strip():
        return "feature names may not be blank (spaces only)"
    if name != name.strip():
        return "feature names may not start or end with spaces"
    return None


def _parse_spec(name: str, raw: object) -> FeatureSpec:
    if isinstance(raw, str):
        kind, required = raw, True
    elif isinstance(raw, dict):
        extra = sorted(str(k) for k in raw if k not in ("type", "required"))
        if extra:
            raise InvalidSchema(name, f"unknown key {extra[0]!r}; allowed keys are type, required")
        if "type" not in raw:
            raise InvalidSchema(name, "missing 'type'")
        kind, required = raw["type"], raw.get("required", True)
        if not isinstance(required, bool):
            raise InvalidSchema(name, "'required' must be true or false")
    else:
        raise InvalidSchema(name, 'expected a kind such as "number" or {"type": ..., ...}')
    if kind not in FEATURE_KINDS:
        raise InvalidSchema(name, f"unknown kind {kind!r}; expected one of {_KIND_LIST}")
    return FeatureSpec(kind, required)


def parse_schema(raw: dict) -> dict[str, FeatureSpec]:
    """Parse a schema from its JSON form.

    Parameters
    ----------
    raw
        Maps each feature name to a kind (``"number"``, ``"category"``, ``"text"``,
        ``"boolean"``) or to ``{"type": kind, "required": bool}``.

    Returns
    -------
    dict[str, FeatureSpec]
        The schema, in the order given.

    Raises
    ------
    InvalidSchema
        Naming the offending feature (or ``"schema"`` for an empty or oversized schema).

    Examples
    --------
    >>> parse_schema({"amount": "number", "note": {"type": "text", "required": False}})
    {'amount': FeatureSpec(kind='number', required=True),
     'note': FeatureSpec(kind='text', required=False)}
    >>> parse_schema({"amount": "money"})
    Traceback (most recent call last):
    ...
    learner.errors.InvalidSchema: amount: unknown kind 'money'; expected one of number, ...
    """
    if not isinstance(raw, dict):
        raise InvalidSchema(SCHEMA_FIELD, "expected an object mapping feature names to kinds")
    if not raw:
        raise InvalidSchema(SCHEMA_FIELD, "a schema needs at least one feature")
    if len(raw) > MAX_FEATURES:
        raise InvalidSchema(SCHEMA_FIELD, f"at most {MAX_FEATURES} features, got {len(raw)}")
    schema = {}
    for name, spec in raw.items():
        problem = _name_problem(name)
        if problem:
            raise InvalidSchema(str(name), problem)
        schema[name] = _parse_spec(name, spec)
    _distinct_on_screen(schema, InvalidSchema)
    return schema


def _distinct_on_screen(names: Iterable[str], error: type[InvalidSchema | InvalidFeatures]) -> None:
    pair = look_alike(names)
    if pair is not None:
        raise error(pair[1], f"looks the same as feature {pair[0]!r} on screen")


def schema_to_json(schema: dict[str, FeatureSpec]) -> dict:
    """The compact JSON form of a schema; ``parse_schema`` reads it back.

    Examples
    --------
    >>> schema_to_json({"a": FeatureSpec("number"), "b": FeatureSpec("category", required=False)})
    {'a': 'number', 'b': {'type': 'category', 'required': False}}
    """
    return {
        name: spec.kind if spec.required else {"type": spec.kind, "required": False}
        for name, spec in schema.items()
    }


def _infer_kind(name: str, value: object) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        is_text = len(value) > 30 and any(c.isspace() for c in value)
        return "text" if is_text else "category"
    got = "null" if value is None else type(value).__name__
    raise InvalidFeatures(name, f"cannot infer a kind from {got}; send a number, string or boolean")


def infer_schema(features: dict) -> dict[str, FeatureSpec]:
    """Guess a schema from a task's first case; every inferred feature is required.

    Booleans become ``boolean``, numbers ``number``, strings ``text`` when they are longer
    than 30 characters and contain whitespace, else ``category``.

    Raises
    ------
    InvalidFeatures
        Naming a feature whose name or value gives no kind (``None``, lists, objects).

    Examples
    --------
    >>> infer_schema({"amount": 12.5, "country": "FR", "vip": True})
    {'amount': FeatureSpec(kind='number', required=True),
     'country': FeatureSpec(kind='category', required=True),
     'vip': FeatureSpec(kind='boolean', required=True)}
    >>> infer_schema({"note": "the parcel arrived late and damaged"})["note"].kind
    'text'
    """
    if not isinstance(features, dict) or not features:
        raise InvalidFeatures("", "expected a non-empty object to infer a schema from")
    if len(features) > MAX_FEATURES:
        raise InvalidFeatures("", f"at most {MAX_FEATURES} features, got {len(features)}")
    schema = {}
    for name, value in features.items():
        problem = _name_problem(name)
        if problem:
            raise InvalidFeatures(str(name), problem)
        schema[name] = FeatureSpec(_infer_kind(name, value))
    _distinct_on_screen(schema, InvalidFeatures)
    return schema


def _expected(kind: str) -> str:
    return {
        "number": "a finite number",
        "category": "a string or an integer",
        "text": "a string",
        "boolean": "true or false",
    }[kind]


def _type_name(value: object) -> str:
    return {bool: "boolean", str: "string", int: "integer", float: "number"}.get(
        type(value), type(value).__name__
    )


def validate_features(
    schema: dict[str, FeatureSpec], features: dict, *, max_string_length: int = 10_000
) -> dict[str, object]:
    """Check a case's features against the schema and return them cleaned.

    Parameters
    ----------
    schema
        The task schema.
    features
        The case's features. ``None`` counts as missing.
    max_string_length
        Longest string accepted for category and text features.

    Returns
    -------
    dict[str, object]
        The present features in schema order: numbers as ``float``, categories as ``str``.

    Raises
    ------
    InvalidFeatures
        Naming the field: unknown feature, missing required feature, wrong type,
        non-finite or huge number (beyond ``MAX_MAGNITUDE``) or overlong string.

    Examples
    --------
    >>> schema = parse_schema({"amount": "number", "country": {"type": "category",
    ...                                                       "required": False}})
    >>> validate_features(schema, {"country": 33, "amount": 10})
    {'amount': 10.0, 'country': '33'}
    >>> validate_features(schema, {"amount": "ten"})
    Traceback (most recent call last):
    ...
    learner.errors.InvalidFeatures: amount: expected a finite number, got string
    >>> validate_features(schema, {"amount": 1e155})
    Traceback (most recent call last):
    ...
    learner.errors.InvalidFeatures: amount: expected a number within ±1e+100, got 1e+155
    """
    if not isinstance(features, dict):
        raise InvalidFeatures("", "expected an object mapping feature names to values")
    if not features.keys() <= schema.keys():
        unknown = next(name for name in features if name not in schema)
        names = list(schema)
        shown = ", ".join(names[:20]) + (", ..." if len(names) > 20 else "")
        raise InvalidFeatures(str(unknown), f"unknown feature; expected one of {shown}")
    clean: dict[str, object] = {}
    for name, spec in schema.items():
        value = features.get(name)
        if value is None:
            if spec.required:
                raise InvalidFeatures(name, "missing required feature")
            continue
        kind = spec.kind
        # the common cases first, by exact type (bool is an int, never a float)
        if type(value) is float and kind == "number" and -MAX_MAGNITUDE <= value <= MAX_MAGNITUDE:
            clean[name] = value
            continue
        if type(value) is str and kind != "number" and kind != "boolean":
            if len(value) > max_string_length:
                raise InvalidFeatures(
                    name, f"string longer than {max_string_length} characters ({len(value)})"
                )
            clean[name] = value
            continue
        if kind == "number":
            if isinstance(value, int | float) and not isinstance(value, bool):
                try:
                    number = float(value)
                except OverflowError:
                    number = math.inf
                if -MAX_MAGNITUDE <= number <= MAX_MAGNITUDE:  # False for NaN too
                    clean[name] = number
                    continue
                if math.isfinite(number):
                    raise InvalidFeatures(
                        name, f"expected a number within ±{MAX_MAGNITUDE:g}, got {value!r}"
                    )
                raise InvalidFeatures(name, f"expected {_expected(kind)}, got {value!r}")
        elif kind == "boolean":
            if isinstance(value, bool):
                clean[name] = value
                continue
        elif isinstance(value, str) or (
            kind == "category" and isinstance(value, int) and not isinstance(value, bool)
        ):
            try:
                text = value if isinstance(value, str) else str(value)
            except ValueError:  # an integer too long to print
                raise InvalidFeatures(name, "integer too long for a category") from None
            if len(text) > max_string_length:
                raise InvalidFeatures(
                    name, f"string longer than {max_string_length} characters ({len(text)})"
                )
            clean[name] = text
            continue
        raise InvalidFeatures(name, f"expected {_expected(kind)}, got {_type_name(value)}")
    return clean
