"""The label log's order on PostgreSQL: ids of a task commit in id order (issue 6).

A reader of the log (the model leader) must never see label ``n + 1`` while label
``n`` is still to commit, or it would skip ``n`` for ever. Appends to a task's log are
serialised from before the id is drawn until commit (``api.db.lock_label_log``).
"""

from __future__ import annotations

import threading
import time

import pytest
from sqlalchemy import insert

from api.db import Database
from api.tables import Label

pytestmark = pytest.mark.postgres


def _label(task_id: int, case_id: str) -> dict:
    return {
        "task_id": task_id,
        "case_id": case_id,
        "label": "approve",
        "kind": "review",
        "created_at": time.time(),
        "route": "review",
        "confidence": 0.5,
        "propensity": 1.0,
        "audit": False,
    }


def test_a_later_append_waits_for_the_earlier_one_to_commit(api, settings):
    api.create_task("one")
    api.create_task("two")
    first = api.send("one", {"amount": 1, "country": "fr", "note": "a", "vip": False})["id"]
    other_case = api.send("two", {"amount": 1, "country": "fr", "note": "a", "vip": False})["id"]
    db = Database(settings.database_url)
    same: list[int] = []
    elsewhere: list[int] = []

    def append(task_id: int, case_id: str, out: list[int]) -> None:
        with db.write() as session:  # a bulk-style insert: the lock is taken all the same
            out.append(
                session.execute(
                    insert(Label).returning(Label.id), _label(task_id, case_id)
                ).scalar_one()
            )

    try:
        with db.write() as early:
            entry = Label(**_label(1, first))
            early.add(entry)
            early.flush()  # ORM insert: task 1's log is locked until this commits
            late = threading.Thread(target=append, args=(1, first, same))
            other = threading.Thread(target=append, args=(2, other_case, elsewhere))
            late.start()
            other.start()
            other.join(10)
            time.sleep(0.3)
            assert elsewhere and not same  # another task's log is not held up
        late.join(10)
        assert same and same[0] > entry.id  # type: ignore[operator]
    finally:
        db.dispose()
