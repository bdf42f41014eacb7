"""Shared fixtures: an app on a temporary SQLite database, and clients for each role."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from api.main import create_app
from api.settings import Settings
from tests.utils.factories import ADMIN_KEY, Api


@pytest.fixture
def settings(tmp_path) -> Settings:
    return Settings(
        database_url=f"sqlite:///{tmp_path / 'tierline.db'}",
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
