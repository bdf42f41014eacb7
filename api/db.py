"""Database engines and sessions.

SQLite (the embedded default) runs in WAL mode with a busy timeout. Reads use
deferred transactions and never block; writes go through :meth:`Database.write`,
which serialises writers inside the process with a lock and opens the
transaction with ``BEGIN IMMEDIATE``, so a writer never fails half-way on a
lock upgrade. PostgreSQL uses one engine for both.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlmodel import Session, create_engine


def _sqlite_engine(url: str, busy_timeout_ms: int, begin: str) -> Engine:
    engine = create_engine(
        url,
        connect_args={"check_same_thread": False, "timeout": busy_timeout_ms / 1000},
        pool_size=20,
        max_overflow=20,
    )

    @event.listens_for(engine, "connect")
    def _configure(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # we emit BEGIN ourselves
        cursor = dbapi_conn.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(conn: Any) -> None:
        conn.exec_driver_sql(begin)

    return engine


class Database:
    """Owns the engines; hands out read and write sessions."""

    def __init__(self, url: str, *, busy_timeout_ms: int = 10_000) -> None:
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        if self.is_sqlite:
            self.engine = _sqlite_engine(url, busy_timeout_ms, "BEGIN")
            self.write_engine = _sqlite_engine(url, busy_timeout_ms, "BEGIN IMMEDIATE")
            self._write_lock: threading.Lock | None = threading.Lock()
        else:
            self.engine = create_engine(url, pool_size=20, max_overflow=20, pool_pre_ping=True)
            self.write_engine = self.engine
            self._write_lock = None

    @contextmanager
    def read(self) -> Iterator[Session]:
        """A session for reads (and nothing else)."""
        with Session(self.engine, expire_on_commit=False) as session:
            yield session

    @contextmanager
    def write(self) -> Iterator[Session]:
        """A session whose transaction commits on success and rolls back on error."""
        with (
            self._write_lock or nullcontext(),
            Session(self.write_engine, expire_on_commit=False) as session,
        ):
            try:
                yield session
                session.commit()
            except BaseException:
                session.rollback()
                raise

    def dispose(self) -> None:
        self.engine.dispose()
        if self.write_engine is not self.engine:
            self.write_engine.dispose()
