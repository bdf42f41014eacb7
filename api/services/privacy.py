"""Erasure on request: delete a case's features, keep the record that it was decided.

``DELETE /v1/cases/{id}`` empties the case's features, redacts them in every audit row
about the case (each erased value becomes ``{"redacted": true, "sha256": ...}``, which
the hash chain covers, so the trail still verifies) and records the erasure itself.
The decision, its reasons, the label and the routing record stay. A labelled case's
values were learned already: the model leader rebuilds the model from the label log,
where the case now has no features, and replaces the task's older snapshots, which hold
them (:meth:`api.live.ModelStore.forget_erased`). A case still waiting for review leaves the
queue (nobody can label what they cannot see, and the model must not learn a label on
no features); it stays ``pending``, undecided.
"""

from __future__ import annotations

import time

from sqlalchemy import update
from sqlmodel import col, select

from api.db import Database
from api.live import ModelStore
from api.security import Principal
from api.services import audit
from api.services.cases import load_case
from api.services.metrics import record_progress
from api.tables import Case, Label, Task


def erase_case(db: Database, store: ModelStore, case_id: str, who: Principal) -> bool:
    """Erase a case's features; ``False`` when they were erased already (idempotent)."""
    with db.write() as session:
        task, case, _ = load_case(session, case_id)  # 404 for an unknown case
        if case.erased_at is not None:
            return False
        erased = sorted(case.features)
        dequeued = case.queued  # read before the update below changes the loaded row
        # any label of the case, feedback too: replays must start after it
        learned = session.exec(select(Label.id).where(Label.case_id == case_id)).first()
        values: dict = {"features": {}, "erased_at": time.time()}
        if dequeued:
            values.update(queued=False, lease_id=None, lease_expires_at=None, leased_by=None)
            session.exec(  # type: ignore[call-overload]
                update(Task).where(col(Task.id) == task.id).values(n_queued=Task.n_queued - 1)
            )
        session.exec(update(Case).where(col(Case.id) == case_id).values(**values))  # type: ignore[call-overload]
        if learned is not None:  # the model learned its values: it is rebuilt without them
            session.exec(  # type: ignore[call-overload]
                update(Task).where(col(Task.id) == task.id).values(erasures=Task.erasures + 1)
            )
        redacted = audit.redact(session, case_id)
        audit.record(
            session, who, "case.erased", task=task, subject=case_id,
            after={"fields": erased, "audit_rows_redacted": redacted, "dequeued": dequeued},
        )  # fmt: skip
    live = store.get(task)
    if live is not None and learned is not None:  # elsewhere the leader, at its next poll
        store.tasks.forget(task.name)  # the row with this erasure counted
        if store.forget_erased(live, store.tasks.get(task.name)):
            record_progress(db, task.name, live)
    return True
