"""The Alembic migrations: they build the schema the table models declare, and the newest
ones go down and up again over stored data."""

from __future__ import annotations

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, pool, text
from sqlmodel import SQLModel

import api.tables  # noqa: F401  (registers the table models)
from api import migrate
from api.main import create_app
from api.settings import Settings
from tests.utils.factories import Api


def _differences(database_url: str) -> list:
    engine = create_engine(database_url, poolclass=pool.NullPool)
    try:
        with engine.connect() as conn:
            return compare_metadata(MigrationContext.configure(conn), SQLModel.metadata)
    finally:
        engine.dispose()


def test_the_migrations_build_what_the_table_models_declare(fresh_database_url):
    url = fresh_database_url()
    migrate.upgrade(url)
    assert _differences(url) == []


def test_the_newest_migrations_go_down_and_up_again_over_stored_data(
    fresh_database_url, settings: Settings
):
    url = fresh_database_url()
    with TestClient(create_app(settings.model_copy(update={"database_url": url}))) as client:
        api = Api(client)
        api.create_task(rules=[{"feature": "amount", "op": ">", "value": 10000}])
        cold = api.send("claims", {"amount": 5, "country": "fr", "note": "x", "vip": False})
        assert cold["threshold"] is None  # nothing automated yet
        api.teach("claims", 40)
        hook = {"url": "https://hooks.example/in"}
        assert client.put("/v1/tasks/claims/webhook", json=hook, headers=api.admin).is_success
    engine = create_engine(url, poolclass=pool.NullPool)
    try:
        with engine.connect() as conn:
            before = conn.execute(text("SELECT count(*) FROM label")).scalar_one()
            guarded = conn.execute(text("SELECT count(*) FROM label WHERE guarded")).scalar_one()
            assert 0 < guarded < before
        command.downgrade(migrate.alembic_config(url), "0006")
        with engine.connect() as conn:
            nulls = "SELECT count(*) FROM routing WHERE threshold IS NULL"
            assert conn.execute(text(nulls)).scalar_one() == 0  # 1.0 again, as before 0008
        migrate.upgrade(url)
        with engine.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM label")).scalar_one() == before
            guarded = conn.execute(text("SELECT count(*) FROM label WHERE guarded")).scalar_one()
            assert guarded == 0  # the column came back with its default (old rows: evidence)
            counted = "SELECT count(*) FROM label WHERE audit_weight IS NOT NULL"
            assert conn.execute(text(counted)).scalar_one() == 0  # back as 1 / propensity
            salts = conn.execute(text("SELECT secret_salt FROM task_webhook")).scalars().all()
            assert len(salts) == 1 and len(salts[0]) == 32  # a webhook made before has one too
    finally:
        engine.dispose()
