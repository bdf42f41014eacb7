"""api.db: the many-row insert stores what SQLAlchemy's own insert stores."""

from __future__ import annotations

import pytest
from sqlalchemy import JSON, Boolean, Column, Float, Integer, MetaData, String, Table, select
from sqlalchemy.exc import IntegrityError

from api.db import Database, insert_rows

metadata = MetaData()
probe = Table(
    "insert_probe",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("n", Integer),
    Column("x", Float),
    Column("flag", Boolean),
    Column("doc", JSON, nullable=False),
    Column("maybe", JSON(none_as_null=True), nullable=True),
)

ROWS = [
    {"id": "a", "n": 1, "x": 0.25, "flag": True, "doc": {"p": [1, None]}, "maybe": None},
    {"id": "b", "n": None, "x": 1e-9, "flag": False, "doc": ["é", 2**70], "maybe": {"k": 1}},
    {"id": "c", "n": 3, "x": 2.0, "flag": True, "doc": None, "maybe": {"k": None}},
]


@pytest.fixture
def db(fresh_database_url):  # type: ignore[no-untyped-def]
    database = Database(fresh_database_url())
    with database.write() as session:
        metadata.create_all(session.connection())
    yield database
    database.dispose()


def _stored(db: Database) -> list[tuple]:
    with db.read() as session:
        return [tuple(r) for r in session.execute(select(probe).order_by(probe.c.id))]


def _null_json(db: Database) -> list[str | None]:
    """Whether each JSON value is SQL NULL (``None``) or JSON ``null`` (``"null"``)."""
    with db.read() as session:
        rows = session.execute(select(probe.c.id, probe.c.doc.is_(None), probe.c.maybe.is_(None)))
        return [f"{i}:{d}:{m}" for i, d, m in rows.all()]


def test_rows_read_back_as_sqlalchemy_core_writes_them(db, fresh_database_url):
    with db.write() as session:
        insert_rows(session, probe, ROWS)
    reference = Database(fresh_database_url())
    try:
        with reference.write() as session:
            metadata.create_all(session.connection())
            session.execute(probe.insert(), ROWS)
        assert _stored(db) == _stored(reference)
        assert _null_json(db) == _null_json(reference)
    finally:
        reference.dispose()
    assert _stored(db)[1][4] == ["é", 2**70]  # beyond orjson's integers: json's path
    assert _stored(db)[0][5] is None and _stored(db)[2][4] is None


def test_a_duplicate_key_raises_sqlalchemys_integrity_error_and_writes_nothing(db):
    with db.write() as session:
        insert_rows(session, probe, ROWS[:1])
    with pytest.raises(IntegrityError), db.write() as session:
        insert_rows(session, probe, [ROWS[1], ROWS[0]])
    assert [r[0] for r in _stored(db)] == ["a"]


def test_no_rows_is_no_statement(db):
    with db.write() as session:
        insert_rows(session, probe, [])
    assert _stored(db) == []
