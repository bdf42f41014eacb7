"""The live models: one per task, a fold of the label log in log order.

:class:`ModelStore` is the single owner of the models in a process. A model is
loaded from the newest snapshot whose signature checks out, then caught up by
replaying the labels logged after it. Labels are applied strictly in log order
(``catch_up``), so a restart, a replay and the live process all end in the same
model.
"""

from __future__ import annotations

import logging
import pickle
import threading
import time
from dataclasses import dataclass, field

from sqlmodel import Session, col, select

from api.cache import TTLCache
from api.db import Database
from api.errors import NotFound
from api.security import sign, verify
from api.tables import Case, Label, ModelSnapshot, Task
from learner import TaskModel, parse_schema
from learner.controller import Evidence, Migration, TaskGovernor

log = logging.getLogger(__name__)
REPLAY_CHUNK = 1000
TASK_TTL_SECONDS = 1.0  # task settings seen by the routing hot path may lag this much


@dataclass
class LiveModel:
    """A task's model and governor, the last label id folded into them, and their lock.

    ``migrations`` holds the governor's mode and threshold changes not yet written to
    the task's history.
    """

    task_id: int
    model: TaskModel
    governor: TaskGovernor
    last_label_id: int = 0
    last_snapshot_version: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)
    migrations: list[Migration] = field(default_factory=list)
    mode_reason: str | None = None  # why the governor is in its mode (its last migration)

    def fold(self, label_id: int, row: Label, features: dict) -> None:
        """Teach one logged label to the model and its evidence to the governor."""
        self.model.learn_one(features, row.label)
        if row.suggestion is not None:
            correct = row.label == row.suggestion
            if row.kind == "correction":
                moved = self.governor.correct(row.case_id, correct)
            else:
                evidence = Evidence(row.confidence, correct, row.propensity, row.audit, row.route)
                moved = self.governor.observe(row.case_id, evidence)
            if moved:
                self.migrations += moved
                self.mode_reason = moved[-1].reason
        self.last_label_id = label_id

    def take_migrations(self) -> list[Migration]:
        with self.lock:
            taken, self.migrations = self.migrations, []
        return taken

    @property
    def version(self) -> int:
        return self.model.n_learned


class ModelStore:
    """Owns every live model of this process."""

    def __init__(self, db: Database, secret: bytes, *, snapshot_every: int = 200) -> None:
        self.db = db
        self.secret = secret
        self.snapshot_every = snapshot_every
        self._models: dict[int, LiveModel] = {}
        self._lock = threading.Lock()
        self.tasks: TTLCache[str, Task] = TTLCache(TASK_TTL_SECONDS, self._read_task)

    def _read_task(self, name: str) -> Task:
        with self.db.read() as session:
            task = session.exec(select(Task).where(Task.name == name)).first()
        if task is None:
            raise NotFound(f"task {name!r} not found")
        return task

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

    def load_all(self) -> None:
        """Load every task's model (at start-up, so the first request is not slow)."""
        with self.db.read() as session:
            tasks = session.exec(select(Task)).all()
        for task in tasks:
            self.get(task)

    def forget(self, task_id: int) -> None:
        self._models.pop(task_id, None)

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
        replayed = self.catch_up(live)
        live.migrations.clear()  # history was recorded when they first happened
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
                .order_by(col(ModelSnapshot.last_label_id).desc())
                .limit(5)
            ).all()
        for snap in snapshots:
            if not verify(snap.blob, snap.signature, self.secret):
                log.warning(
                    "task %s: snapshot %d has a bad signature; not loading it", task.name, snap.id
                )
                continue
            state = pickle.loads(snap.blob)  # signed by us: safe to unpickle
            model = TaskModel.from_bytes(state["model"])
            return LiveModel(
                task.id,  # type: ignore[arg-type]
                model,
                state["governor"],
                last_label_id=snap.last_label_id,
                last_snapshot_version=model.n_learned,
            )
        return None

    # --- learning ---------------------------------------------------------------------
    def catch_up(self, live: LiveModel) -> int:
        """Apply every logged label after ``live.last_label_id``, in log order."""
        applied = 0
        with live.lock:
            while True:
                with self.db.read() as session:
                    rows = session.exec(
                        select(Label, Case.features)
                        .join(Case, col(Case.id) == Label.case_id)
                        .where(Label.task_id == live.task_id, col(Label.id) > live.last_label_id)
                        .order_by(col(Label.id))
                        .limit(REPLAY_CHUNK)
                    ).all()
                for row, features in rows:
                    live.fold(row.id, row, features)
                applied += len(rows)
                if len(rows) < REPLAY_CHUNK:
                    break
        if applied and live.version - live.last_snapshot_version >= self.snapshot_every:
            self.save_snapshot(live)
        return applied

    def apply(self, live: LiveModel, entry: Label, features: dict) -> None:
        """Apply a just-committed label; falls back to :meth:`catch_up` if any came before it."""
        label_id = entry.id
        assert label_id is not None
        with live.lock:
            if label_id == live.last_label_id + 1 or self._is_next(live, label_id):
                live.fold(label_id, entry, features)
                due = live.version - live.last_snapshot_version >= self.snapshot_every
            else:
                due = False
        if label_id > live.last_label_id:
            self.catch_up(live)
        elif due:
            self.save_snapshot(live)

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

    def save_snapshot(self, live: LiveModel) -> None:
        """Persist a signed snapshot of the model as it stands."""
        with live.lock:
            blob = pickle.dumps(
                {"model": live.model.to_bytes(), "governor": live.governor},
                protocol=pickle.HIGHEST_PROTOCOL,
            )
            version, last_label_id = live.version, live.last_label_id
        with self.db.write() as session:
            self._add_snapshot(session, live, blob, version, last_label_id)
        live.last_snapshot_version = version

    def _add_snapshot(
        self, session: Session, live: LiveModel, blob: bytes, version: int, last_label_id: int
    ) -> None:
        session.add(
            ModelSnapshot(
                task_id=live.task_id,
                version=version,
                last_label_id=last_label_id,
                family=live.model.family,
                blob=blob,
                signature=sign(blob, self.secret),
                created_at=time.time(),
            )
        )

    def snapshot_all(self) -> None:
        """Snapshot every model with unsaved labels (at shutdown)."""
        for live in list(self._models.values()):
            if live.version != live.last_snapshot_version:
                self.save_snapshot(live)
