"""Group commit: concurrent writes share a transaction; each caller sees its own outcome."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

from api.db import Database
from tests.api.test_cases import CASE


@pytest.fixture
def db(fresh_database_url):  # type: ignore[no-untyped-def]
    database = Database(fresh_database_url())
    with database.write() as session:
        session.execute(text("CREATE TABLE gc_probe (id INTEGER PRIMARY KEY, note TEXT)"))
    yield database
    database.dispose()


def _insert(row_id: int):  # type: ignore[no-untyped-def]
    def write(session):  # type: ignore[no-untyped-def]
        session.execute(text("INSERT INTO gc_probe (id, note) VALUES (:id, 'x')"), {"id": row_id})
        return row_id

    return write


def _rows(db: Database) -> list[int]:
    with db.read() as session:
        return [r[0] for r in session.execute(text("SELECT id FROM gc_probe ORDER BY id"))]


def test_writes_queued_together_commit_in_one_group(db):
    running, gate = threading.Event(), threading.Event()

    def held(session):  # type: ignore[no-untyped-def]
        running.set()
        gate.wait(10)  # keeps the writer busy while the others queue up
        return "first"

    first = db.group.submit(held)
    assert running.wait(10)
    futures = [db.group.submit(_insert(i)) for i in range(1, 21)]
    gate.set()
    assert first.result(10) == "first"
    assert [f.result(10) for f in futures] == list(range(1, 21))
    assert _rows(db) == list(range(1, 21))
    assert db.group.writes == 21
    assert db.group.groups == 2  # the held write alone, then the 20 queued behind it


def test_a_failing_write_fails_alone_and_the_rest_of_its_group_commits(db):
    gate = threading.Event()
    db.group.submit(lambda session: gate.wait(10))
    good = [db.group.submit(_insert(i)) for i in (1, 2)]
    duplicate = db.group.submit(_insert(1))  # same primary key as a write before it
    more = db.group.submit(_insert(3))
    gate.set()
    assert [f.result(10) for f in good] == [1, 2] and more.result(10) == 3
    with pytest.raises(IntegrityError):
        duplicate.result(10)
    assert _rows(db) == [1, 2, 3]


def test_concurrent_callers_each_get_their_result_after_commit(db):
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda i: db.group.run(_insert(i)), range(1, 101)))
    assert results == list(range(1, 101))
    assert _rows(db) == list(range(1, 101))
    assert db.group.groups <= db.group.writes == 100


def test_stop_commits_what_is_queued(db):
    futures = [db.group.submit(_insert(i)) for i in range(1, 6)]
    db.group.stop()
    assert all(f.done() for f in futures)
    assert _rows(db) == [1, 2, 3, 4, 5]


def test_concurrent_cases_are_all_stored_and_counted(api):
    api.create_task()
    with ThreadPoolExecutor(8) as pool:
        cases = list(pool.map(lambda _: api.send("claims", CASE), range(40)))
    assert len({c["id"] for c in cases}) == 40
    metrics = api.client.get("/v1/tasks/claims/metrics", headers=api.as_("analyst")).json()
    assert metrics["cases"] == 40
    for case in cases[::10]:
        stored = api.client.get(f"/v1/cases/{case['id']}", headers=api.as_("service")).json()
        assert stored["route"] == case["route"] and stored["features"] == CASE


def test_a_non_durable_write_skips_the_sync_only_for_itself(db):
    if not db.is_sqlite:
        pytest.skip("SQLite's per-transaction sync level")
    with db.write(durable=False) as session:
        assert session.execute(text("PRAGMA synchronous")).scalar_one() == 1  # NORMAL
        session.execute(text("INSERT INTO gc_probe (id, note) VALUES (7, 'lease')"))
    with db.write() as session:
        assert session.execute(text("PRAGMA synchronous")).scalar_one() == 2  # FULL again
    assert _rows(db) == [7]
