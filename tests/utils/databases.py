"""Test databases on either backend: SQLite files, or PostgreSQL databases of our own.

The suite runs on SQLite by default; ``pytest --backend postgresql`` (or
``TIERLINE_TEST_BACKEND=postgresql``) runs it on PostgreSQL (``TIERLINE_TEST_PG_URL``,
default ``postgresql+psycopg://postgres@127.0.0.1:5432/postgres``). A PostgreSQL run
creates uniquely named databases and drops them at the end: one migrated database that
tests share, emptied before each test (TRUNCATE, and any connection a previous test
left behind is ended), plus a fresh database for each test that asks for one.
"""

from __future__ import annotations

import os
import secrets
import shutil
import sqlite3
import subprocess
import time
from pathlib import Path

from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.pool import NullPool

DEFAULT_PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
BACKENDS = ("sqlite", "postgresql")


def pg_admin_url() -> str:
    return os.environ.get("TIERLINE_TEST_PG_URL", DEFAULT_PG_URL)


def pg_available(url: str | None = None, timeout: float = 2) -> bool:
    engine = create_engine(
        url or pg_admin_url(), poolclass=NullPool, connect_args={"connect_timeout": timeout}
    )
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        return True
    except Exception:
        return False
    finally:
        engine.dispose()


# --- the local cluster (make test starts it; the outage test stops and restarts it) -------
def _cluster_version() -> str:
    versions = sorted(os.listdir("/etc/postgresql"), key=lambda v: [int(p) for p in v.split(".")])
    return versions[-1]


def pg_cluster_running() -> bool:
    return subprocess.run(["pg_isready", "-q", "-h", "127.0.0.1", "-p", "5432"]).returncode == 0


def stop_pg_cluster(guard_seconds: float = 45) -> None:
    """Stop the local cluster (fast mode: clients are disconnected at once).

    A detached watchdog starts it again after ``guard_seconds`` if nobody has, so the
    server is never left stopped, even when the test process dies mid-outage.
    """
    version = _cluster_version()
    start = f"pg_ctlcluster --skip-systemctl-redirect {version} main start"
    subprocess.Popen(
        ["sh", "-c", f"sleep {guard_seconds}; pg_isready -q -h 127.0.0.1 || {start}"],
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    subprocess.run(
        ["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", "stop", "-m", "fast"],
        check=True,
    )


def start_pg_cluster(timeout: float = 60) -> None:
    """Start the local cluster unless it runs, and wait until it accepts connections."""
    if not pg_cluster_running():
        version = _cluster_version()
        subprocess.run(
            ["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", "start"], check=False
        )
    deadline = time.monotonic() + timeout
    while not pg_cluster_running():
        if time.monotonic() > deadline:
            raise RuntimeError("PostgreSQL did not come back")
        time.sleep(0.2)


class TestDatabases:
    """Hands out database URLs for one test session and cleans up after it."""

    __test__ = False  # not a test class

    def __init__(
        self,
        backend: str,
        base_dir: Path,
        *,
        prefix: str = "tierline_test",
        fast_commits: bool = True,
    ) -> None:
        if backend not in BACKENDS:
            raise ValueError(f"unknown backend {backend!r}; expected one of {BACKENDS}")
        self.backend = backend
        self.base_dir = base_dir
        self.prefix = f"{prefix}_{os.getpid()}_{secrets.token_hex(3)}"
        self.fast_commits = fast_commits
        self.created: list[str] = []
        self._shared: str | None = None
        self._shared_engine: Engine | None = None
        self._admin: Engine | None = None
        self._count = 0

    @property
    def is_postgres(self) -> bool:
        return self.backend == "postgresql"

    # --- PostgreSQL housekeeping -------------------------------------------------------
    def admin(self) -> Engine:
        if self._admin is None:
            self._admin = create_engine(
                pg_admin_url(), poolclass=NullPool, isolation_level="AUTOCOMMIT"
            )
        return self._admin

    def _create(self, name: str) -> str:
        if not self.created:
            self.drop_stale()
        with self.admin().connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
            if self.fast_commits:
                # test data need not survive a crash of the database server itself (the
                # API processes' crashes are what the tests inflict): no WAL flush a commit
                conn.execute(text(f'ALTER DATABASE "{name}" SET synchronous_commit = off'))
        self.created.append(name)
        return make_url(pg_admin_url()).set(database=name).render_as_string(hide_password=False)

    def drop_stale(self) -> None:
        """Drop databases left by runs of ours whose process is gone (killed runs)."""
        base = self.prefix.rsplit("_", 2)[0]
        with self.admin().connect() as conn:
            names = conn.execute(
                text("SELECT datname FROM pg_database WHERE datname LIKE :p"), {"p": f"{base}_%"}
            ).scalars()
            for name in list(names):
                pid = name[len(base) + 1 :].split("_", 1)[0]
                if pid.isdigit() and not Path(f"/proc/{pid}").exists():
                    conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))

    def drop_all(self) -> None:
        if self._shared_engine is not None:
            self._shared_engine.dispose()
        for name in self.created:
            try:
                with self.admin().connect() as conn:
                    conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            except Exception as exc:  # the server may be down: say so, do not hide it
                print(f"could not drop test database {name}: {exc}")
        self.created.clear()
        if self._admin is not None:
            self._admin.dispose()

    # --- URLs ---------------------------------------------------------------------------
    def fresh(self, directory: Path | None = None) -> str:
        """A database of its own (empty; the app migrates it at start)."""
        self._count += 1
        if not self.is_postgres:
            directory = directory or self.base_dir
            return f"sqlite:///{directory / f'tierline-{self._count}.db'}"
        return self._create(f"{self.prefix}_{self._count}")

    def shared(self, directory: Path) -> str:
        """A migrated, empty database for one test (SQLite: a copy of a template file
        migrated once a session, in ``directory``: migrating each test's file took ~0.4 s)."""
        if not self.is_postgres:
            path = directory / "tierline.db"
            shutil.copyfile(self._sqlite_template(), path)
            return f"sqlite:///{path}"
        if self._shared is None:
            from api import migrate

            self._shared = self._create(f"{self.prefix}_shared")
            migrate.upgrade(self._shared)
            self._shared_engine = create_engine(self._shared, poolclass=NullPool)
        self._empty(self._shared_engine)  # type: ignore[arg-type]
        return self._shared

    def _sqlite_template(self) -> Path:
        """A migrated, empty SQLite file, its WAL folded in, so one file copy is a database."""
        template = self.base_dir / "template.db"
        if not template.exists():
            from api import migrate

            migrate.upgrade(f"sqlite:///{template}")
            with sqlite3.connect(template) as conn:
                conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return template

    def _empty(self, engine: Engine) -> None:
        """End connections left by earlier tests, then empty every table but Alembic's.

        DELETE (with foreign-key triggers off for this session) rather than TRUNCATE:
        TRUNCATE syncs new files to disk for every table, hundreds of milliseconds a test.
        Sequences restart, so ids are what they would be in a new database.
        """
        for attempt in range(3):
            try:
                with engine.connect() as conn:
                    conn.execute(
                        text(
                            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
                        )
                    )
                    tables = conn.execute(
                        text(
                            "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
                            " AND tablename <> 'alembic_version'"
                        )
                    ).scalars()
                    conn.execute(text("SET lock_timeout = '5s'"))
                    conn.execute(text("SET session_replication_role = replica"))
                    for table in tables:
                        conn.execute(text(f'DELETE FROM "{table}"'))
                    conn.execute(
                        text(
                            "SELECT setval(c.oid, 1, false) FROM pg_class c"
                            " JOIN pg_namespace n ON n.oid = c.relnamespace"
                            " WHERE c.relkind = 'S' AND n.nspname = 'public'"
                        )
                    )
                    conn.commit()
                return
            except Exception:
                if attempt == 2:
                    raise
                time.sleep(0.5)
