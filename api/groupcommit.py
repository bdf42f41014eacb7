"""Group commit: the writes of concurrent requests share one transaction and one commit.

A durable commit waits for the disk (SQLite in WAL mode with ``synchronous=FULL``
syncs the log on every commit; PostgreSQL flushes its WAL). Under load, requests
that write at the same moment would each pay that wait in turn behind the write
lock. :class:`GroupCommit` has one writer thread take every write that is waiting,
run them in one transaction, commit once, and only then hand each write its
result: each request is still answered after its own write is durable, and N
concurrent writes cost one commit instead of N.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

from sqlmodel import Session

log = logging.getLogger(__name__)

Write = Callable[[Session], Any]


class GroupCommit:
    """One writer thread committing queued writes in groups.

    ``write(session)`` runs inside a transaction of ``db.write()`` (writes of a class
    with a static ``apply_many(session, writes)`` are applied together by it); its value
    (or exception) reaches the caller through the future of :meth:`submit` once the
    transaction has committed. A write that raises fails the whole group's
    transaction: it is rolled back and each write of the group then runs in a
    transaction of its own, so only the bad write fails and none is applied twice.

    >>> from sqlalchemy import text
    >>> from api.db import Database
    >>> import tempfile
    >>> db = Database(f"sqlite:///{tempfile.mkdtemp()}/doctest.db")
    >>> group = GroupCommit(db)
    >>> group.run(lambda session: session.execute(text("SELECT 41 + 1")).scalar_one())
    42
    >>> group.stop(); db.dispose()
    """

    def __init__(self, db: Any, max_group: int = 512) -> None:
        self.db = db
        self.max_group = max_group
        self._queue: queue.SimpleQueue[tuple[Write, Future] | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self.groups = 0  # commits made (for benchmarks and tests)
        self.writes = 0  # writes committed

    def submit(self, write: Write) -> Future:
        """Queue ``write``; the future resolves after the commit that includes it."""
        if self._thread is None:
            self._start()
        future: Future = Future()
        self._queue.put((write, future))
        return future

    def run(self, write: Write) -> Any:
        """Submit ``write`` and wait for its committed result (for synchronous callers)."""
        return self.submit(write).result()

    def stop(self, timeout: float = 10.0) -> None:
        """Commit what is queued, then end the writer thread."""
        thread = self._thread
        if thread is not None:
            self._queue.put(None)
            thread.join(timeout)
            self._thread = None

    def _start(self) -> None:
        with self._start_lock:  # started on first use: after any fork of the process
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._loop, name="tierline-group-commit", daemon=True
                )
                self._thread.start()

    def _loop(self) -> None:
        while True:
            item = self._queue.get()
            stop = item is None
            group = [] if item is None else [item]
            while len(group) < self.max_group:
                try:
                    nxt = self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    stop = True
                    break
                group.append(nxt)
            if group:
                self._commit(group)
            if stop:
                return

    def _commit(self, group: list[tuple[Write, Future]]) -> None:
        group = [(w, f) for w, f in group if f.set_running_or_notify_cancel()]
        if not group:
            return
        try:
            with self.db.write() as session:
                results = _apply(session, [write for write, _ in group])
        except BaseException as exc:  # noqa: BLE001 - handed to the callers
            if len(group) == 1:
                group[0][1].set_exception(exc)
                return
            for write, future in group:  # alone, so one bad write fails only itself
                try:
                    with self.db.write() as session:
                        result = write(session)
                except BaseException as one:  # noqa: BLE001
                    future.set_exception(one)
                else:
                    self.groups += 1
                    self.writes += 1
                    future.set_result(result)
            return
        self.groups += 1
        self.writes += len(group)
        for (_, future), result in zip(group, results, strict=True):
            future.set_result(result)


def _apply(session: Session, writes: list[Write]) -> list[Any]:
    """Run the writes in order; neighbours that share an ``apply_many(session, writes)``
    (a static method of their class) run as one call, e.g. one multi-row insert."""
    results: list[Any] = []
    i = 0
    while i < len(writes):
        many = getattr(writes[i], "apply_many", None)
        if many is None:
            results.append(writes[i](session))
            i += 1
            continue
        j = i + 1
        while j < len(writes) and getattr(writes[j], "apply_many", None) == many:
            j += 1
        results += many(session, writes[i:j])
        i = j
    return results
