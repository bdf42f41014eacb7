"""Alembic, driven from code: ``tierline db upgrade`` and server start-up call this."""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import create_engine, pool, text

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
log = logging.getLogger(__name__)


def alembic_config(database_url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    return config


def upgrade(database_url: str, revision: str = "head") -> None:
    """Create or upgrade the schema of ``database_url`` to ``revision``.

    On PostgreSQL the upgrade runs under an advisory lock, so the API processes of a
    deployment (``tierline serve --workers N``) may all start at once: one migrates,
    the others wait for it and then find nothing to do.
    """
    if database_url.startswith("sqlite:///"):
        path = Path(database_url.removeprefix("sqlite:///"))
        path.parent.mkdir(parents=True, exist_ok=True)
        with sqlite3.connect(path) as conn:  # WAL is a property of the file: set it once here
            conn.execute("PRAGMA journal_mode=WAL")
    config = alembic_config(database_url)
    if database_url.startswith("postgresql"):
        from api.db import LOCK_NAMESPACE, MIGRATION_LOCK_ID

        engine = create_engine(database_url, poolclass=pool.NullPool)
        try:
            with engine.connect() as conn:
                key = {"ns": LOCK_NAMESPACE, "id": MIGRATION_LOCK_ID}
                conn.execute(
                    text("SELECT pg_advisory_lock(CAST(:ns AS int), CAST(:id AS int))"), key
                )
                conn.commit()
                try:
                    config.attributes["connection"] = conn
                    command.upgrade(config, revision)
                    conn.commit()
                finally:
                    conn.execute(
                        text("SELECT pg_advisory_unlock(CAST(:ns AS int), CAST(:id AS int))"), key
                    )
                    conn.commit()
        finally:
            engine.dispose()
    else:
        command.upgrade(config, revision)
    log.info("database at revision %s", revision)
