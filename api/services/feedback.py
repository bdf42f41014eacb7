"""Downstream feedback: a later outcome (an appeal, a chargeback) about a decided case.

Feedback is stored beside the case (``feedback`` table), counted in the task's
metrics, sent as a ``case.feedback`` webhook event and appended to the label log as
``kind="feedback"``, so the model learns from it in log order like any label. It is
kept out of the risk controller's evidence (see :meth:`api.live.LiveModel.fold`):
reports that someone chose to file are not a random sample of decisions, and would
bias the error estimate behind certified automation. The case's own decision and
label do not change.
"""

from __future__ import annotations

import time

from sqlalchemy import update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from api.db import Database
from api.errors import Conflict, InvalidInput
from api.live import ModelStore
from api.schemas import FeedbackCreate, FeedbackPublic, FeedbacksPublic, iso
from api.security import Principal
from api.services import audit, webhooks
from api.services.cases import load_case
from api.services.review import append_label
from api.tables import Feedback, Task
from learner.schema import label_of


def _public(task: Task, row: Feedback, model_version: int) -> FeedbackPublic:
    return FeedbackPublic(
        id=row.id,  # type: ignore[arg-type]
        case_id=row.case_id,
        task=task.name,
        external_id=row.external_id,
        label=row.label,
        source=row.source,
        comment=row.comment,
        decision=row.decision,
        agrees=None if row.decision is None else row.decision == row.label,
        reported_by=row.reported_by,
        created_at=iso(row.created_at),
        model_version=model_version,
    )


def _existing(session: Session, task: Task, case_id: str, external_id: str) -> Feedback | None:
    row = session.exec(
        select(Feedback).where(Feedback.task_id == task.id, Feedback.external_id == external_id)
    ).first()
    if row is not None and row.case_id != case_id:
        raise Conflict(f"feedback {external_id!r} was already given for case {row.case_id}")
    return row


def record_feedback(
    db: Database, store: ModelStore, case_id: str, body: FeedbackCreate, who: Principal
) -> tuple[FeedbackPublic, bool]:
    """Store, announce and learn a feedback report; ``True`` when it is new.

    With an ``external_id`` the call is idempotent: a repeat returns the first report.
    """
    with db.read() as session:
        task, case, routing = load_case(session, case_id)
        label = label_of(task.labels, body.label)
        if label is None:
            raise InvalidInput(
                ["label"],
                f"{body.label!r} is not a label of task {task.name!r}; expected one of "
                f"{task.labels}",
            )
        body = body.model_copy(update={"label": label})
        if case.status != "decided":
            raise Conflict(
                f"case {case_id} is still pending: a person decides it through review; "
                "feedback is for decided cases"
            )
        if body.external_id is not None:
            first = _existing(session, task, case_id, body.external_id)
            if first is not None:
                live = store.get(task)
                return _public(task, first, live.version if live else 0), False
        if case.erased_at is not None:
            raise Conflict(f"case {case_id} was erased: no features to learn feedback from")
    now = time.time()
    try:
        with db.write() as session:
            entry = append_label(
                session,
                task,
                case,
                routing,
                body.label,
                "feedback",
                who,
                now,
                comment=body.comment,
            )
            row = Feedback(
                task_id=task.id,  # type: ignore[arg-type]
                case_id=case_id,
                external_id=body.external_id,
                label=body.label,
                source=body.source,
                comment=body.comment,
                decision=case.decision,
                key_id=who.id,
                reported_by=who.name,
                created_at=now,
                label_id=entry.id,
            )
            session.add(row)
            session.flush()
            session.exec(  # type: ignore[call-overload]
                update(Task).where(col(Task.id) == task.id).values(n_feedback=Task.n_feedback + 1)
            )
            public = _public(task, row, 0)
            data = webhooks.case_data(
                task, case, routing, feedback=public.model_dump(exclude={"model_version"})
            )
            webhooks.emit(session, task, "case.feedback", data, case_id=case_id, now=now)
            audit.record(
                session, who, "case.feedback", task=task, subject=case_id,
                after={"label": body.label, "source": body.source, "feedback_id": row.id,
                       "label_id": entry.id, "decision": case.decision},
            )  # fmt: skip
    except IntegrityError:  # the same external_id, stored concurrently
        if body.external_id is None:
            raise
        return record_feedback(db, store, case_id, body, who)
    live = store.get(task)
    assert live is not None
    store.apply(live, entry, case.features)
    public.model_version = live.version
    return public, True


def list_feedback(db: Database, store: ModelStore, case_id: str) -> FeedbacksPublic:
    with db.read() as session:
        task, _, _ = load_case(session, case_id)
        rows = session.exec(
            select(Feedback).where(Feedback.case_id == case_id).order_by(col(Feedback.id))
        ).all()
    live = store.get(task)
    version = live.version if live else 0
    data = [_public(task, r, version) for r in rows]
    return FeedbacksPublic(data=data, count=len(data))
