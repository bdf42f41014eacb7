"""The review queue: claim under a lease, label, correct, release.

A claim is one conditional ``UPDATE … RETURNING`` (with ``FOR UPDATE SKIP LOCKED``
on PostgreSQL), so no case is ever held by two leases at once. Label and release
are conditional on the lease and check the affected row count.
"""

from __future__ import annotations

import random
import secrets
import time
from collections.abc import Sequence

from sqlalchemy import select as sa_select
from sqlalchemy import update
from sqlmodel import Session, col, select

from api.db import Database
from api.errors import Conflict, Forbidden, InvalidInput
from api.live import ModelStore
from api.schemas import CaseDetail, Claim, Correction, LabelCreate, iso
from api.security import Principal
from api.services import audit, quality, webhooks
from api.services.cases import case_detail, load_case
from api.services.metrics import record_progress
from api.tables import Case, Label, Lease, Opinion, Routing, Task

_gold_draws = random.Random()  # gold cases are mixed in at random (not reproducible on purpose)


def claim_next(
    db: Database,
    store: ModelStore,
    task_name: str,
    who: Principal,
    lease_seconds: float,
    exclude: Sequence[str] = (),
) -> Claim | None:
    """Lease the most useful waiting case to ``who``; ``None`` when nothing waits.

    ``exclude`` names cases the reviewer skipped, so they are passed over. A case is
    never handed to a reviewer who already gave an opinion on it, and cases whose
    reviewers disagreed only to leads. At the task's gold rate a gold case is served
    instead (leased to ``who`` alone: others may answer it at the same time).
    """
    now = time.time()
    lease_id = "l_" + secrets.token_hex(12)
    expires = now + lease_seconds
    task = store.tasks.get(task_name)  # 404 for an unknown task (settings cached for 1 s)
    with db.write(durable=False) as session:  # a lease is ephemeral: see Database.write
        db.commit_without_flush(session)
        gold_id = quality.pick_gold(session, task, who, _gold_draws) if task.gold_rate else None
        if gold_id is not None:
            session.add(
                Lease(
                    id=lease_id, case_id=gold_id, key_id=who.id, claimed_at=now, expires_at=expires
                )
            )
            task, case, routing = load_case(session, gold_id)
            audit.record(
                session, who, "case.claimed", task=task, subject=gold_id,
                after={"lease_id": lease_id, "lease_expires_at": iso(expires)},
            )  # fmt: skip
            return Claim(
                case=case_detail(task, case, routing, store.get(task)),
                lease_id=lease_id,
                lease_expires_at=iso(expires),
            )
        pick = (
            sa_select(Case.id)
            .where(
                col(Case.task_id) == task.id,
                col(Case.queued).is_(True),
                col(Case.lease_expires_at).is_(None) | (col(Case.lease_expires_at) < now),
                quality.claimable_by(who),
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
        audit.record(
            session, who, "case.claimed", task=task, subject=case_id,
            after={"lease_id": lease_id, "lease_expires_at": iso(expires)},
        )  # fmt: skip
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
    """Record a reviewer's label under their lease; a final label teaches the model.

    The label is the reviewer's opinion; it becomes the case's final label (appended to
    the label log) when the case has the opinions it needs and they agree, see
    :mod:`api.services.quality`. Otherwise the case goes back to the queue for another
    reviewer (or, when its reviewers disagreed, for a lead).
    """
    with db.read() as session:
        task, case, routing = load_case(session, case_id)
        _check_label(task, body.label)
        if case.label is not None or case.opinions:
            mine = session.exec(
                select(Opinion).where(Opinion.case_id == case_id, Opinion.key_id == who.id)
            ).first()
            if mine is not None:
                if mine.lease_id == body.lease_id and mine.label == body.label:
                    return case_detail(task, case, routing, store.get(task))  # a repeated call
                raise Conflict(f"you already labelled case {case_id}")
        if case.label is not None:
            if _replay_of(session, case, body):
                return case_detail(task, case, routing, store.get(task))
            raise Conflict(f"case {case_id} is already labelled")
        gold = None if case.queued else quality.gold_label(session, case_id)
        if not case.queued and gold is None:
            raise Conflict(f"case {case_id} is not waiting for review")
        lease = session.get(Lease, body.lease_id)
        if lease is None or lease.case_id != case_id or lease.key_id != who.id:
            raise Conflict(f"lease {body.lease_id} on case {case_id} is not held by this key")
        if gold is not None:
            return _answer_gold(db, task, case, routing, body, who, gold, lease)
        prior = (
            list(
                session.exec(
                    select(Opinion)
                    .where(Opinion.case_id == case_id, Opinion.role != "gold")
                    .order_by(col(Opinion.id))
                ).all()
            )
            if case.opinions
            else []
        )
        single = not prior and not case.escalated and not case.second_opinion
        recent = (
            quality.recent_agreement(session, task, who.id)
            if single and task.labels_per_case == 1 and task.second_opinion_share > 0
            else None
        )
        outcome = quality.decide(task, case, routing, [o.label for o in prior], body.label, recent)
        if outcome.ask_second and not quality.other_reviewer_active(session, task, who):
            outcome = quality.Outcome(final=body.label)  # nobody else to ask: the label stands
    now = time.time()
    lease_ok = (
        (col(Case.lease_id) == body.lease_id)
        | col(Case.lease_id).is_(None)
        | (col(Case.lease_expires_at) < now)
    )
    with db.write() as session:
        if outcome.ask_second and not quality.take_second_opinion_budget(session, task):
            outcome = quality.Outcome(final=body.label)  # the budget is spent: the label stands
        if outcome.final is None:
            _hold_opinion(session, task, case, body, who, lease, len(prior), outcome, now, lease_ok)
            return case_detail(task, case, routing, store.get(task))
        final = outcome.final
        author = quality.final_author(prior, body.label, final, who)
        claimed = session.exec(  # type: ignore[call-overload]
            update(Case)
            .where(
                col(Case.id) == case_id,
                col(Case.label).is_(None),
                col(Case.opinions) == len(prior),
                lease_ok,
            )
            .values(
                label=final,
                labelled_by=author.name,
                labelled_at=now,
                queued=False,
                lease_id=None,
                lease_expires_at=None,
                leased_by=None,
                opinions=Case.opinions + 1,
            )
        ).rowcount
        if claimed != 1:
            raise Conflict(
                f"your lease on case {case_id} expired and another reviewer holds the case"
            )
        if prior:
            quality.settle_opinions(session, case_id, final)
        quality.add_opinion(
            session,
            task,
            case_id,
            who,
            body.label,
            "lead" if case.escalated else "review",
            now,
            lease_id=body.lease_id,
            claimed_at=lease.claimed_at,
            final_label=final if prior else None,
        )
        kind = "audit" if routing.audit else routing.route
        entry = append_label(
            session,
            task,
            case,
            routing,
            final,
            kind,
            author,
            now,
            lease_id=body.lease_id,
            comment=body.comment,
        )
        was_pending = case.status == "pending"
        if was_pending:
            case.status, case.decision, case.decided_at = "decided", final, now
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
        wrong = routing.audit and final != routing.suggestion
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
        case.label, case.labelled_by, case.labelled_at = final, author.name, now
        if was_pending:
            data = webhooks.case_data(task, case, routing)
            webhooks.emit(session, task, "case.decided", data, case_id=case_id)
        if wrong:
            _emit_disagreement(session, task, case, routing)
        audit.record(
            session, who, "case.labelled", task=task, subject=case_id,
            after={"label": final, "opinion": body.label, "kind": kind, "label_id": entry.id,
                   "lease_id": body.lease_id, "labelled_by": author.name},
        )  # fmt: skip
    return _learn(db, store, task, case, routing, entry, who)


def _hold_opinion(
    session: Session,
    task: Task,
    case: Case,
    body: LabelCreate,
    who: Principal,
    lease: Lease,
    n_prior: int,
    outcome: quality.Outcome,
    now: float,
    lease_ok: object,
) -> None:
    """Keep a non-final opinion and put the case back in the queue for the next reviewer."""
    values: dict = {
        "opinions": Case.opinions + 1,
        "lease_id": None,
        "lease_expires_at": None,
        "leased_by": None,
    }
    if outcome.ask_second:
        values["second_opinion"] = True
    if outcome.escalate:
        values["escalated"] = True
        values["priority"] = Case.priority - 1.0  # leads see disagreements first
    held = session.exec(  # type: ignore[call-overload]
        update(Case)
        .where(
            col(Case.id) == case.id,
            col(Case.label).is_(None),
            col(Case.opinions) == n_prior,
            lease_ok,  # type: ignore[arg-type]
        )
        .values(**values)
    ).rowcount
    if held != 1:
        raise Conflict(f"your lease on case {case.id} expired and another reviewer holds the case")
    quality.add_opinion(
        session,
        task,
        case.id,
        who,
        body.label,
        "review",
        now,
        lease_id=body.lease_id,
        claimed_at=lease.claimed_at,
    )
    session.exec(  # type: ignore[call-overload]
        update(Lease).where(col(Lease.id) == body.lease_id).values(ended_at=now, outcome="opinion")
    )
    if outcome.escalate:
        session.exec(  # type: ignore[call-overload]
            update(Task).where(col(Task.id) == task.id).values(n_escalated=Task.n_escalated + 1)
        )
    audit.record(
        session, who, "case.opinion", task=task, subject=case.id,
        after={"label": body.label, "lease_id": body.lease_id,
               "second_opinion": outcome.ask_second, "escalated": outcome.escalate},
    )  # fmt: skip


def _answer_gold(
    db: Database,
    task: Task,
    case: Case,
    routing: Routing,
    body: LabelCreate,
    who: Principal,
    gold: str,
    lease: Lease,
) -> CaseDetail:
    """Check an answer on a gold case; it never reaches the label log or the model.

    The answer looks like any other label to the reviewer.
    """
    with db.read() as session:
        mine = session.exec(
            select(Opinion).where(Opinion.case_id == case.id, Opinion.key_id == who.id)
        ).first()
    if mine is not None and (mine.lease_id != body.lease_id or mine.label != body.label):
        raise Conflict(f"you already labelled case {case.id}")
    now = mine.created_at if mine is not None else time.time()
    if mine is None:
        _record_gold_answer(db, task, case, body, who, gold, lease, now)
    detail = case_detail(task, case, routing)
    return detail.model_copy(
        update={
            "status": "decided",
            "decision": body.label,
            "label": body.label,
            "labelled_by": who.name,
            "labelled_at": iso(now),
        }
    )


def _record_gold_answer(
    db: Database,
    task: Task,
    case: Case,
    body: LabelCreate,
    who: Principal,
    gold: str,
    lease: Lease,
    now: float,
) -> None:
    with db.write() as session:
        quality.add_opinion(
            session,
            task,
            case.id,
            who,
            body.label,
            "gold",
            now,
            lease_id=body.lease_id,
            claimed_at=lease.claimed_at,
            final_label=gold,
        )
        session.exec(  # type: ignore[call-overload]
            update(Lease)
            .where(col(Lease.id) == body.lease_id)
            .values(ended_at=now, outcome="labelled")
        )


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
        if case.label_id is None and case.opinions:
            return _change_opinion(db, store, task, case, routing, body, who)
        if case.label_id is None:
            raise Conflict(f"case {case_id} has no label to correct")
        previous = session.get(Label, case.label_id)
        assert previous is not None
        if previous.key_id != who.id and not quality.is_lead(who):
            raise Forbidden(
                "only the reviewer who labelled a case (or a lead or an admin) may correct it"
            )
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
        quality.settle_opinions(session, case_id, body.label)
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
        audit.record(
            session, who, "case.corrected", task=task, subject=case_id,
            before={"label": previous.label, "label_id": previous.id},
            after={"label": body.label, "label_id": entry.id},
        )  # fmt: skip
    return _learn(db, store, task, case, routing, entry, who)


def _change_opinion(
    db: Database,
    store: ModelStore,
    task: Task,
    case: Case,
    routing: Routing,
    body: Correction,
    who: Principal,
) -> CaseDetail:
    """A reviewer changes their opinion on a case that is not final yet (nothing is logged)."""
    with db.write() as session:
        changed = session.exec(  # type: ignore[call-overload]
            update(Opinion)
            .where(
                col(Opinion.case_id) == case.id,
                col(Opinion.key_id) == who.id,
                col(Opinion.role) == "review",
                col(Opinion.final_label).is_(None),
            )
            .values(label=body.label)
        ).rowcount
        if changed != 1:
            raise Conflict(f"case {case.id} has no label of yours to correct")
    return case_detail(task, case, routing, store.get(task))


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
        task, _, _ = load_case(session, case_id)  # 404 for an unknown case
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
        audit.record(
            session, who, "case.released", task=task, subject=case_id,
            after={"lease_id": lease_id},
        )  # fmt: skip
