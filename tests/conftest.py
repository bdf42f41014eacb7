"""Shared fixtures: an app on a temporary database, and clients for each role.

The whole suite runs on either backend: SQLite by default, PostgreSQL with
``pytest --backend postgresql`` (``make test`` runs both). See
:mod:`tests.utils.databases`.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from api.main import create_app
from api.settings import Settings
from tests.utils.databases import BACKENDS, TestDatabases, pg_admin_url, pg_available
from tests.utils.factories import ADMIN_KEY, Api


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--backend",
        choices=BACKENDS,
        default=os.environ.get("TIERLINE_TEST_BACKEND", "sqlite"),
        help="database backend for the suite (default: sqlite, or $TIERLINE_TEST_BACKEND)",
    )


def pytest_report_header(config: pytest.Config) -> str:
    return f"tierline backend: {config.getoption('--backend')}"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "postgres: needs the PostgreSQL backend (skipped on SQLite)")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--backend") == "postgresql":
        _keep_database_tests(config, items)
        return
    skip = pytest.mark.skip(reason="PostgreSQL only: run with --backend postgresql")
    for item in items:
        if "postgres" in item.keywords:
            item.add_marker(skip)


def _keep_database_tests(config: pytest.Config, items: list[pytest.Item]) -> None:
    """On PostgreSQL run only the tests that touch a database.

    The rest (the learner, doctests, formatting) cannot behave differently on another
    backend and already ran in the SQLite phase; running them twice only slows
    ``make test``. A test touches a database when it uses the ``databases`` fixture,
    directly or through ``database_url``, ``client``, ``api`` and the like.
    """
    keep, drop = [], []
    for item in items:
        uses_database = "databases" in getattr(item, "fixturenames", ())
        (keep if uses_database else drop).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


@pytest.fixture(scope="session")
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.config.getoption("--backend"))


@pytest.fixture(scope="session")
def databases(backend: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestDatabases]:
    """This session's databases; PostgreSQL ones are dropped at the end."""
    if backend == "postgresql" and not pg_available():
        pytest.exit(
            f"PostgreSQL is not reachable at {pg_admin_url()}: start it "
            "(`make test` does: pg_ctlcluster <version> main start)",
            returncode=3,
        )
    dbs = TestDatabases(backend, tmp_path_factory.mktemp("databases"))
    yield dbs
    dbs.drop_all()


@pytest.fixture
def database_url(databases: TestDatabases, tmp_path: Path) -> str:
    """A migrated, empty database for this test."""
    return databases.shared(tmp_path)


@pytest.fixture
def fresh_database_url(databases: TestDatabases, tmp_path: Path) -> Callable[[], str]:
    """Makes databases of their own (for tests that run several servers or stacks)."""
    return lambda: databases.fresh(tmp_path)


@pytest.fixture
def settings(database_url: str) -> Settings:
    return Settings(
        database_url=database_url,
        admin_key=ADMIN_KEY,
        env="dev",
        snapshot_every=25,
    )


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings)) as test_client:
        yield test_client


@pytest.fixture
def api(client: TestClient) -> Api:
    return Api(client)
