"""Database engines and sessions.

SQLite (the embedded default) runs in WAL mode with ``synchronous=FULL`` (durable
commits) and a busy timeout. Reads use
deferred transactions and never block; writes go through :meth:`Database.write`,
which serialises writers inside the process with a lock and opens the
transaction with ``BEGIN IMMEDIATE``, so a writer never fails half-way on a
lock upgrade. SQLite serves one API process.

PostgreSQL serves any number of API processes. One engine does reads and writes
(READ COMMITTED); every connection has a connect timeout, a statement timeout, a
lock timeout and TCP keepalives, so a database outage turns into quick errors
(answered ``503``) rather than hung requests, and the pool checks connections
before use, so the service recovers by itself when the database is back.

Two PostgreSQL advisory locks keep the model lineage single:

- :func:`lock_label_log` (a transaction lock per task, taken before a label row is
  inserted) makes label ids of a task commit in id order, so whoever reads the log
  sees a gap-free prefix of it and never skips a label that commits late;
- :class:`LeaderLock` (a session lock on a dedicated connection) elects the one
  process that applies labels and publishes snapshots; PostgreSQL releases it when
  that process dies or loses its connection, and another process takes over.
"""

from __future__ import annotations

import fcntl
import functools
import json
import logging
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, nullcontext
from typing import Any

import orjson
from sqlalchemy import JSON, Insert, Table, event, text
from sqlalchemy.dialects.sqlite import dialect as sqlite_dialect
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.pool import NullPool
from sqlmodel import Session, create_engine

from api.groupcommit import GroupCommit
from api.tables import Label

LABEL_TABLE = Label.__tablename__

log = logging.getLogger(__name__)

# advisory lock keys: (namespace, id); the namespace spells "tl" so other apps sharing
# the database are unlikely to collide
BACKSTOP_CHECKPOINT_PAGES = 20_000  # ~80 MB: commits checkpoint only if the thread lags
LOCK_NAMESPACE = 0x746C
PROGRESS_LOCK_NAMESPACE = 0x7470  # apart from the label log's, the leader's and the audit's
LEADER_LOCK_ID = -1  # (namespace, -1): the model leader; (namespace, task id): a task's label log
MIGRATION_LOCK_ID = -2


def safe_url(url: str) -> str:
    """The database URL without its password, for logs and messages.

    >>> safe_url("postgresql+psycopg://app:s3cret@db:5432/tierline")
    'postgresql+psycopg:***@db:5432/tierline'
    """
    head, sep, tail = url.rpartition("@")
    return f"{head.split(':')[0]}:***{sep}{tail}" if sep else url


def json_dumps(value: Any) -> str:
    """JSON columns' serializer: orjson (several times faster than ``json`` on the case
    path's features, probabilities and reasons), ``json`` for what orjson refuses
    (integers beyond 64 bits).

    >>> json_dumps({"p": 0.25, "reasons": ["a"], "n": 2**70})
    '{"p": 0.25, "reasons": ["a"], "n": 1180591620717411303424}'
    >>> json_dumps({"p": 0.25})
    '{"p":0.25}'
    """
    try:
        return orjson.dumps(value).decode()
    except TypeError:
        return json.dumps(value)


def json_loads(text: str | bytes) -> Any:
    """JSON columns' deserializer: orjson, ``json`` for what it refuses (``NaN``).

    >>> json_loads('{"p": NaN}')
    {'p': nan}
    """
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return json.loads(text)


def insert_rows(session: Session, table: Table, rows: Sequence[dict]) -> None:
    """Insert ``rows`` (dicts with the same keys, column names) into ``table``.

    On SQLite the rows go to the driver's ``executemany`` as tuples, with JSON columns
    serialised by :func:`json_dumps` as the engine would: SQLAlchemy's per-row bind
    processing costs more than SQLite's insert (~30 us against ~15 us a row of a case
    batch). Elsewhere (PostgreSQL) through SQLAlchemy Core's many-row insert. Driver
    errors arrive as SQLAlchemy's exceptions (``IntegrityError``) either way.
    """
    if not rows:
        return
    connection = session.connection()
    if connection.dialect.name != "sqlite":
        session.execute(table.insert(), list(rows))
        return
    columns = tuple(rows[0])
    sql, json_at = _sqlite_insert(table, columns)
    params = []
    for row in rows:
        values = [row[name] for name in columns]
        for i, none_as_null in json_at:
            value = values[i]
            values[i] = None if value is None and none_as_null else json_dumps(value)
        params.append(tuple(values))
    connection.exec_driver_sql(sql, params)


@functools.lru_cache(maxsize=64)
def _sqlite_insert(table: Table, columns: tuple[str, ...]) -> tuple[str, list[tuple[int, bool]]]:
    """The INSERT for ``columns`` of ``table`` and where its JSON columns are."""
    quote = sqlite_dialect().identifier_preparer.quote
    names = ", ".join(quote(name) for name in columns)
    marks = ", ".join("?" * len(columns))
    sql = f"INSERT INTO {quote(table.name)} ({names}) VALUES ({marks})"
    types = [table.c[name].type for name in columns]
    json_at = [(i, bool(t.none_as_null)) for i, t in enumerate(types) if isinstance(t, JSON)]
    return sql, json_at


def _sqlite_engine(url: str, busy_timeout_ms: int, begin: str) -> Engine:
    engine = create_engine(
        url,
        connect_args={"check_same_thread": False, "timeout": busy_timeout_ms / 1000},
        pool_size=20,
        max_overflow=20,
        json_serializer=json_dumps,
        json_deserializer=json_loads,
    )

    @event.listens_for(engine, "connect")
    def _configure(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # we emit BEGIN ourselves
        cursor = dbapi_conn.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
        # FULL: a commit returns once its WAL frames are synced, so an acknowledged case or
        # label survives a power cut (NORMAL may lose the last commits); group commit
        # (api.groupcommit) shares that sync among concurrent requests
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute("PRAGMA foreign_keys=ON")
        # the WalCheckpointer thread checkpoints; a commit does it itself only as a backstop
        cursor.execute(f"PRAGMA wal_autocheckpoint={BACKSTOP_CHECKPOINT_PAGES}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(conn: Any) -> None:
        conn.exec_driver_sql(begin)

    return engine


def postgres_connect_args(
    *, connect_timeout_s: float, statement_timeout_ms: int, lock_timeout_ms: int
) -> dict[str, Any]:
    """psycopg connection arguments: fail fast while the database is away."""
    options = (
        f"-c statement_timeout={int(statement_timeout_ms)}"
        f" -c lock_timeout={int(lock_timeout_ms)}"
        " -c idle_in_transaction_session_timeout=60000"
    )
    return {
        "connect_timeout": max(1, round(connect_timeout_s)),
        "options": options,
        "keepalives": 1,
        "keepalives_idle": 5,
        "keepalives_interval": 2,
        "keepalives_count": 3,
        "application_name": "tierline",
    }


class Database:
    """Owns the engines; hands out read and write sessions."""

    def __init__(
        self,
        url: str,
        *,
        busy_timeout_ms: int = 10_000,
        connect_timeout_s: float = 2.0,
        statement_timeout_ms: int = 5_000,
        lock_timeout_ms: int = 4_000,
        pool_timeout_s: float = 2.0,
        pool_size: int = 10,
    ) -> None:
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        self.is_postgres = url.startswith("postgresql")
        self.connect_args: dict[str, Any] = {}
        if self.is_sqlite:
            self.engine = _sqlite_engine(url, busy_timeout_ms, "BEGIN")
            self.write_engine = _sqlite_engine(url, busy_timeout_ms, "BEGIN IMMEDIATE")
            self._write_lock: threading.Lock | None = threading.Lock()
            path = self.write_engine.url.database
            self._checkpointer = WalCheckpointer(path) if path and path != ":memory:" else None
        else:
            self.connect_args = (
                postgres_connect_args(
                    connect_timeout_s=connect_timeout_s,
                    statement_timeout_ms=statement_timeout_ms,
                    lock_timeout_ms=lock_timeout_ms,
                )
                if self.is_postgres
                else {}
            )
            self.engine = create_engine(
                url,
                connect_args=self.connect_args,
                pool_size=pool_size,
                max_overflow=pool_size,
                pool_timeout=pool_timeout_s,
                pool_pre_ping=True,
                json_serializer=json_dumps,
                json_deserializer=json_loads,
            )
            self.write_engine = self.engine
            self._write_lock = None
            if self.is_postgres:
                event.listen(self.engine, "before_execute", _lock_before_label_insert)
        self.group = GroupCommit(self)  # concurrent case writes: one transaction, one commit

    @property
    def shares_models(self) -> bool:
        """True when several processes may serve this database (PostgreSQL)."""
        return self.is_postgres

    @contextmanager
    def read(self) -> Iterator[Session]:
        """A session for reads (and nothing else)."""
        with Session(self.engine, expire_on_commit=False) as session:
            yield session

    @contextmanager
    def write(self, *, durable: bool = True) -> Iterator[Session]:
        """A session whose transaction commits on success and rolls back on error.

        ``durable=False`` is for ephemeral state only (see :meth:`commit_without_flush`):
        on SQLite the commit then skips its disk sync (``synchronous=NORMAL`` for this
        transaction: the frames reach the disk with the next durable commit or
        checkpoint; a power cut may forget them, an application crash does not).
        """
        if self.is_sqlite and self._checkpointer is not None:
            self._checkpointer.ensure_started()
        with self._write_lock or nullcontext():
            if durable or not self.is_sqlite:
                with Session(self.write_engine, expire_on_commit=False) as session:
                    yield from _commit_or_roll_back(session)
                return
            with self.write_engine.connect() as connection:
                raw = connection.connection.driver_connection  # before BEGIN: no SQL yet
                raw.execute("PRAGMA synchronous=NORMAL")  # type: ignore[union-attr]
                try:
                    with Session(bind=connection, expire_on_commit=False) as session:
                        yield from _commit_or_roll_back(session)
                finally:
                    raw.execute("PRAGMA synchronous=FULL")  # type: ignore[union-attr]

    def commit_without_flush(self, session: Session) -> None:
        """Let this transaction commit without waiting for its WAL flush (PostgreSQL).

        For ephemeral state only (a review lease): a crash of the database server itself
        may forget the last few hundred milliseconds of such commits, never corrupts
        anything, and a forgotten lease only puts the case back in the queue (the holder's
        label then gets 409). Labels and cases always wait for the flush. It saves a disk
        flush, several milliseconds, per claim. SQLite: open the transaction with
        ``write(durable=False)`` instead (its sync level cannot change inside one).
        """
        if self.is_postgres:
            session.execute(text("SET LOCAL synchronous_commit = off"))

    def leader_lock(self) -> LeaderLock | FileLock:
        """The election of the model leader among the processes sharing this database; on
        an SQLite file, a lock on a file beside it (held by the one serving process, so
        that ``tierline model rollback`` can tell it is running)."""
        if self.is_sqlite:
            return FileLock(self.url.split("///", 1)[-1] + ".leader")
        return LeaderLock(self.url, self.connect_args)

    def dispose(self) -> None:
        self.group.stop()
        if self.is_sqlite and self._checkpointer is not None:
            self._checkpointer.stop()
        self.engine.dispose()
        if self.write_engine is not self.engine:
            self.write_engine.dispose()


class WalCheckpointer:
    """Checkpoints a SQLite WAL from a thread of its own, off the request path.

    By default the commit that takes the WAL past 1,000 pages copies it into the
    database (and syncs it) before it returns: a request now and then pays tens of
    milliseconds. Here a background thread runs a ``PASSIVE`` checkpoint (never waits
    for readers or writers) every ``interval`` seconds; commits checkpoint only when the
    WAL grows past a backstop far above what the thread leaves behind.
    """

    def __init__(self, path: str, interval: float = 0.25) -> None:
        self.path = path
        self.interval = interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def ensure_started(self) -> None:
        if self._thread is None:
            with self._lock:  # started on first write: after any fork of the process
                if self._thread is None and not self._stop.is_set():
                    self._thread = threading.Thread(
                        target=self._run, name="tierline-wal-checkpoint", daemon=True
                    )
                    self._thread.start()

    def _run(self) -> None:
        import sqlite3

        connection = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        try:
            connection.execute("PRAGMA busy_timeout=0")
            while not self._stop.wait(self.interval):
                try:
                    connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                except sqlite3.Error as exc:  # busy, or the file is going away: next round
                    log.debug("WAL checkpoint skipped: %s", exc)
        finally:
            connection.close()

    def stop(self) -> None:
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(5)


def _commit_or_roll_back(session: Session) -> Iterator[Session]:
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise


class FileLock:
    """An exclusive ``flock`` on a file, the SQLite counterpart of :class:`LeaderLock`:
    the kernel frees it when the holder's process ends, however it ends.

    >>> import tempfile, pathlib
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "t.db.leader"
    >>> one, two = FileLock(str(path)), FileLock(str(path))
    >>> one.try_acquire(), two.try_acquire()
    (True, False)
    >>> one.release(); two.try_acquire()
    True
    >>> two.dispose()
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self._file: Any = None

    def try_acquire(self) -> bool:
        if self._file is not None:
            return True
        if self.path.startswith(":memory:") or not self.path:
            return True  # nobody else can open an in-memory database
        handle = open(self.path, "a")  # noqa: SIM115 - held open while the lock is
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.close()
            return False
        self._file = handle
        return True

    def held(self) -> bool:
        return self._file is not None

    def release(self) -> None:
        handle, self._file = self._file, None
        if handle is not None:
            handle.close()  # closing the file frees the lock

    def dispose(self) -> None:
        self.release()


class LeaderLock:
    """A PostgreSQL session advisory lock held on a connection of its own.

    :meth:`try_acquire` takes it without waiting; :meth:`held` says whether the
    connection (and so the lock) is still alive. PostgreSQL frees the lock the
    moment the holder's connection ends: a crash, ``kill -9``, a network cut or a
    database restart, so the next :meth:`try_acquire` elsewhere succeeds.
    """

    def __init__(self, url: str, connect_args: dict[str, Any]) -> None:
        self.engine = create_engine(url, connect_args=connect_args, poolclass=NullPool)
        self._conn: Connection | None = None

    def try_acquire(self) -> bool:
        if self._conn is not None:
            return self.held()
        conn = self.engine.connect()
        try:
            got = conn.execute(
                text("SELECT pg_try_advisory_lock(CAST(:ns AS int), CAST(:id AS int))"),
                {"ns": LOCK_NAMESPACE, "id": LEADER_LOCK_ID},
            ).scalar_one()
            conn.commit()
        except BaseException:
            conn.close()
            raise
        if not got:
            conn.close()
            return False
        self._conn = conn
        return True

    def held(self) -> bool:
        """True while our lock connection answers (and so still holds the lock)."""
        if self._conn is None:
            return False
        try:
            self._conn.execute(text("SELECT 1")).scalar_one()
            self._conn.commit()
        except Exception:
            log.warning("lost the leader lock's connection; leadership released")
            self._drop()
            return False
        return True

    def release(self) -> None:
        if self._conn is not None:
            try:
                self._conn.execute(
                    text("SELECT pg_advisory_unlock(CAST(:ns AS int), CAST(:id AS int))"),
                    {"ns": LOCK_NAMESPACE, "id": LEADER_LOCK_ID},
                )
                self._conn.commit()
            except Exception:  # the connection is gone, and with it the lock
                pass
        self._drop()

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.invalidate()
                conn.close()
            except Exception:
                pass

    def dispose(self) -> None:
        self.release()
        self.engine.dispose()


def lock_label_log(connection: Connection, task_id: int) -> None:
    """Serialise appends to a task's label log until the transaction ends (PostgreSQL).

    Taken before the label's id is drawn from the sequence and held until commit, so
    label ids of one task become visible in id order: a reader of the log never sees
    id ``n + 1`` while id ``n`` is still to commit. SQLite needs nothing: its writers
    are serialised already.
    """
    advisory_xact_lock(connection, LOCK_NAMESPACE, task_id)


def lock_task_progress(connection: Connection, task_id: int) -> None:
    """Serialise recording a task's progress (its mode changes and curve points) until
    the transaction ends (PostgreSQL; SQLite's writers are serialised already).

    Its own lock rather than the task row's: label transactions update the row's counters
    and must not queue behind a progress record (nor it behind them).
    """
    advisory_xact_lock(connection, PROGRESS_LOCK_NAMESPACE, task_id)


def advisory_xact_lock(connection: Connection, namespace: int, key: int) -> None:
    """Wait for the (``namespace``, ``key``) lock, held until the transaction ends
    (PostgreSQL only: SQLite's writers are serialised already)."""
    if connection.dialect.name == "postgresql":
        connection.execute(
            text("SELECT pg_advisory_xact_lock(CAST(:ns AS integer), CAST(:id AS integer))"),
            {"ns": namespace, "id": key},
        )


def _lock_before_label_insert(
    conn: Connection, clause: Any, multiparams: Any, params: Any, _options: Any
) -> None:
    """Every INSERT into the label log, however it is issued (ORM flush, bulk insert),
    first takes the log lock of each task it appends to."""
    if not isinstance(clause, Insert) or getattr(clause.table, "name", None) != LABEL_TABLE:
        return
    rows = [*(multiparams or ()), params]
    task_ids: set[int] = set()
    for row in rows:
        for item in row if isinstance(row, list | tuple) else [row]:
            if isinstance(item, dict) and item.get("task_id") is not None:
                task_ids.add(int(item["task_id"]))
    values = getattr(clause, "_values", None) or {}
    for column, value in values.items():
        if getattr(column, "key", column) == "task_id" and isinstance(
            getattr(value, "value", None), int
        ):
            task_ids.add(value.value)
    if not task_ids:
        raise RuntimeError("an insert into the label log must name its task_id")
    for task_id in sorted(task_ids):  # a fixed order: no deadlock between multi-task inserts
        lock_label_log(conn, task_id)
