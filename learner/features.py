"""Feature pipelines built from a task schema.

:func:`build_features` turns a validated feature dict (see
:func:`learner.schema.validate_features`) into a flat dict of numbers a river model can
learn from. Output names keep the source feature recoverable: a number or boolean keeps
its name, a category becomes ``name=value``, a text token ``name:token`` and a missing
optional number ``name=<missing>``. Feature names cannot contain ``=`` or ``:``, so
:func:`source_feature` maps any output back to the feature it came from.

Every step iterates the schema's fields in schema order (never a ``set``), so the output
order, and with it every floating-point sum downstream, is the same in every process.
"""

from __future__ import annotations

from river import base, compose, feature_extraction, preprocessing

from learner.schema import FeatureSpec

__all__ = [
    "BooleanEncoder",
    "CategoryEncoder",
    "MissingIndicator",
    "SelectFields",
    "TextVectorizer",
    "build_features",
    "source_feature",
]

MISSING = "<missing>"


class SelectFields(base.Transformer):
    """Keep the given fields that are present, in the given order.

    Unlike ``compose.Select`` it tolerates absent (optional) fields and keeps a fixed
    order (``compose.Select`` stores its keys in a ``set``, whose order varies between
    processes).

    Examples
    --------
    >>> SelectFields("b", "a").transform_one({"a": 1.0, "c": 3.0})
    {'a': 1.0}
    """

    def __init__(self, *fields: str) -> None:
        self.fields = fields

    def transform_one(self, x: dict) -> dict:
        return {f: x[f] for f in self.fields if f in x}


class BooleanEncoder(base.Transformer):
    """Booleans as 0.0 / 1.0.

    Examples
    --------
    >>> BooleanEncoder("vip", "new").transform_one({"vip": True, "new": False})
    {'vip': 1.0, 'new': 0.0}
    """

    def __init__(self, *fields: str) -> None:
        self.fields = fields

    def transform_one(self, x: dict) -> dict:
        return {f: 1.0 if x[f] else 0.0 for f in self.fields if f in x}


class MissingIndicator(base.Transformer):
    """``name=<missing>: 1.0`` for each of the given fields that is absent.

    Examples
    --------
    >>> MissingIndicator("age", "income").transform_one({"age": 40.0})
    {'income=<missing>': 1.0}
    """

    def __init__(self, *fields: str) -> None:
        self.fields = fields
        self._names = {f: f"{f}={MISSING}" for f in fields}

    def transform_one(self, x: dict) -> dict:
        return {self._names[f]: 1.0 for f in self.fields if f not in x}


class CategoryEncoder(base.Transformer):
    """One-hot encoding of category fields as ``name=value: 1.0``.

    ``preprocessing.OneHotEncoder`` names its outputs ``name_value``, which can collide
    between fields (``a`` = ``b_c`` vs ``a_b`` = ``c``) and cannot be traced back to the
    field; ``=`` cannot occur in a feature name, so these names are unambiguous.

    Parameters
    ----------
    fields
        The category fields.
    dense
        Also emit ``0.0`` for the values seen so far (the first ``max_dense`` per field),
        for trees: they treat an absent feature as missing, not as zero.
    max_dense
        Values per field kept for ``dense`` output.

    Examples
    --------
    >>> CategoryEncoder("country", "plan").transform_one({"country": "FR"})
    {'country=FR': 1.0}
    >>> dense = CategoryEncoder("country", dense=True)
    >>> for c in ("FR", "DE"):
    ...     dense.learn_one({"country": c})
    >>> dense.transform_one({"country": "IT"})
    {'country=FR': 0.0, 'country=DE': 0.0, 'country=IT': 1.0}
    """

    def __init__(self, *fields: str, dense: bool = False, max_dense: int = 50) -> None:
        self.fields = fields
        self.dense = dense
        self.max_dense = max_dense
        self._zeros: dict[str, float] = {}
        self._counts = dict.fromkeys(fields, 0)

    def learn_one(self, x: dict) -> None:
        if not self.dense:
            return
        zeros, counts = self._zeros, self._counts
        for f in self.fields:
            if f in x and counts[f] < self.max_dense:
                name = f"{f}={x[f]}"
                if name not in zeros:
                    zeros[name] = 0.0
                    counts[f] += 1

    def transform_one(self, x: dict) -> dict:
        out = self._zeros.copy() if self.dense else {}
        for f in self.fields:
            if f in x:
                out[f"{f}={x[f]}"] = 1.0
        return out


class TextVectorizer(feature_extraction.TFIDF):
    """TF-IDF of one text field (lowercased), tokens named ``field:token``.

    An absent field gives no features and does not count as a document.

    Examples
    --------
    >>> tv = TextVectorizer("note")
    >>> tv.learn_one({"note": "Late parcel"})
    >>> tv.transform_one({"note": "late late"})
    {'note:late': 1.0}
    >>> tv.transform_one({})
    {}
    """

    def __init__(self, on: str) -> None:
        super().__init__(on=on, lowercase=True)
        self._prefix = f"{on}:"

    def learn_one(self, x: dict) -> None:
        if self.on in x:
            super().learn_one(x)

    def transform_one(self, x: dict) -> dict:
        if self.on not in x:
            return {}
        prefix = self._prefix
        return {prefix + t: v for t, v in super().transform_one(x).items()}


def build_features(schema: dict[str, FeatureSpec], *, for_trees: bool = False):
    """A river transformer that turns validated features into numbers.

    Numbers go through ``preprocessing.StandardScaler`` (an absent optional number
    contributes nothing, i.e. 0 after scaling, plus a ``name=<missing>`` indicator);
    categories are one-hot encoded; each text field gets its own TF-IDF; booleans become
    0/1.

    Parameters
    ----------
    schema
        The task schema.
    for_trees
        Build for tree models: numbers stay raw (a running scaler would move split
        thresholds as its statistics change) and categories are dense one-hot (trees
        treat an absent feature as missing, not as zero). Text stays sparse.

    Returns
    -------
    compose.TransformerUnion
        Call ``learn_one(x)`` then ``transform_one(x)``.

    Examples
    --------
    >>> from learner.schema import parse_schema
    >>> schema = parse_schema({"amount": {"type": "number", "required": False},
    ...                        "country": "category", "note": "text", "vip": "boolean"})
    >>> features = build_features(schema)
    >>> x = {"amount": 10.0, "country": "FR", "note": "Late parcel", "vip": True}
    >>> features.learn_one(x)
    >>> out = features.transform_one(x)
    >>> sorted(out.items())
    [('amount', 0.0), ('country=FR', 1.0), ('note:late', 0.707...), ('note:parcel', 0.707...),
     ('vip', 1.0)]
    >>> sorted(features.transform_one({"country": "DE", "note": "", "vip": False}))
    ['amount=<missing>', 'country=DE', 'vip']
    """
    by_kind: dict[str, list[str]] = {kind: [] for kind in ("number", "category", "text", "boolean")}
    for name, spec in schema.items():
        by_kind[spec.kind].append(name)
    numbers = by_kind["number"]
    optional_numbers = [n for n in numbers if not schema[n].required]

    steps: list[base.Transformer | compose.Pipeline] = []
    if numbers:
        select = SelectFields(*numbers)
        steps.append(select if for_trees else select | preprocessing.StandardScaler())
    if optional_numbers:
        steps.append(MissingIndicator(*optional_numbers))
    if by_kind["category"]:
        steps.append(CategoryEncoder(*by_kind["category"], dense=for_trees))
    if by_kind["boolean"]:
        steps.append(BooleanEncoder(*by_kind["boolean"]))
    steps.extend(TextVectorizer(name) for name in by_kind["text"])
    return compose.TransformerUnion(*steps)


def source_feature(name: str) -> str:
    """The schema feature an output of :func:`build_features` came from.

    Examples
    --------
    >>> source_feature("country=FR"), source_feature("note:late"), source_feature("amount")
    ('country', 'note', 'amount')
    """
    for i, c in enumerate(name):
        if c == "=" or c == ":":
            return name[:i]
    return name
