"""Prequential (test-then-train) evaluation of models on labelled streams.

Run ``python -m learner.evaluate`` to redo the measurements behind the default model
family (``learner/MODEL_CHOICE.md``): prequential accuracy, µs per case and snapshot size
of every candidate on phishing, bananas, imagesegments and digits (``--datasets tickets``
for the synthetic mixed-kind stream).
"""

from __future__ import annotations

import argparse
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from river import forest, linear_model, multiclass, optim, tree

from learner.datasets import load_stream
from learner.model import TaskModel

__all__ = ["CANDIDATES", "PrequentialResult", "compare_models", "prequential"]

log = logging.getLogger(__name__)


@dataclass
class PrequentialResult:
    """Accuracy of predictions made before each label, and the time per case."""

    n: int
    correct: int
    predict_seconds: float
    learn_seconds: float
    model_bytes: int = 0

    @property
    def accuracy(self) -> float:
        return self.correct / self.n if self.n else 0.0

    @property
    def predict_us(self) -> float:
        return 1e6 * self.predict_seconds / self.n if self.n else 0.0

    @property
    def learn_us(self) -> float:
        return 1e6 * self.learn_seconds / self.n if self.n else 0.0


def prequential(model: TaskModel, rows: Iterable[tuple[dict, str]]) -> PrequentialResult:
    """Predict each case, then learn its label; count the correct suggestions.

    Examples
    --------
    >>> stream = load_stream("phishing", n=300)
    >>> result = prequential(TaskModel(stream.labels, stream.schema), stream.rows)
    >>> result.n, result.accuracy > 0.7
    (300, True)
    """
    n = correct = 0
    predict_seconds = learn_seconds = 0.0
    clock = time.perf_counter
    for x, y in rows:
        t0 = clock()
        proba = model.predict_proba_one(x)
        t1 = clock()
        model.learn_one(x, y)
        t2 = clock()
        predict_seconds += t1 - t0
        learn_seconds += t2 - t1
        n += 1
        correct += max(proba, key=proba.__getitem__) == y
    size = len(model.to_bytes()) if hasattr(model, "to_bytes") else 0
    return PrequentialResult(n, correct, predict_seconds, learn_seconds, size)


def _linear(optimizer: Callable[[], optim.base.Optimizer], multi: str = "softmax") -> Callable:
    def make(labels: list[str], seed: int):
        if len(labels) == 2:
            return linear_model.LogisticRegression(optimizer=optimizer())
        if multi == "softmax":
            return linear_model.SoftmaxRegression(optimizer=optimizer())
        logistic = linear_model.LogisticRegression(optimizer=optimizer())
        return multiclass.OneVsRestClassifier(logistic)

    return make


def _amf(n: int, max_nodes: int | None, seed: int) -> forest.AMFClassifier:
    return forest.AMFClassifier(n, max_nodes=max_nodes, seed=seed)


#: name -> (family, classifier factory ``(labels, seed) -> classifier``); ``None`` means
#: the family's default.
CANDIDATES: dict[str, tuple[str, Callable | None]] = {
    "linear SGD(0.01)": ("linear", _linear(lambda: optim.SGD(0.01))),
    "linear SGD(0.05)": ("linear", _linear(lambda: optim.SGD(0.05))),
    "linear SGD(0.1)": ("linear", _linear(lambda: optim.SGD(0.1))),
    "linear SGD(0.05) one-vs-rest": ("linear", _linear(lambda: optim.SGD(0.05), "ovr")),
    "linear Adam(0.001)": ("linear", _linear(optim.Adam)),
    "linear AdaGrad(0.1) [default]": ("linear", None),
    "linear AdaGrad(0.5)": ("linear", _linear(lambda: optim.AdaGrad(0.5))),
    "forest AMF(10, max_nodes=300)": ("forest", lambda labels, seed: _amf(10, 300, seed)),
    "forest AMF(10, max_nodes=500) [default]": ("forest", None),
    "forest AMF(10, max_nodes=1000)": ("forest", lambda labels, seed: _amf(10, 1000, seed)),
    "forest AMF(10, unbounded)": ("forest", lambda labels, seed: _amf(10, None, seed)),
    "forest ARF(10)": ("forest", lambda labels, seed: forest.ARFClassifier(10, seed=seed)),
    "forest HAT": ("forest", lambda labels, seed: tree.HoeffdingAdaptiveTreeClassifier(seed=seed)),
}


DATASETS = ("phishing", "bananas", "imagesegments", "digits")


def compare_models(
    candidates: dict[str, tuple[str, Callable | None]] | None = None,
    datasets: Iterable[str] = DATASETS,
    *,
    n: int = 3000,
    seed: int = 0,
) -> list[tuple[str, str, PrequentialResult]]:
    """Prequential results of each candidate on each data set (first ``n`` shuffled rows).

    Examples
    --------
    >>> rows = compare_models({"linear": ("linear", None)}, ["phishing"], n=100)
    >>> [(model, data, result.n) for model, data, result in rows]
    [('linear', 'phishing', 100)]
    """
    candidates = CANDIDATES if candidates is None else candidates
    results = []
    for data in datasets:
        for name, (family, factory) in candidates.items():
            stream = load_stream(data, seed=seed, n=n)
            classifier = None if factory is None else factory(stream.labels, seed)
            model = TaskModel(stream.labels, stream.schema, family, seed, classifier=classifier)
            result = prequential(model, stream.rows)
            log.info("%s on %s: %.3f", name, data, result.accuracy)
            results.append((name, data, result))
    return results


def _table(results: list[tuple[str, str, PrequentialResult]]) -> str:
    lines = [
        "| model | data set | cases | accuracy | predict µs | learn µs | snapshot KiB |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, data, r in results:
        lines.append(
            f"| {name} | {data} | {r.n} | {r.accuracy:.3f} | {r.predict_us:.0f} | {r.learn_us:.0f} "
            f"| {r.model_bytes / 1024:.0f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=3000, help="cases per data set")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--datasets", nargs="+", default=list(DATASETS), help="stream names (learner.datasets)"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    log.info("%s", _table(compare_models(datasets=args.datasets, n=args.n, seed=args.seed)))


if __name__ == "__main__":
    main()
