import sqlite3

import pytest
from sqlalchemy import create_engine, inspect
from typer.testing import CliRunner

from api.cli import app
from api.db import Database
from api.services.keys import resolve_key
from api.settings import get_settings


@pytest.fixture
def database(database_url, monkeypatch):
    url = database_url
    monkeypatch.setenv("TIERLINE_DATABASE_URL", url)
    get_settings.cache_clear()
    yield url
    get_settings.cache_clear()


def test_db_upgrade_creates_the_schema_in_wal_mode(database):
    result = CliRunner().invoke(app, ["db", "upgrade"])
    assert result.exit_code == 0, result.output
    engine = create_engine(database)
    tables = set(inspect(engine).get_table_names())
    engine.dispose()
    assert {
        "api_key",
        "task",
        "case",
        "routing",
        "lease",
        "label",
        "model_snapshot",
        "alembic_version",
    } <= tables
    if database.startswith("sqlite"):
        path = database.removeprefix("sqlite:///")
        assert sqlite3.connect(path).execute("pragma journal_mode").fetchone()[0] == "wal"


def test_keys_create_prints_a_working_key(database):
    result = CliRunner().invoke(app, ["keys", "create", "--name", "ops", "--role", "analyst"])
    assert result.exit_code == 0, result.output
    key = result.output.strip().rsplit(" ", 1)[-1]
    with Database(database).read() as session:
        who = resolve_key(session, key, admin_key=None)
    assert who is not None and who.role == "analyst" and who.name == "ops"


def test_keys_create_rejects_unknown_role(database):
    result = CliRunner().invoke(app, ["keys", "create", "--name", "x", "--role", "root"])
    assert result.exit_code == 2


def test_serve_refuses_workers_on_sqlite(tmp_path, monkeypatch):
    monkeypatch.setenv("TIERLINE_DATABASE_URL", f"sqlite:///{tmp_path / 'one.db'}")
    monkeypatch.setenv("TIERLINE_ENV", "dev")
    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(app, ["serve", "--workers", "2"])
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 2
    assert "--workers > 1 needs PostgreSQL" in result.output


@pytest.mark.parametrize(
    ("variable", "value", "said"),
    [
        ("TIERLINE_DATABASE_URL", "garbage", "error: cannot open the database garbage: "),
        ("TIERLINE_LEASE_SECONDS", "abc", "error: TIERLINE_LEASE_SECONDS: Input should be"),
        ("TIERLINE_RATE_LIMIT_PER_SECOND", "-1", "error: TIERLINE_RATE_LIMIT_PER_SECOND: "),
    ],
)
def test_serve_names_a_bad_setting_in_one_line(monkeypatch, variable, value, said):
    """A probe got 106 lines of traceback for a bad database URL, and "Input should be a
    valid number" without the variable's name."""
    monkeypatch.setenv("TIERLINE_ENV", "dev")
    monkeypatch.setenv(variable, value)
    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(app, ["serve", "--port", "8799"])
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 2
    assert result.output.startswith(said) and result.output.count("\n") == 1, result.output


@pytest.mark.parametrize(
    "command",
    [["audit", "verify"], ["export", "labels", "--task", "t"], ["keys", "rotate", "k_1"]],
)
def test_a_mistyped_sqlite_path_is_an_error_not_a_new_empty_database(
    tmp_path, monkeypatch, command
):
    """``audit verify`` on a mistyped path once created an empty database and said ok."""
    missing = tmp_path / "no" / "such.db"
    monkeypatch.setenv("TIERLINE_DATABASE_URL", f"sqlite:///{missing}")
    monkeypatch.setenv("TIERLINE_ENV", "dev")
    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(app, command)
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 2 and "no database at" in result.output
    assert not missing.parent.exists()


def test_an_unusable_database_url_is_one_line_not_a_traceback(monkeypatch):
    monkeypatch.setenv("TIERLINE_DATABASE_URL", "notaurl")
    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(app, ["db", "upgrade"])
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 2 and "cannot open the database notaurl" in result.output
    assert "Traceback" not in result.output


def test_keys_create_names_the_bad_field_in_one_line(database):
    result = CliRunner().invoke(app, ["keys", "create", "--name", "x", "--role", "superuser"])
    assert result.exit_code == 2
    assert "error: role: Input should be" in result.output and "http" not in result.output
