"""The live models: one per task, a fold of the label log in log order.

:class:`ModelStore` is the single owner of the models in a process. A model is
loaded from the newest snapshot whose signature checks out, then caught up by
replaying the labels logged after it. Labels are applied strictly in log order
(``catch_up``), so a restart, a replay and the live process all end in the same
model.

One lineage across processes: on PostgreSQL several API processes share the models.
Exactly one of them, the leader (see :mod:`api.lineage`), applies labels
(``ModelStore.leader`` is true there) and publishes a signed snapshot whenever its
models moved; the others (followers) serve the newest published snapshot
(:meth:`ModelStore.refresh`). On SQLite the one process is always the leader.
"""

from __future__ import annotations

import logging
import pickle
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Row, delete, func
from sqlmodel import Session, col, select

from api.cache import TTLCache
from api.db import Database
from api.errors import NotFound
from api.security import sign, verify
from api.tables import Case, Label, ModelSnapshot, Task
from learner import LearnerError, Rule, TaskModel, parse_schema
from learner.challenger import Challenger, challenger_for, starts_challenger
from learner.controller import AuditTally, Evidence, Migration, TaskGovernor
from learner.inputs import InputMonitor

log = logging.getLogger(__name__)
REPLAY_CHUNK = 1000
TASK_TTL_SECONDS = 1.0  # task settings seen by the routing hot path may lag this much
QUEUE_TTL_SECONDS = 30.0  # the oldest queued case (bounds queue ageing) may lag this much


@dataclass
class LiveModel:
    """A task's model and governor, the last label id folded into them, and their lock.

    ``migrations`` holds the governor's mode and threshold changes not yet written to
    the task's history, each with the id of the label that caused it (``None``: a
    settings change).
    """

    task_id: int
    model: TaskModel
    governor: TaskGovernor
    last_label_id: int = 0
    # the labelled cases folded in: the label log but for corrections and feedback reports
    # (a case corrected ten times, or reported on ten times, is one labelled case), which
    # the cold start counts up to min_labels
    labelled: int = 0
    last_snapshot_version: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)
    migrations: list[tuple[int | None, Migration]] = field(default_factory=list)
    mode_reason: str | None = None  # why the governor is in its mode (its last migration)
    published_version: int = 0  # the version of the newest snapshot of this lineage we know
    snapshot_lock: threading.Lock = field(default_factory=threading.Lock)
    # after a drift alarm: a fresh model racing this one (learner.challenger), in snapshots
    challenger: Challenger | None = None
    # the task's guardrail rules parsed against the model's schema, with what they were
    # parsed from (api.services.cases.guardrails)
    rules: tuple[Any, Any, list[Rule]] | None = None
    # the automated cases of each confidence bin since its last audit, in this process
    tally: AuditTally = field(default_factory=AuditTally)
    # the settings_version of the task row the governor follows (ModelStore.align_settings)
    settings_version: int = 0
    # the snapshot this state was loaded from or last saved as (followers load newer ones)
    snapshot_id: int = 0
    # the task's erasures this model was built without (ModelStore.forget_erased)
    erasures: int = 0
    # the label ranges its lineage's rollbacks left out (ModelSnapshot.skipped_labels)
    skipped: list[list[int]] = field(default_factory=list)
    # the inputs of the cases this process routed and stored (made on first use)
    inputs: InputMonitor | None = None

    def watch(self, features: dict) -> None:
        """Show the input monitor a case routed to be stored; the caller holds the lock."""
        if self.inputs is None:
            self.inputs = InputMonitor(self.model.schema)
        self.inputs.observe(features)

    @property
    def inputs_moved(self) -> str | None:
        """The feature whose move raises the audit rate now, else ``None``."""
        return None if self.inputs is None else self.inputs.moved

    def fold(
        self, label_id: int, row: Label | Row, features: dict, *, logged: bool = True
    ) -> None:
        """Teach one logged label to the model and its evidence to the governor.

        ``logged=False``: the label is not in the log yet (an import folds before it
        stores), so its migrations carry no label id; the caller records them with the
        labels (:func:`api.services.tasks.sync_task`'s ``covers``).

        Downstream feedback (``kind="feedback"``) teaches the model only: such reports
        are not a random sample, so they never reach the governor's evidence; nor do the
        labels of cases a guardrail rule held for a person (``guarded``): such cases are
        never automated, so they say nothing about the error of automated decisions. After a
        drift alarm, or a suspension because the bound broke (a sudden change can show
        there first), a challenger model learns every label too and replaces the model
        when it predicts the new labels significantly better.
        """
        moved: list[Migration] = []
        challenger = self.challenger
        verdict = challenger.observe(self.model, features, row.label) if challenger else None
        self.model.learn_one(features, row.label)
        self.labelled += row.kind not in ("correction", "feedback")
        if verdict is not None:
            assert challenger is not None
            self.challenger = None
            if verdict == "promote":
                self.model = challenger.promote(self.model)
                moved += self.governor.model_replaced(challenger.replacement_reason)
        if row.suggestion is not None and row.kind != "feedback" and not row.guarded:
            correct = row.label == row.suggestion
            if row.kind == "correction":
                moved += self.governor.correct(row.case_id, correct)
            else:
                evidence = Evidence(
                    row.confidence, correct, row.propensity, row.audit, row.route, row.audit_weight
                )
                before = self.governor.n_detections
                observed = self.governor.observe(row.case_id, evidence, self.version)
                moved += observed
                drift = self.governor.n_detections > before
                if starts_challenger(drift, self.challenger, observed):
                    self.challenger = challenger_for(self.model, drift)
        if moved:
            self.migrations += [(label_id if logged else None, m) for m in moved]
            self.mode_reason = moved[-1].reason
        self.last_label_id = label_id

    def adopt(self, fresh: LiveModel) -> None:
        """Take the state of a snapshot's model (a follower's refresh, a rollback); the
        caller holds the lock. Migrations not yet recorded belong to the old state."""
        self.model, self.governor, self.challenger = fresh.model, fresh.governor, fresh.challenger
        self.last_label_id, self.mode_reason = fresh.last_label_id, fresh.mode_reason
        self.labelled = fresh.labelled
        self.snapshot_id, self.erasures, self.skipped = (
            fresh.snapshot_id, fresh.erasures, fresh.skipped
        )
        self.last_snapshot_version = self.published_version = fresh.version
        self.migrations.clear()

    def take_migrations(self) -> list[tuple[int | None, Migration]]:
        with self.lock:
            taken, self.migrations = self.migrations, []
        return taken

    @property
    def version(self) -> int:
        return self.model.n_learned

    def snapshot_due(self, every: int) -> bool:
        """True when ``every`` labels or more were folded since the last kept snapshot."""
        return self.version - self.last_snapshot_version >= every


class ModelStore:
    """Owns every live model of this process."""

    def __init__(self, db: Database, secret: bytes, *, snapshot_every: int = 200) -> None:
        self.db = db
        self.secret = secret
        self.snapshot_every = snapshot_every
        self._models: dict[int, LiveModel] = {}
        self._lock = threading.Lock()
        # True: this process applies labels and writes snapshots (SQLite: always; PostgreSQL:
        # while it holds the leader lock, see api.lineage)
        self.leader = True
        self.tasks: TTLCache[str, Task] = TTLCache(TASK_TTL_SECONDS, self._read_task)
        #: task id -> creation time of its oldest queued case (learner.routing.queue_priority)
        self.oldest_queued: TTLCache[int, float | None] = TTLCache(
            QUEUE_TTL_SECONDS, self._read_oldest_queued
        )

    def _read_task(self, name: str) -> Task:
        with self.db.read() as session:
            task = session.exec(select(Task).where(Task.name == name)).first()
        if task is None:
            raise NotFound(f"task {name!r} not found")
        return task

    def _read_oldest_queued(self, task_id: int) -> float | None:
        with self.db.read() as session:
            return session.exec(
                select(func.min(Case.created_at)).where(
                    Case.task_id == task_id, col(Case.queued).is_(True)
                )
            ).one()

    def get(self, task: Task) -> LiveModel | None:
        """The task's live model, loaded on first use; ``None`` while it has no schema."""
        live = self._models.get(task.id)  # type: ignore[arg-type]
        if live is not None or task.features is None:
            return live
        with self._lock:
            live = self._models.get(task.id)  # type: ignore[arg-type]
            if live is None:
                live = self._load(task)
                self._models[task.id] = live  # type: ignore[index]
        return live

    def ready(self, task_name: str) -> tuple[Task, LiveModel] | None:
        """The task's cached settings and its loaded model, when both are at hand without
        touching the database (the event-loop fast path); else ``None``."""
        cached, task = self.tasks.at_hand(task_name)
        if not cached or task is None:
            return None
        live = self._models.get(task.id)  # type: ignore[arg-type]
        return None if live is None else (task, live)

    def load_all(self) -> None:
        """Load every task's model (at start-up, so the first request is not slow)."""
        with self.db.read() as session:
            tasks = session.exec(select(Task)).all()
        for task in tasks:
            try:
                self.get(task)
            except LearnerError as exc:  # stored before today's checks: PATCH valid ones
                log.error("task %s not loaded: %s", task.name, exc)

    def forget(self, task_id: int) -> None:
        self._models.pop(task_id, None)

    def loaded(self) -> list[LiveModel]:
        """The live models loaded so far."""
        return list(self._models.values())

    # --- loading ----------------------------------------------------------------------
    def new_live(self, task: Task) -> LiveModel:
        """An untrained model and a fresh governor for ``task``."""
        model = TaskModel(
            list(task.labels), parse_schema(task.features or {}), family=task.model_family
        )
        governor = TaskGovernor(
            target_error=task.target_error, delta=task.delta, min_labels=task.min_labels
        )
        return LiveModel(task.id, model, governor)  # type: ignore[arg-type]

    def _load(self, task: Task) -> LiveModel:
        live = self._from_snapshot(task) or self.new_live(task)
        replayed = self.catch_up(live)  # its migrations: those not recorded yet are due
        self.align_settings(live, task)  # a change since the snapshot: recorded when made
        if live.mode_reason is None:
            live.mode_reason = task.mode_reason
        log.info(
            "task %s: model version %d (replayed %d labels)", task.name, live.version, replayed
        )
        return live

    def _from_snapshot(self, task: Task) -> LiveModel | None:
        with self.db.read() as session:
            snapshots = session.exec(
                select(ModelSnapshot)
                .where(ModelSnapshot.task_id == task.id)
                .order_by(col(ModelSnapshot.last_label_id).desc(), col(ModelSnapshot.id).desc())
                .limit(5)
            ).all()
        for snap in snapshots:
            live = self.load_snapshot(snap)
            if live is not None:
                return live
        return None

    def load_snapshot(self, snap: ModelSnapshot) -> LiveModel | None:
        """The model in a snapshot, or ``None`` (logged) when its signature fails, so it
        is never unpickled, or when, signed, it does not load: never a reason not to run."""
        if not verify(snap.blob, snap.signature, self.secret):
            log.warning("task %d: snapshot %d has a bad signature", snap.task_id, snap.id)
            return None
        try:
            return self._live_from(snap)
        except Exception:
            log.exception("task %d: snapshot %d does not load", snap.task_id, snap.id)
            return None

    def _live_from(self, snap: ModelSnapshot) -> LiveModel:
        """The model in a snapshot whose signature was checked."""
        state = pickle.loads(snap.blob)  # signed by us: safe to unpickle
        model = TaskModel.from_bytes(state["model"])
        return LiveModel(
            snap.task_id,
            model,
            state["governor"],
            last_label_id=snap.last_label_id,
            labelled=state.get("labelled", model.n_learned),  # older snapshots: every label
            last_snapshot_version=model.n_learned,
            mode_reason=state.get("mode_reason"),
            published_version=model.n_learned,
            challenger=state.get("challenger"),
            snapshot_id=snap.id,  # type: ignore[arg-type]
            erasures=state.get("erasures", 0),
            skipped=list(snap.skipped_labels or []),
        )

    # --- learning ---------------------------------------------------------------------
    def catch_up(
        self,
        live: LiveModel,
        *,
        snapshots: bool = True,
        pause: Callable[[LiveModel], bool] | None = None,
        skipped: Sequence[Sequence[int]] = (),
    ) -> int:
        """Apply every logged label after ``live.last_label_id``, in log order (the leader
        then snapshots the model when one is due, unless ``snapshots=False``). ``pause``:
        stop after the label that makes it true (the caller records that state, then
        calls again for the rest). ``skipped``: ``[after, upto]`` label-id ranges left out
        (a lineage's rollbacks, for a rebuild from the first label)."""
        applied = 0
        outside = [~col(Label.id).between(after + 1, upto) for after, upto in skipped]
        with live.lock:
            while True:
                with self.db.read() as session:
                    rows = session.exec(
                        select(Label, Case.features)
                        .join(Case, col(Case.id) == Label.case_id)
                        .where(Label.task_id == live.task_id, col(Label.id) > live.last_label_id)
                        .where(*outside)
                        .order_by(col(Label.id))
                        .limit(REPLAY_CHUNK)
                    ).all()
                paused = False
                for row, features in rows:
                    live.fold(row.id, row, features)  # type: ignore[arg-type]  # stored: an id, a dict
                    applied += 1
                    if pause is not None and pause(live):
                        paused = True
                        break
                if paused or len(rows) < REPLAY_CHUNK:
                    break
        due = live.snapshot_due(self.snapshot_every)
        if applied and due and self.leader and snapshots:
            self.save_snapshot(live)
        return applied

    def apply(self, live: LiveModel, entry: Label | Row, features: dict) -> bool:
        """Apply a just-committed label; falls back to :meth:`catch_up` if any came before it.

        True when this call applied it (and whatever came before it). Only the leader
        applies labels: elsewhere this does nothing and returns ``False`` (the leader
        applies the label, and this process loads its next snapshot); on the leader it is
        also ``False`` when the leader's poll (:mod:`api.lineage`) applied it first.
        Whoever applied a label records its progress.
        """
        if not self.leader:
            return False
        label_id = entry.id
        assert label_id is not None
        applied = due = False
        with live.lock:
            if label_id > live.last_label_id and (
                label_id == live.last_label_id + 1 or self._is_next(live, label_id)
            ):
                live.fold(label_id, entry, features)
                applied = True
                due = live.snapshot_due(self.snapshot_every)
        if label_id > live.last_label_id:
            applied = self.catch_up(live) > 0
        elif due:
            self.save_snapshot(live)
        return applied

    def _is_next(self, live: LiveModel, label_id: int) -> bool:
        """True when no label of this task lies between the last applied one and ``label_id``."""
        with self.db.read() as session:
            between = session.exec(
                select(Label.id)
                .where(
                    Label.task_id == live.task_id,
                    col(Label.id) > live.last_label_id,
                    col(Label.id) < label_id,
                )
                .limit(1)
            ).first()
        return between is None

    def save_snapshot(self, live: LiveModel, *, keep: bool = True) -> None:
        """Persist a signed snapshot of the model as it stands.

        ``keep=False`` publishes a snapshot for the other processes only: it is deleted
        when the next one is written (by this process or, after a restart, the next).
        Kept snapshots (one every ``snapshot_every`` labels) are the restart points and
        the versions one can roll back to.
        """
        with live.snapshot_lock:
            with live.lock:
                blob = pickle.dumps(
                    {
                        "model": live.model.to_bytes(),
                        "governor": live.governor,
                        "mode_reason": live.mode_reason,
                        "challenger": live.challenger,
                        "labelled": live.labelled,
                        "erasures": live.erasures,
                    },
                    protocol=pickle.HIGHEST_PROTOCOL,
                )
                version, last_label_id = live.version, live.last_label_id
            with self.db.write() as session:
                snap = self._add_snapshot(session, live, blob, version, last_label_id, keep)
                session.exec(  # type: ignore[call-overload]
                    delete(ModelSnapshot).where(  # published ones it supersedes, also
                        col(ModelSnapshot.task_id) == live.task_id,  # those of an earlier run
                        col(ModelSnapshot.kept).is_(False),
                        col(ModelSnapshot.id) != snap.id,
                    )
                )
            live.published_version, live.snapshot_id = version, snap.id  # type: ignore[assignment]
            if keep:
                live.last_snapshot_version = version

    def publish(self, live: LiveModel) -> bool:
        """The leader: snapshot the model if it moved since the last snapshot written.

        Followers load it within their next poll; the snapshot is kept when
        ``snapshot_every`` labels passed since the last kept one.
        """
        if not self.leader or live.version == live.published_version:
            return False
        self.save_snapshot(live, keep=live.snapshot_due(self.snapshot_every))
        return True

    def newest_snapshots(self) -> dict[int, int]:
        """``task id -> id`` of each task's newest snapshot (the head of its lineage: the
        leader writes them in order, a rebuild or a rollback too)."""
        with self.db.read() as session:
            rows = session.exec(
                select(ModelSnapshot.task_id, func.max(ModelSnapshot.id)).group_by(
                    col(ModelSnapshot.task_id)
                )
            ).all()
        return {task_id: newest or 0 for task_id, newest in rows}

    def refresh(self, live: LiveModel) -> bool:
        """A follower: swap in the newest snapshot if it is newer than ``live``'s and not
        behind it in the label log (a model rebuilt after an erasure is a newer snapshot
        at the same label).

        A snapshot whose signature does not check out is never unpickled: the model is
        then rebuilt from the label log instead.
        """
        with self.db.read() as session:
            snap = session.exec(
                select(ModelSnapshot)
                .where(
                    ModelSnapshot.task_id == live.task_id,
                    col(ModelSnapshot.id) > live.snapshot_id,
                )
                .order_by(col(ModelSnapshot.id).desc())
                .limit(1)
            ).first()
        if snap is None:
            return False
        if snap.last_label_id < live.last_label_id:  # we replayed further at start
            live.snapshot_id = snap.id  # type: ignore[assignment]
            return False
        fresh = self.load_snapshot(snap)
        if fresh is None:  # rebuilt from the label log instead
            live.snapshot_id = snap.id  # type: ignore[assignment]
            return self.catch_up(live) > 0
        with live.lock:
            if fresh.last_label_id < live.last_label_id:
                return False
            live.adopt(fresh)  # its migrations: the leader records them
        return True

    def forget_erased(self, live: LiveModel, task: Task) -> bool:
        """The leader: rebuild the model from the label log when cases were erased since it
        was built, so no parameter keeps a value only an erased case carried (a weight per
        category value and per word), then replace every older snapshot of the task with
        one of the rebuilt model (they hold those values; rollbacks to before the erasure
        go with them). True when it rebuilt.

        The rebuild is a fold of the log as it stands (an erased case's labels are learned
        on no features), from the first label; its governor sees the same evidence, so the
        mode and threshold stay but for a challenger that the changed model makes win at
        another label (recorded like any change by the caller's :func:`sync_task`).
        """
        if not self.leader or task.erasures <= live.erasures:
            return False
        fresh = self.new_live(task)
        fresh.erasures = task.erasures
        fresh.skipped = skipped = live.skipped  # as the lineage's rollbacks left them out
        while True:  # labels may arrive meanwhile: fold them too, then swap under the lock
            self.catch_up(fresh, snapshots=False, skipped=skipped)
            if skipped:  # every label up to the last range's end is folded or left out
                fresh.last_label_id = max(fresh.last_label_id, max(u for _, u in skipped))
            self.align_settings(fresh, task)
            with live.lock:
                if fresh.last_label_id >= live.last_label_id:
                    live.adopt(fresh)
                    break
        self.save_snapshot(live)
        with self.db.write() as session:
            session.exec(  # type: ignore[call-overload]
                delete(ModelSnapshot).where(
                    col(ModelSnapshot.task_id) == live.task_id,
                    col(ModelSnapshot.id) < live.snapshot_id,
                )
            )
        log.info("task %s: model rebuilt without erased cases (%d labels)", task.name, live.version)
        return True

    def align_settings(self, live: LiveModel, task: Task, *, record: bool = False) -> bool:
        """Bring the governor in line with the task's settings; True when that moved its
        mode or threshold.

        Every process aligns its own governor: the process that takes a settings change
        (``record=True``: its migrations are recorded by that request, on whichever
        process), the leader and the followers at each poll, and a model as it loads (its
        snapshot may predate the change). The governors of all processes are one fold of
        one log, so they move alike. A task row older than the settings applied (a lower
        ``settings_version``) is ignored: the poll may have read it just before a change
        committed.
        """
        with live.lock:
            if task.settings_version < live.settings_version:
                return False
            live.settings_version = task.settings_version
            governor = live.governor
            governor.min_labels = task.min_labels
            if (governor.target_error, governor.delta) == (task.target_error, task.delta):
                return False
            moved = governor.set_target(task.target_error, task.delta)
            if not moved:
                return False
            if record:
                live.migrations += [(None, m) for m in moved]
            live.mode_reason = moved[-1].reason
            return True

    def _add_snapshot(
        self,
        session: Session,
        live: LiveModel,
        blob: bytes,
        version: int,
        last_label_id: int,
        kept: bool,
    ) -> ModelSnapshot:
        snap = ModelSnapshot(
            task_id=live.task_id,
            version=version,
            last_label_id=last_label_id,
            family=live.model.family,
            blob=blob,
            signature=sign(blob, self.secret),
            created_at=time.time(),
            kept=kept,
            skipped_labels=live.skipped,
        )
        session.add(snap)
        session.flush()
        return snap

    def snapshot_all(self) -> None:
        """Snapshot every model with unsaved labels (at shutdown; the leader only)."""
        if not self.leader:
            return
        for live in list(self._models.values()):
            if live.version != live.last_snapshot_version:
                self.save_snapshot(live)
