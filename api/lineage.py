"""One model lineage across API processes (PostgreSQL).

Several API processes share one PostgreSQL database; each holds its own copy of
the live models (:class:`api.live.ModelStore`). :class:`ModelSync` keeps these
copies on one lineage:

- **Election.** Every process tries for the leader lock, a PostgreSQL session
  advisory lock held on a dedicated connection (:class:`api.db.LeaderLock`). The
  holder is the leader; the lock goes free the moment its process dies or loses
  its connection, and the next poll of another process takes it (within
  ``interval`` seconds).
- **The leader** applies labels in label-log order: those logged through its own
  API before the label call returns, those logged by other processes at its next
  poll (``catch_up``). Label ids of a task commit in id order (the label-log lock in
  :mod:`api.db`), so the log it reads is always a gap-free prefix and no label that
  commits late is skipped. It records the mode migrations and curve points the
  labels cause, aligns its governors with task settings changed on any process,
  and publishes a signed snapshot whenever a model moved.
- **Followers** do not apply the labels that arrive: each poll they look for a
  snapshot newer than their model and load it, so they serve the leader's model within
  about two polls, and align its governor with the task's settings as the leader
  does. (Like any process that starts, a follower loads the newest snapshot and
  replays the labels after it once, at start: the same fold, so the same model.)

On SQLite there is one process, always the leader, and no thread.

:func:`rollback_model` (``tierline model rollback``) makes an older kept snapshot the
head of a task's lineage while the API processes are stopped.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from sqlmodel import select

from api.db import Database, FileLock, LeaderLock
from api.live import LiveModel, ModelStore
from api.services.metrics import curve_due
from api.tables import Task
from learner import LearnerError

log = logging.getLogger(__name__)

Progress = Callable[[Database, str, LiveModel], None]


class ModelSync:
    """The background thread that keeps this process on the one model lineage."""

    def __init__(
        self,
        db: Database,
        store: ModelStore,
        record_progress: Progress,
        *,
        interval: float = 0.2,
    ) -> None:
        self.db = db
        self.store = store
        self.record_progress = record_progress
        self.interval = interval
        self.lock: LeaderLock | FileLock = db.leader_lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_error = 0.0
        self.became_leader_at: float | None = None

    @property
    def is_leader(self) -> bool:
        return self.store.leader

    def start(self) -> None:
        """Elect (at once, so a lone process is the leader when it reports ready), then poll."""
        self.store.leader = False
        self._elect()
        self._thread = threading.Thread(target=self._run, name="tierline-model-sync", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop polling; a leader gives the lock up (after the caller's last snapshot)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def release(self) -> None:
        self.store.leader = False
        self.lock.dispose()

    # --- the loop -------------------------------------------------------------------------
    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.step()
            except Exception as exc:  # the database may be away: keep polling
                self._warn(str(exc))

    def _warn(self, message: str) -> None:
        """Log a sync problem, at most once every 5 s (it recurs at every poll)."""
        now = time.monotonic()
        if now - self._last_error > 5:
            log.warning("model sync: %s", message)
            self._last_error = now

    def step(self) -> None:
        """One poll: keep or take leadership, then lead or follow."""
        if self._elect():
            self.lead()
        else:
            self.follow()

    def _elect(self) -> bool:
        was = self.store.leader
        try:
            leading = self.lock.held() if was else self.lock.try_acquire()
        except Exception:
            leading = False
        if leading != was:
            self.store.leader = leading
            if leading:
                self.became_leader_at = time.time()
                log.info("this process is now the model leader")
            else:
                log.warning("this process is no longer the model leader")
        return leading

    def _tasks(self) -> list[Task]:
        with self.db.read() as session:
            return list(session.exec(select(Task)).all())

    def lead(self) -> None:
        """Apply what other processes logged, record its effects, publish snapshots."""
        for task in self._tasks():
            if self._stop.is_set() or not self.store.leader:
                return
            try:
                self._lead_task(task)
            except LearnerError as exc:  # one task's stored settings: not every task's loop
                self._warn(f"task {task.name}: {exc} (PATCH valid settings)")

    def _lead_task(self, task: Task) -> None:
        live = self.store.get(task)
        if live is None:
            return
        moved = self.store.align_settings(live, task)
        # other processes' labels (a request records those it folds), a curve mark at a
        # time, so that each mark they pass gets its point
        while self.store.catch_up(live, pause=_at_a_new_mark(live.labelled)):
            self.record_progress(self.db, task.name, live)
        if self.store.forget_erased(live, task) or moved:  # an erasure taken elsewhere
            self.record_progress(self.db, task.name, live)
        self.store.publish(live)

    def follow(self) -> None:
        """Load each model's newest snapshot when it is newer than ours, and align its
        governor with settings changed since (a change moves no label, so it brings no
        snapshot a follower would load)."""
        newest = self.store.newest_snapshots()
        tasks = {task.id: task for task in self._tasks()}
        for live in self.store.loaded():
            if newest.get(live.task_id, 0) > live.snapshot_id:
                self.store.refresh(live)
            task = tasks.get(live.task_id)
            if task is not None:
                self.store.align_settings(live, task)


def _at_a_new_mark(start: int) -> Callable[[LiveModel], bool]:
    """True once a model's count of labelled cases moved past ``start`` to a curve mark."""
    return lambda live: live.labelled != start and curve_due(live.labelled)


class RollbackError(Exception):
    """A rollback that cannot be done (processes still running, no such version)."""


def rollback_model(db: Database, secret: bytes, task_name: str, version: int) -> str:
    """Make a kept snapshot at or below ``version`` the head of the task's model lineage.

    The snapshot's model and governor are copied into a new snapshot tagged with the
    newest label id in the log, so every process (at its next start) loads it and replays
    only labels logged after the rollback; the labels in between stay in the log (and in
    exports) but this lineage skips them. The task's mode and threshold follow the
    restored governor at once, with a history entry. Run it with the API processes
    stopped: it refuses while one of them holds the leader lock (on SQLite, the serving
    process's lock on the file beside the database).
    Returns a one-line summary.
    """
    from api.services import audit
    from api.services.models import keep_head, restore_snapshot
    from api.services.tasks import get_task

    lock = db.leader_lock()
    try:
        if not lock.try_acquire():
            raise RollbackError(
                "API processes are running on this database (one holds the leader lock): "
                "stop them, roll back, then start them again"
            )
        store = ModelStore(db, secret)
        with db.read() as session:
            head = store.get(get_task(session, task_name))
        if head is not None:
            keep_head(store, head)
        with db.write() as session:
            task = get_task(session, task_name)
            restored = restore_snapshot(
                session, store, task, version, exact=False, actor=audit.acting()
            )
            if restored is None:
                raise RollbackError(
                    f"task {task_name!r} has no signed snapshot at or below version {version}"
                )
            _, reason = restored
    finally:
        lock.dispose()
    return reason
