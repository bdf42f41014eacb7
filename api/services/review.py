"""The review queue: claim under a lease, label, correct, release.

A claim is one conditional ``UPDATE … RETURNING`` (with ``FOR UPDATE SKIP LOCKED``
on PostgreSQL), so no case is ever held by two leases at once. Label and release
are conditional on the lease and check the affected row count.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Sequence

from sqlalchemy import select as sa_select
from sqlalchemy import update
from sqlmodel import Session, col

from api.db import Database
from api.errors import Conflict, Forbidden, InvalidInput
from api.live import ModelStore
from api.schemas import CaseDetail, Claim, Correction, LabelCreate, iso
from api.security import Principal
from api.services import webhooks
from api.services.cases import case_detail, load_case
from api.services.metrics import record_progress
from api.tables import Case, Label, Lease, Routing, Task


def claim_next(
    db: Database,
    store: ModelStore,
    task_name: str,
    who: Principal,
    lease_seconds: float,
    exclude: Sequence[str] = (),
) -> Claim | None:
    """Lease the most useful waiting case to ``who``; ``None`` when nothing waits.

    ``exclude`` names cases the reviewer skipped, so they are passed over.
    """
    now = time.time()
    lease_id = "l_" + secrets.token_hex(12)
    expires = now + lease_seconds
    task = store.tasks.get(task_name)  # 404 for an unknown task (settings cached for 1 s)
    with db.write() as session:
        db.commit_without_flush(session)  # a lease is ephemeral: see Database's docstring
        pick = (
            sa_select(Case.id)
            .where(
                col(Case.task_id) == task.id,
                col(Case.queued).is_(True),
                col(Case.lease_expires_at).is_(None) | (col(Case.lease_expires_at) < now),
            )
            .order_by(col(Case.priority))
            .limit(1)
        )
        if exclude:
            pick = pick.where(col(Case.id).not_in(list(exclude)))
        if not db.is_sqlite:
            pick = pick.with_for_update(skip_locked=True)
        case_id = session.exec(  # type: ignore[call-overload]
            update(Case)
            .where(col(Case.id) == pick.scalar_subquery())
            .values(lease_id=lease_id, lease_expires_at=expires, leased_by=who.id)
            .returning(Case.id)
        ).scalar_one_or_none()
        if case_id is None:
            return None
        session.add(
            Lease(id=lease_id, case_id=case_id, key_id=who.id, claimed_at=now, expires_at=expires)
        )
        task, case, routing = load_case(session, case_id)  # same round trip budget: no new session
    return Claim(
        case=case_detail(task, case, routing, store.get(task)),
        lease_id=lease_id,
        lease_expires_at=iso(expires),
    )


def _check_label(task: Task, label: str) -> None:
    if label not in task.labels:
        raise InvalidInput(
            ["label"],
            f"{label!r} is not a label of task {task.name!r}; expected one of {task.labels}",
        )


def _replay_of(session: Session, case: Case, body: LabelCreate) -> bool:
    """True when ``body`` repeats the call that labelled ``case``."""
    if case.label_id is None:
        return False
    first = session.get(Label, case.label_id)
    return first is not None and first.lease_id == body.lease_id and first.label == body.label


def label_case(
    db: Database, store: ModelStore, case_id: str, body: LabelCreate, who: Principal
) -> CaseDetail:
    """Record a reviewer's label under their lease and teach the model with it."""
    with db.read() as session:
        task, case, routing = load_case(session, case_id)
        _check_label(task, body.label)
        if case.label is not None:
            if _replay_of(session, case, body):
                return case_detail(task, case, routing, store.get(task))
            raise Conflict(f"case {case_id} is already labelled")
        if not case.queued:
            raise Conflict(f"case {case_id} is not waiting for review")
        lease = session.get(Lease, body.lease_id)
        if lease is None or lease.case_id != case_id or lease.key_id != who.id:
            raise Conflict(f"lease {body.lease_id} on case {case_id} is not held by this key")
    now = time.time()
    with db.write() as session:
        claimed = session.exec(  # type: ignore[call-overload]
            update(Case)
            .where(
                col(Case.id) == case_id,
                col(Case.label).is_(None),
                (col(Case.lease_id) == body.lease_id)
                | col(Case.lease_id).is_(None)
                | (col(Case.lease_expires_at) < now),
            )
            .values(
                label=body.label,
                labelled_by=who.name,
                labelled_at=now,
                queued=False,
                lease_id=None,
                lease_expires_at=None,
                leased_by=None,
            )
        ).rowcount
        if claimed != 1:
            raise Conflict(
                f"your lease on case {case_id} expired and another reviewer holds the case"
            )
        kind = "audit" if routing.audit else routing.route
        entry = append_label(
            session,
            task,
            case,
            routing,
            body.label,
            kind,
            who,
            now,
            lease_id=body.lease_id,
            comment=body.comment,
        )
        was_pending = case.status == "pending"
        if was_pending:
            case.status, case.decision, case.decided_at = "decided", body.label, now
        session.exec(  # type: ignore[call-overload]
            update(Case)
            .where(col(Case.id) == case_id)
            .values(
                label_id=entry.id,
                status=case.status,
                decision=case.decision,
                decided_at=case.decided_at,
            )
        )
        session.exec(  # type: ignore[call-overload]
            update(Lease)
            .where(col(Lease.id) == body.lease_id)
            .values(ended_at=now, outcome="labelled")
        )
        wrong = routing.audit and body.label != routing.suggestion
        session.exec(  # type: ignore[call-overload]
            update(Task)
            .where(col(Task.id) == task.id)
            .values(
                n_labels=Task.n_labels + 1,
                n_queued=Task.n_queued - 1,
                n_pending=Task.n_pending - int(routing.route != "auto"),
                n_audited=Task.n_audited + int(routing.audit),
                n_audit_errors=Task.n_audit_errors + int(wrong),
            )
        )
        case.label, case.labelled_by, case.labelled_at = body.label, who.name, now
        if was_pending:
            data = webhooks.case_data(task, case, routing)
            webhooks.emit(session, task, "case.decided", data, case_id=case_id)
        if wrong:
            _emit_disagreement(session, task, case, routing)
    return _learn(db, store, task, case, routing, entry, who)


def _emit_disagreement(session: Session, task: Task, case: Case, routing: Routing) -> None:
    data = webhooks.case_data(
        task, case, routing, automated_decision=routing.suggestion, audit_label=case.label
    )
    webhooks.emit(session, task, "audit.disagreed", data, case_id=case.id)


def correct_label(
    db: Database, store: ModelStore, case_id: str, body: Correction, who: Principal
) -> CaseDetail:
    """Append a correction of a case's label; the model and the evidence follow it."""
    with db.read() as session:
        task, case, routing = load_case(session, case_id)
        _check_label(task, body.label)
        if case.label_id is None:
            raise Conflict(f"case {case_id} has no label to correct")
        previous = session.get(Label, case.label_id)
        assert previous is not None
        if previous.key_id != who.id and who.role != "admin":
            raise Forbidden("only the reviewer who labelled a case (or an admin) may correct it")
    if previous.label == body.label:
        return case_detail(task, case, routing, store.get(task))
    now = time.time()
    with db.write() as session:
        entry = append_label(
            session,
            task,
            case,
            routing,
            body.label,
            "correction",
            who,
            now,
            comment=body.comment,
            corrects=previous.id,
        )
        values: dict = {
            "label": body.label,
            "labelled_by": who.name,
            "labelled_at": now,
            "label_id": entry.id,
        }
        if routing.route != "auto":
            values["decision"] = body.label
        session.exec(update(Case).where(col(Case.id) == case_id).values(**values))  # type: ignore[call-overload]
        if routing.audit:
            delta = int(body.label != routing.suggestion) - int(
                previous.label != routing.suggestion
            )
            session.exec(  # type: ignore[call-overload]
                update(Task)
                .where(col(Task.id) == task.id)
                .values(n_audit_errors=Task.n_audit_errors + delta)
            )
        case.label, case.labelled_by, case.labelled_at = body.label, who.name, now
        if routing.route != "auto":
            case.decision = body.label
        data = webhooks.case_data(task, case, routing, previous_label=previous.label)
        webhooks.emit(session, task, "case.corrected", data, case_id=case_id)
        if routing.audit and delta > 0:
            _emit_disagreement(session, task, case, routing)
    return _learn(db, store, task, case, routing, entry, who)


def append_label(
    session: Session,
    task: Task,
    case: Case,
    routing: Routing,
    label: str,
    kind: str,
    who: Principal,
    now: float,
    *,
    lease_id: str | None = None,
    comment: str | None = None,
    corrects: int | None = None,
) -> Label:
    entry = Label(
        task_id=task.id,  # type: ignore[arg-type]
        case_id=case.id,
        label=label,
        kind=kind,
        key_id=who.id,
        labelled_by=who.name,
        lease_id=lease_id,
        comment=comment,
        created_at=now,
        corrects=corrects,
        route=routing.route,
        suggestion=routing.suggestion,
        confidence=routing.confidence,
        propensity=routing.propensity,
        audit=routing.audit,
    )
    session.add(entry)
    session.flush()
    return entry


def _learn(
    db: Database,
    store: ModelStore,
    task: Task,
    case: Case,
    routing: Routing,
    entry: Label,
    who: Principal,
) -> CaseDetail:
    """Apply a committed label to the live model, then refresh the task's aggregates."""
    live = store.get(task)
    assert live is not None and entry.id is not None
    if store.apply(live, entry, case.features):  # else the leader applies it, and records it
        record_progress(db, task.name, live)
    with db.read() as session:
        task, case, routing = load_case(session, case.id)
    return case_detail(task, case, routing, live)


def release_case(db: Database, case_id: str, lease_id: str, who: Principal) -> None:
    """Give a leased case back to the queue."""
    now = time.time()
    with db.write() as session:
        load_case(session, case_id)  # 404 for an unknown case
        released = session.exec(  # type: ignore[call-overload]
            update(Case)
            .where(
                col(Case.id) == case_id,
                col(Case.lease_id) == lease_id,
                col(Case.leased_by) == who.id,
            )
            .values(lease_id=None, lease_expires_at=None, leased_by=None)
        ).rowcount
        if released != 1:
            lease = session.get(Lease, lease_id)
            if lease and lease.key_id == who.id and lease.outcome == "released":
                return  # a repeated release (say, after a lost response) is a no-op
            raise Conflict(f"lease {lease_id} on case {case_id} is not held by this key")
        session.exec(  # type: ignore[call-overload]
            update(Lease).where(col(Lease.id) == lease_id).values(ended_at=now, outcome="released")
        )
