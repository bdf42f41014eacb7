"""A task's online classifier: schema-driven features plus a river model.

The model is a fold of the task's labels in log order: two models built with the same
arguments and fed the same labels in the same order give bit-identical probabilities, in
any process. That holds because every dict the model builds is ordered by the schema or
by the label list (never by a ``set`` of strings, whose order depends on the process's
hash seed), and tree models see label indices (small ints hash to themselves) rather
than label strings.
"""

from __future__ import annotations

import logging
import math
import pickle

from river import base, forest, linear_model, multiclass, optim

from learner.errors import InvalidLabel, LearnerError
from learner.features import build_features, source_feature
from learner.schema import FeatureSpec, parse_schema

__all__ = ["MODEL_FAMILIES", "TaskModel", "make_classifier"]

log = logging.getLogger(__name__)

MODEL_FAMILIES = ("linear", "forest")
#: Learning rate of the linear family's AdaGrad optimizer (see MODEL_CHOICE.md).
LINEAR_LEARNING_RATE = 0.1
#: Trees in the forest family, and the most nodes per tree (bounds memory and snapshots).
FOREST_SIZE = 10
FOREST_MAX_NODES = 500
_FORMAT = 1
_FAMILY_LIST = ", ".join(MODEL_FAMILIES)


def make_classifier(family: str, n_labels: int, seed: int = 0) -> base.Classifier:
    """The river classifier behind a model family.

    ``linear`` is a logistic regression trained by AdaGrad (softmax regression for more
    than two labels); ``forest`` is an aggregated Mondrian forest of bounded size. See
    ``learner/MODEL_CHOICE.md`` for the measurements behind these choices.

    Examples
    --------
    >>> make_classifier("linear", 2)
    LogisticRegression (...)
    >>> type(make_classifier("linear", 3)).__name__, type(make_classifier("forest", 2)).__name__
    ('SoftmaxRegression', 'AMFClassifier')
    """
    if family == "linear":
        optimizer = optim.AdaGrad(LINEAR_LEARNING_RATE)
        if n_labels == 2:
            return linear_model.LogisticRegression(optimizer=optimizer)
        return linear_model.SoftmaxRegression(optimizer=optimizer)
    if family == "forest":
        return forest.AMFClassifier(n_estimators=FOREST_SIZE, max_nodes=FOREST_MAX_NODES, seed=seed)
    raise LearnerError(f"unknown model family {family!r}; expected one of {_FAMILY_LIST}")


class TaskModel:
    """The online classifier of one task.

    Parameters
    ----------
    labels
        The task's labels, in display order (at least two, distinct).
    schema
        The task schema (parsed, or its JSON form); ``predict_proba_one``, ``learn_one``
        and ``explain_one`` take features as returned by
        :func:`learner.schema.validate_features`.
    family
        ``"linear"`` (default: fast, explains itself, good with text) or ``"forest"``
        (non-linear, for tabular data; several times slower).
    seed
        Seeds the forest's randomness.
    classifier
        A river classifier to use instead of the family's own (for experiments). A binary
        one (``_multiclass`` false) is trained with ``labels[1]`` as ``True``.

    Notes
    -----
    Not thread-safe: river updates plain dicts, so run ``learn_one`` under a lock that
    predictions also take. Predicting between labels does not change what the model
    learns: a live model and one rebuilt by replaying its labels are identical.

    Examples
    --------
    >>> from learner.schema import parse_schema
    >>> model = TaskModel(["ham", "spam"], parse_schema({"n_links": "number", "body": "text"}))
    >>> model.predict_proba_one({"n_links": 0.0, "body": "hello"})
    {'ham': 0.5, 'spam': 0.5}
    >>> for _ in range(20):
    ...     model.learn_one({"n_links": 9.0, "body": "cheap pills now"}, "spam")
    ...     model.learn_one({"n_links": 0.0, "body": "lunch at noon"}, "ham")
    >>> proba = model.predict_proba_one({"n_links": 7.0, "body": "cheap pills"})
    >>> max(proba, key=proba.get), model.n_learned
    ('spam', 40)
    >>> sorted(name for name, _ in model.explain_one({"n_links": 7.0, "body": "cheap pills"}))
    ['body', 'n_links']
    >>> TaskModel.from_bytes(model.to_bytes()).predict_proba_one({"n_links": 7.0}) == \\
    ...     model.predict_proba_one({"n_links": 7.0})
    True
    """

    def __init__(
        self,
        labels: list[str],
        schema: dict[str, FeatureSpec],
        family: str = "linear",
        seed: int = 0,
        *,
        classifier: base.Classifier | None = None,
    ) -> None:
        labels = list(labels)
        if len(labels) < 2 or len(set(labels)) != len(labels):
            raise LearnerError("a task needs at least two distinct labels")
        if not all(isinstance(label, str) for label in labels):
            raise LearnerError("labels must be strings")
        if family not in MODEL_FAMILIES:
            raise LearnerError(f"unknown model family {family!r}; expected one of {_FAMILY_LIST}")
        self.labels = labels
        if all(isinstance(spec, FeatureSpec) for spec in schema.values()):
            self.schema = dict(schema)
        else:
            self.schema = parse_schema(schema)
        self.family = family
        self.seed = seed
        self.n_learned = 0
        self.features = build_features(self.schema, for_trees=family == "forest")
        if classifier is None:
            classifier = make_classifier(family, len(labels), seed)
        self.classifier = classifier
        self._index = {label: i for i, label in enumerate(labels)}
        self._uniform = dict.fromkeys(labels, 1.0 / len(labels))
        # How the classifier sees a label: as a bool (binary), as the label itself
        # (one-vs-rest and softmax, given every label up front so that their outputs
        # always hold every label in label order), or as its index (anything else: trees
        # keep classes in sets, and small ints hash alike in every process).
        if not classifier._multiclass:
            if len(labels) != 2:
                raise LearnerError(
                    f"{type(classifier).__name__} is binary; the task has {len(labels)} labels"
                )
            self._mode = "binary"
        elif isinstance(classifier, multiclass.OneVsRestClassifier):
            classifier.classifiers = {label: classifier.classifier.clone() for label in labels}
            self._mode = "keyed"
        elif isinstance(classifier, linear_model.SoftmaxRegression):
            for label in labels:
                classifier.weights[label]  # noqa: B018 (creates the label's weights)
            self._mode = "keyed"
        else:
            self._mode = "indexed"

    # --- prediction ---------------------------------------------------------------------
    def predict_proba_one(self, x: dict) -> dict[str, float]:
        """Probability of every label (in label order, summing to 1); uniform before learning.

        Examples
        --------
        >>> from learner.schema import parse_schema
        >>> TaskModel(["a", "b", "c"], parse_schema({"v": "number"})).predict_proba_one({"v": 1.0})
        {'a': 0.333..., 'b': 0.333..., 'c': 0.333...}
        """
        if not self.n_learned:
            return self._uniform.copy()
        xt = self.features.transform_one(x)
        mode = self._mode
        if mode == "binary":
            p = self.classifier.predict_proba_one(xt)[True]
            first, second = self.labels
            return {first: 1.0 - p, second: p}
        if mode == "keyed":  # already normalised, keyed by label in label order
            return self.classifier.predict_proba_one(xt)  # type: ignore[return-value]
        return self._normalise(self.classifier.predict_proba_one(xt))

    def _normalise(self, raw: dict) -> dict[str, float]:
        proba = {label: raw.get(i, 0.0) for i, label in enumerate(self.labels)}
        total = math.fsum(proba.values())
        if not total > 0.0 or not math.isfinite(total):
            return self._uniform.copy()
        if total != 1.0:
            for label in proba:
                proba[label] /= total
        return proba

    # --- learning -----------------------------------------------------------------------
    def learn_one(self, x: dict, y: str) -> None:
        """Learn from one labelled case.

        Raises
        ------
        InvalidLabel
            When ``y`` is not one of the task's labels.

        Examples
        --------
        >>> from learner.schema import parse_schema
        >>> model = TaskModel(["no", "yes"], parse_schema({"v": "number"}))
        >>> model.learn_one({"v": 1.0}, "maybe")
        Traceback (most recent call last):
        ...
        learner.errors.InvalidLabel: maybe: unknown label; expected one of 'no', 'yes'
        """
        index = self._index.get(y) if isinstance(y, str) else None
        if index is None:
            expected = ", ".join(repr(label) for label in self.labels[:20])
            raise InvalidLabel(y, f"unknown label; expected one of {expected}")
        features = self.features
        features.learn_one(x)
        xt = features.transform_one(x)
        mode = self._mode
        if mode == "binary":
            self.classifier.learn_one(xt, index == 1)
        elif mode == "keyed":
            self.classifier.learn_one(xt, y)
        else:
            self.classifier.learn_one(xt, index)
        self.n_learned += 1

    # --- explanation --------------------------------------------------------------------
    def explain_one(self, x: dict, top: int = 5) -> list[tuple[str, float]]:
        """The features that pushed the suggestion most, with their signed contribution.

        A positive contribution pushed toward the suggested (most probable) label. Linear
        models give weight × transformed value summed per schema feature (in log-odds);
        other models give the drop in the suggested label's probability when the feature
        is left out.

        Examples
        --------
        >>> from learner.schema import parse_schema
        >>> model = TaskModel(["low", "high"], parse_schema({"v": "number", "w": "number"}))
        >>> for i in range(50):
        ...     model.learn_one({"v": float(i % 2), "w": 0.5}, ["low", "high"][i % 2])
        >>> [(name, round(c, 2) > 0) for name, c in model.explain_one({"v": 1.0, "w": 0.5})]
        [('v', True)]
        """
        if not self.n_learned or top <= 0:
            return []
        proba = self.predict_proba_one(x)
        suggested = max(proba, key=proba.__getitem__)
        weights = self._linear_weights(suggested, proba)
        if weights is None:
            contributions = self._perturbation(x, suggested, proba[suggested])
        else:
            contributions = {}
            for name, value in self.features.transform_one(x).items():
                c = weights.get(name, 0.0) * value
                if c:
                    field = source_feature(name)
                    contributions[field] = contributions.get(field, 0.0) + c
        ranked = sorted(contributions.items(), key=lambda item: -abs(item[1]))
        return [(name, c) for name, c in ranked[:top] if c]

    def _linear_weights(self, suggested: str, proba: dict[str, float]) -> dict | None:
        """Per-feature weights toward ``suggested``, or ``None`` for a non-linear model.

        Logistic regression: the weights of the log-odds of ``suggested``. Softmax: the
        gradient of ``log p(suggested)``, ``w[suggested] - sum_l p(l) w[l]``.
        """
        clf = self.classifier
        if self._mode == "binary" and isinstance(clf, linear_model.LogisticRegression):
            weights = clf.weights
            if suggested == self.labels[0]:
                return {name: -w for name, w in weights.items()}
            return weights
        if isinstance(clf, multiclass.OneVsRestClassifier) and isinstance(
            clf.classifier, linear_model.LogisticRegression
        ):
            member = clf.classifiers[suggested]
            assert isinstance(member, linear_model.LogisticRegression)
            return member.weights
        if isinstance(clf, linear_model.SoftmaxRegression):
            combined = dict(clf.weights[suggested])
            for label, weights in clf.weights.items():
                p = proba[label]
                for name, w in weights.items():
                    combined[name] = combined.get(name, 0.0) - p * w
            return combined
        return None

    def _perturbation(self, x: dict, suggested: str, p: float) -> dict[str, float]:
        contributions = {}
        for name in x:
            without = {k: v for k, v in x.items() if k != name}
            contributions[name] = p - self.predict_proba_one(without)[suggested]
        return contributions

    # --- persistence --------------------------------------------------------------------
    def to_bytes(self) -> bytes:
        """Serialise the model (pickle; sign the bytes before storing them)."""
        return pickle.dumps((_FORMAT, self), protocol=pickle.HIGHEST_PROTOCOL)

    @classmethod
    def from_bytes(cls, data: bytes) -> TaskModel:
        """Load a model saved by :meth:`to_bytes`. Only pass bytes whose signature checked out.

        Raises
        ------
        LearnerError
            When the bytes do not hold a model of this format.
        """
        try:
            version, model = pickle.loads(data)
        except Exception as exc:
            raise LearnerError(f"cannot load a model from these bytes: {exc}") from exc
        if version != _FORMAT or not isinstance(model, cls):
            raise LearnerError(f"unsupported model format {version!r}")
        return model

    def __repr__(self) -> str:
        return (
            f"TaskModel(labels={self.labels!r}, family={self.family!r}, seed={self.seed}, "
            f"n_learned={self.n_learned})"
        )
