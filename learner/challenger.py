"""After drift: a fresh model trained only on new labels races the live one.

When the governor detects drift, the live model still carries the old concept and has
to unlearn it, which takes thousands of labels when the change is large (every label
rotated: the model is confidently wrong everywhere). A :class:`Challenger` starts an
untrained model of the same kind at the alarm and teaches it every later label; before
each label both models predict it (prequential). The challenger takes over when it was
right where the live model was wrong significantly more often than the reverse
(McNemar's exact test on the cases where they disagree), and is dropped when it has not
won within ``max_labels``. Everything is a fold of the labels in log order, so a replay
of the label log ends with the same model.

Examples
--------
>>> from learner.schema import parse_schema
>>> live = TaskModel(["a", "b"], parse_schema({"v": "number"}))
>>> for i in range(300):  # the old concept: v > 0 means "b"
...     live.learn_one({"v": (i % 20) - 10.0}, "b" if i % 20 >= 10 else "a")
>>> challenger = Challenger(live)
>>> verdicts = []
>>> for i in range(300):  # the labels swap
...     x = {"v": (i % 20) - 10.0}
...     verdicts.append(challenger.observe(live, x, "a" if i % 20 >= 10 else "b"))
...     live.learn_one(x, "a" if i % 20 >= 10 else "b")
>>> verdicts.index("promote") < 100
True
>>> new = challenger.promote(live)
>>> new.n_learned == live.n_learned, new.predict_proba_one({"v": 5.0})["a"] > 0.5
(True, True)
"""

from __future__ import annotations

from scipy.stats import binom

from learner.controller import Migration
from learner.errors import LearnerError
from learner.model import TaskModel
from learner.uncertainty import suggestion

__all__ = ["Challenger", "starts_challenger"]


def challenger_for(model: TaskModel, drift: bool) -> Challenger:
    """The challenger a drift alarm or a suspension starts (:func:`starts_challenger`)."""
    return Challenger(model, since="the drift alarm" if drift else "the suspension")


def starts_challenger(drift: bool, running: Challenger | None, moved: list[Migration]) -> bool:
    """Whether a label starts a (new) challenger: on a drift alarm, or when its
    migrations suspended automation and none races yet (a sudden change can show first
    as a broken bound: rotated labels in a task of several classes, where audits find
    the errors only bit by bit). The service and the simulator both ask this.

    >>> broke = [Migration("suspended", None, "suspended: bound 0.061 > 0.05", 9, 3, 0.061)]
    >>> starts_challenger(False, None, broke), starts_challenger(False, None, [])
    (True, False)
    >>> starts_challenger(True, None, [])  # a drift alarm always does
    True
    """
    return drift or (running is None and any(m.mode == "suspended" for m in moved))


class Challenger:
    """A fresh model racing the live one on the labels that arrive after a drift alarm.

    Parameters
    ----------
    live
        The live model at the alarm: the challenger has its labels, schema, family, seed.
    min_labels
        Labels the challenger must have seen before it can take over.
    max_labels
        Labels after which a challenger that has not won is dropped.
    level
        Significance of the one-sided McNemar test for "the challenger is better".
    """

    def __init__(
        self,
        live: TaskModel,
        *,
        min_labels: int = 30,
        max_labels: int = 3000,
        level: float = 0.01,
        since: str = "the drift alarm",
    ) -> None:
        if not 0 < min_labels <= max_labels:
            raise LearnerError("need 0 < min_labels <= max_labels")
        if not 0.0 < level < 1.0:
            raise LearnerError(f"level must be in (0, 1), got {level}")
        self.model = TaskModel(live.labels, live.schema, live.family, live.seed)
        self.min_labels, self.max_labels, self.level = min_labels, max_labels, level
        self.since = since  # what started it, as a replacement's reason names it
        self.n = 0
        self.wins = 0  # the challenger right, the live model wrong
        self.losses = 0  # the reverse

    def observe(self, live: TaskModel, x: dict, y: str) -> str | None:
        """Score both models on ``(x, y)`` before either learns it, then teach the challenger.

        Call it before the live model learns the label. Returns ``"promote"`` when the
        challenger should take over (:meth:`promote`), ``"drop"`` when it gave up, else
        ``None``.
        """
        mine = self.model.n_learned > 0 and suggestion(self.model.predict_proba_one(x)) == y
        theirs = suggestion(live.predict_proba_one(x)) == y
        self.wins += mine and not theirs
        self.losses += theirs and not mine
        self.model.learn_one(x, y)
        self.n += 1
        if self.n >= self.min_labels and self.p_value() < self.level:
            return "promote"
        if self.n >= self.max_labels:
            return "drop"
        return None

    def p_value(self) -> float:
        """One-sided McNemar (exact): chance of this many wins or more if both were equal."""
        discordant = self.wins + self.losses
        if not discordant:
            return 1.0
        return float(binom.sf(self.wins - 1, discordant, 0.5))

    def promote(self, live: TaskModel) -> TaskModel:
        """The challenger's model, numbered after the live one (versions keep rising)."""
        self.model.n_learned = max(self.model.n_learned, live.n_learned)
        return self.model

    def __repr__(self) -> str:
        return f"Challenger(n={self.n}, wins={self.wins}, losses={self.losses})"

    @property
    def replacement_reason(self) -> str:
        """Why the live model was replaced by this one, as the history says it."""
        since = getattr(self, "since", "the drift alarm")  # pickled before it was kept
        return f"model replaced by one trained since {since} ({self.n} labels)"
