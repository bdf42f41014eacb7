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
from functools import cache
from typing import Any, TypeVar

from sqlalchemy import Row, Update, and_, bindparam, insert, update
from sqlalchemy import select as sa_select
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from api.db import Database
from api.errors import Conflict, Forbidden, InvalidInput
from api.live import ModelStore
from api.schemas import CaseDetail, Claim, Correction, LabelCreate, OpinionShown, iso
from api.security import Principal
from api.services import audit, quality, webhooks
from api.services.cases import as_claimed, case_detail, load_case
from api.services.metrics import record_progress
from api.tables import Case, Label, Lease, Opinion, Routing, Task
from learner import held_by_rule
from learner.schema import label_of

_gold_draws = random.Random()  # gold cases are mixed in at random (not reproducible on purpose)

# The label path's statements, built once (constructing and caching a statement costs
# more than running it). Parameters: case, prior (the case's opinions so far), lease, now.
_case, _lease, _task = Case.__table__, Lease.__table__, Task.__table__  # type: ignore[attr-defined]
_HELD = and_(  # the case still waits for this reviewer's opinion, under their lease
    _case.c.id == bindparam("case"),
    _case.c.label.is_(None),
    _case.c.opinions == bindparam("prior"),
    (_case.c.lease_id == bindparam("lease"))
    | _case.c.lease_id.is_(None)
    | (_case.c.lease_expires_at < bindparam("now")),
)
_LEASE = sa_select(_lease.c.case_id, _lease.c.key_id, _lease.c.claimed_at, _lease.c.outcome).where(
    _lease.c.id == bindparam("lease")
)
_FINAL_LABEL = (
    update(_case)
    .where(_HELD)
    .values(
        label=bindparam("final"),
        labelled_by=bindparam("author"),
        labelled_at=bindparam("now"),
        queued=False,
        lease_id=None,
        lease_expires_at=None,
        leased_by=None,
        opinions=_case.c.opinions + 1,
    )
)
_LINK_LABEL = (
    update(_case)
    .where(_case.c.id == bindparam("case"))
    .values(
        label_id=bindparam("new_label_id"),
        status=bindparam("new_status"),
        decision=bindparam("new_decision"),
        decided_at=bindparam("new_decided_at"),
    )
)
_END_LEASE = (
    update(_lease)
    .where(_lease.c.id == bindparam("lease"))
    .values(ended_at=bindparam("now"), outcome=bindparam("how"))
)
_COUNT_LABEL = (
    update(_task)
    .where(_task.c.id == bindparam("task"))
    .values(
        n_labels=_task.c.n_labels + 1,
        n_queued=_task.c.n_queued - 1,
        n_pending=_task.c.n_pending - bindparam("pending"),
        n_audited=_task.c.n_audited + bindparam("audited"),
        n_audit_errors=_task.c.n_audit_errors + bindparam("wrong"),
    )
    .returning(_task.c.n_labels)
)
_NEW_LEASE = insert(_lease)
_label = Label.__table__  # type: ignore[attr-defined]
_APPEND_LABEL = insert(_label).returning(*_label.c)  # the row as stored: no model to build


@cache
def _claim_statement(lead: bool, skip_locked: bool) -> Update:
    """Lease the first claimable case of a task in priority order, returning its id.

    Parameters: task, now, reviewer (the key id), reviewers (its ids, rotations included),
    exclude (case ids passed over), lease, expires. Built once per kind of claimant and
    backend.
    """
    pick = (
        sa_select(_case.c.id)
        .where(
            _case.c.task_id == bindparam("task"),
            _case.c.queued.is_(True),
            _case.c.lease_expires_at.is_(None) | (_case.c.lease_expires_at < bindparam("now")),
            quality.claimable_by(lead),
            _case.c.id.not_in(bindparam("exclude", expanding=True)),
        )
        .order_by(_case.c.priority)
        .limit(1)
    )
    if skip_locked:
        pick = pick.with_for_update(skip_locked=True)
    return (
        update(_case)
        .where(_case.c.id == pick.scalar_subquery())
        .values(
            lease_id=bindparam("lease"),
            lease_expires_at=bindparam("expires"),
            leased_by=bindparam("reviewer"),
        )
        .returning(_case.c.id)
    )


def claim_next(
    db: Database,
    store: ModelStore,
    task_name: str,
    who: Principal,
    lease_seconds: float,
    exclude: Sequence[str] = (),
    resume: bool = False,
) -> Claim | None:
    """Lease the most useful waiting case to ``who``; ``None`` when nothing waits.

    ``exclude`` names cases the reviewer skipped, so they are passed over. A case is
    never handed to a reviewer who already gave an opinion on it, and cases whose
    reviewers disagreed only to leads. At the task's gold rate a gold case is served
    instead (leased to ``who`` alone: others may answer it at the same time). With
    ``resume``, a case ``who`` holds under a lease that has not expired comes first,
    with that lease (the oldest such, outside ``exclude``): a page that reloaded lost
    track of it.
    """
    now = time.time()
    if resume and (held := _held(db, store, task_name, who, exclude, now)) is not None:
        return held
    lease_id = "l_" + secrets.token_hex(12)
    expires = now + lease_seconds
    task = store.tasks.get(task_name)  # 404 for an unknown task (settings cached for 1 s)
    with db.write(durable=False) as session:  # a lease is ephemeral: see Database.write
        db.commit_without_flush(session)
        gold_id = (
            quality.pick_gold(session, task, who, _gold_draws, exclude) if task.gold_rate else None
        )
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
            live = store.get(task)
            # created when a real case of the queue might have been: between its oldest and now
            oldest = store.oldest_queued.get(task.id) or now  # type: ignore[arg-type]
            created = _gold_draws.uniform(min(oldest, now), now)
            shown, routed = quality.as_served(task, live, case, routing, created)
            return Claim(
                case=case_detail(task, shown, routed, live),
                lease_id=lease_id,
                lease_expires_at=iso(expires),
            )
        claim = _claim_statement(quality.is_lead(who), skip_locked=not db.is_sqlite)
        params = {
            "task": task.id,
            "now": now,
            "reviewer": who.id,
            "reviewers": who.identities,
            "exclude": list(exclude),
            "lease": lease_id,
            "expires": expires,
        }
        # on the connection: the session's ORM bulk UPDATE re-keys the statement (~90 us)
        case_id = session.connection().execute(claim, params).scalar_one_or_none()
        if case_id is None:
            return None
        session.execute(
            _NEW_LEASE,
            {"id": lease_id, "case_id": case_id, "key_id": who.id, "claimed_at": now,
             "expires_at": expires},
        )  # fmt: skip
        task, case, routing = load_case(session, case_id)  # same round trip budget: no new session
        audit.record(
            session, who, "case.claimed", task=task, subject=case_id,
            after={"lease_id": lease_id, "lease_expires_at": iso(expires)},
        )  # fmt: skip
        disagreement = _opinions_shown(session, case_id) if case.escalated else None
    return _handed(store, task, case, routing, lease_id, expires, disagreement)


def _handed(
    store: ModelStore,
    task: Task,
    case: Case,
    routing: Routing,
    lease_id: str,
    expires: float | None,
    disagreement: list[OpinionShown] | None,
) -> Claim:
    """A leased case as the reviewer is handed it (:func:`~api.services.cases.as_claimed`)."""
    live = store.get(task)
    return Claim(
        case=case_detail(task, case, as_claimed(task, live, case, routing), live),
        lease_id=lease_id,
        lease_expires_at=iso(expires),
        disagreement=disagreement,
    )


def _held(
    db: Database,
    store: ModelStore,
    task_name: str,
    who: Principal,
    exclude: Sequence[str],
    now: float,
) -> Claim | None:
    """The case ``who`` holds longest on the task under a live lease, with that lease."""
    task = store.tasks.get(task_name)
    with db.read() as session:
        case_id = session.exec(
            select(Case.id)
            .where(
                Case.task_id == task.id,
                col(Case.queued),
                col(Case.leased_by) == who.id,
                col(Case.lease_expires_at) > now,
                col(Case.id).not_in(list(exclude)),
            )
            .order_by(col(Case.lease_expires_at))
            .limit(1)
        ).first()
        if case_id is None:
            return None
        task, case, routing = load_case(session, case_id)
        disagreement = _opinions_shown(session, case_id) if case.escalated else None
    lease_id = case.lease_id
    assert lease_id is not None  # held: selected on its lease
    return _handed(store, task, case, routing, lease_id, case.lease_expires_at, disagreement)


def _opinions_shown(session: Session, case_id: str) -> list[OpinionShown]:
    """The answers a lead decides between (only leads are handed escalated cases)."""
    rows = session.exec(
        select(Opinion)
        .where(Opinion.case_id == case_id, Opinion.role != "gold")
        .order_by(col(Opinion.id))
    ).all()
    return [OpinionShown(reviewer=o.reviewer, label=o.label) for o in rows]


B = TypeVar("B", LabelCreate, Correction)


def _checked(task: Task, body: B) -> B:
    """``body`` with its label as the task writes it (:func:`learner.schema.label_of`), or
    a 422 for a label the task does not have."""
    label = label_of(task.labels, body.label)
    if label is None:
        raise InvalidInput(
            ["label"],
            f"{body.label!r} is not a label of task {task.name!r}; expected one of {task.labels}",
        )
    return body if label == body.label else body.model_copy(update={"label": label})


def _replay_of(session: Session, case: Case, body: LabelCreate, who: Principal) -> bool:
    """True when ``body`` repeats the call that labelled ``case`` (by the same key)."""
    if case.label_id is None:
        return False
    first = session.get(Label, case.label_id)
    return (
        first is not None
        and first.lease_id == body.lease_id
        and first.label == body.label
        and first.key_id == who.id
    )


def label_case(
    db: Database, store: ModelStore, case_id: str, body: LabelCreate, who: Principal
) -> CaseDetail:
    """Record a reviewer's label under their lease; a final label teaches the model.

    The label is the reviewer's opinion; it becomes the case's final label (appended to
    the label log) when the case has the opinions it needs and they agree, see
    :mod:`api.services.quality`. Otherwise the case goes back to the queue for another
    reviewer (or, when its reviewers disagreed, for a lead).

    The same call repeated answers as the first: also when the repeats race each other
    (a client retrying a call that timed out), where the one that lost finds the case
    changed under it (a conflict, or on PostgreSQL the opinion's unique key) and then
    finds its own opinion stored.
    """
    try:
        return _label_case(db, store, case_id, body, who)
    except (Conflict, IntegrityError) as exc:
        with db.read() as session:
            mine = _own_opinion(session, case_id, who)
            if not _repeats(mine, body):
                if mine is not None:  # a call of this key's own got there first
                    raise Conflict(
                        f"you already labelled case {case_id} ({mine.label!r})"
                    ) from exc
                if isinstance(exc, IntegrityError):  # another call changed the case first
                    raise Conflict(f"case {case_id} changed while labelling it: try again") from exc
                raise
            task, case, routing = load_case(session, case_id)
        return case_detail(task, case, routing, store.get(task))


def _own_opinion(session: Session, case_id: str, who: Principal) -> Opinion | None:
    """``who``'s opinion on the case (at most one: unique per case and key)."""
    return session.exec(
        select(Opinion).where(Opinion.case_id == case_id, Opinion.key_id == who.id)
    ).first()


def _repeats(opinion: Opinion | None, body: LabelCreate) -> bool:
    """Whether ``body`` is the call that gave ``opinion`` (same lease, same label)."""
    return opinion is not None and (opinion.lease_id, opinion.label) == (body.lease_id, body.label)


def _label_case(
    db: Database, store: ModelStore, case_id: str, body: LabelCreate, who: Principal
) -> CaseDetail:
    with db.read() as session:
        task, case, routing = load_case(session, case_id)
        body = _checked(task, body)
        if case.label is not None or case.opinions:
            mine = _own_opinion(session, case_id, who)
            if mine is not None:
                if _repeats(mine, body):
                    return case_detail(task, case, routing, store.get(task))  # a repeated call
                raise Conflict(f"you already labelled case {case_id}")
        if case.label is not None:
            if _replay_of(session, case, body, who):
                return case_detail(task, case, routing, store.get(task))
            raise Conflict(f"case {case_id} is already labelled")
        gold = None if case.queued else quality.gold_label(session, case_id)
        if not case.queued and gold is None:
            raise Conflict(f"case {case_id} is not waiting for review")
        lease = session.execute(_LEASE, {"lease": body.lease_id}).first()
        if lease is None or lease.case_id != case_id or lease.key_id != who.id:
            raise Conflict(f"lease {body.lease_id} on case {case_id} is not held by this key")
        if lease.outcome == "released":  # given back: only a new claim labels it
            raise Conflict(f"lease {body.lease_id} on case {case_id} was released")
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
    held_by = {"case": case_id, "prior": len(prior), "lease": body.lease_id, "now": now}
    with db.write() as session:
        if outcome.ask_second and not quality.take_second_opinion_budget(session, task):
            outcome = quality.Outcome(final=body.label)  # the budget is spent: the label stands
        if outcome.final is None:
            _hold_opinion(session, task, case, body, who, lease, outcome, held_by)
            return case_detail(task, case, routing, store.get(task))
        final = outcome.final
        author = quality.final_author(prior, body.label, final, who)
        claimed = session.execute(
            _FINAL_LABEL, {**held_by, "final": final, "author": author.name}
        ).rowcount  # type: ignore[attr-defined]
        if claimed != 1:
            now_held = session.get(Case, case_id)
            if now_held is not None and now_held.leased_by == who.id:  # by a newer claim of yours
                raise Conflict(
                    f"your lease {body.lease_id} on case {case_id} expired and you claimed "
                    f"the case again: label it under lease {now_held.lease_id}"
                )
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
        session.execute(
            _LINK_LABEL,
            {
                "case": case_id,
                "new_label_id": entry.id,
                "new_status": case.status,
                "new_decision": case.decision,
                "new_decided_at": case.decided_at,
            },
        )
        session.execute(_END_LEASE, {"lease": body.lease_id, "now": now, "how": "labelled"})
        wrong = routing.audit and final != routing.suggestion
        task.n_labels = session.execute(
            _COUNT_LABEL,
            {
                "task": task.id,
                "pending": int(routing.route != "auto"),
                "audited": int(routing.audit),
                "wrong": int(wrong),
            },
        ).scalar_one()
        case.label, case.labelled_by, case.labelled_at = final, author.name, now
        if was_pending:
            webhooks.emit(
                session,
                task,
                "case.decided",
                lambda: webhooks.case_data(task, case, routing),
                case_id=case_id,
            )
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
    lease: Row,
    outcome: quality.Outcome,
    held_by: dict,
) -> None:
    """Keep a non-final opinion and put the case back in the queue for the next reviewer.

    ``held_by`` names the case, its opinions so far, the lease and the time (see
    :data:`_HELD`).
    """
    now = held_by["now"]
    values: dict = {
        "opinions": _case.c.opinions + 1,
        "lease_id": None,
        "lease_expires_at": None,
        "leased_by": None,
    }
    if outcome.ask_second:
        values["second_opinion"] = True
    if outcome.escalate:
        values["escalated"] = True
        values["priority"] = _case.c.priority - 1.0  # leads see disagreements first
    held = session.execute(update(_case).where(_HELD).values(**values), held_by).rowcount  # type: ignore[attr-defined]
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
    session.execute(_END_LEASE, {"lease": body.lease_id, "now": now, "how": "opinion"})
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
    lease: Row,
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
    return quality.as_answered(case_detail(task, case, routing), body.label, who.name, now)


def _record_gold_answer(
    db: Database,
    task: Task,
    case: Case,
    body: LabelCreate,
    who: Principal,
    gold: str,
    lease: Row,
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
        session.execute(_END_LEASE, {"lease": body.lease_id, "now": now, "how": "labelled"})
        audit.record(
            session, who, "case.opinion", task=task, subject=case.id,
            after={"label": body.label, "lease_id": body.lease_id, "gold": True},
        )  # fmt: skip


def _emit_disagreement(session: Session, task: Task, case: Case, routing: Routing) -> None:
    def data() -> dict:
        return webhooks.case_data(
            task, case, routing, automated_decision=routing.suggestion, audit_label=case.label
        )

    webhooks.emit(session, task, "audit.disagreed", data, case_id=case.id)


def correct_label(
    db: Database, store: ModelStore, case_id: str, body: Correction, who: Principal
) -> CaseDetail:
    """Append a correction of a case's label; the model and the evidence follow it."""
    with db.read() as session:
        task, case, routing = load_case(session, case_id)
        body = _checked(task, body)
        if case.label_id is None and case.opinions:
            _change_answer(db, task, case, body, who, gold=None)
            return case_detail(task, case, routing, store.get(task))
        if case.label_id is None:
            gold = quality.gold_label(session, case_id)
            if gold is None:
                raise Conflict(f"case {case_id} has no label to correct")
            answered_at = _change_answer(db, task, case, body, who, gold)
            detail = case_detail(task, case, routing)
            return quality.as_answered(detail, body.label, who.name, answered_at)
        if case.erased_at is not None:
            raise Conflict(f"case {case_id} was erased: no features to learn a correction from")
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
        reviser = who.id if previous.key_id == who.id else None
        quality.settle_opinions(session, case_id, body.label, reviser)
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


def _change_answer(
    db: Database, task: Task, case: Case, body: Correction, who: Principal, gold: str | None
) -> float:
    """Change the caller's answer that is not final: an opinion on a case waiting for
    more (``gold`` None), or an answer to a gold case (checked again against ``gold``).
    Nothing reaches the label log; the audit trail records the change. Returns when the
    answer was first given."""
    with db.write() as session:
        if gold is None:
            answer = session.exec(
                select(Opinion).where(
                    Opinion.case_id == case.id,
                    Opinion.key_id == who.id,
                    Opinion.role == "review",
                    col(Opinion.final_label).is_(None),
                )
            ).first()
            missing = "label of yours"
        else:
            answer = quality.gold_answer(session, case.id, who.id)
            missing = "label"  # as for any case without a label: gold must not stand out
        if answer is None:
            raise Conflict(f"case {case.id} has no {missing} to correct")
        if answer.label != body.label:
            before, answer.label = answer.label, body.label
            if gold is not None:
                answer.agrees = body.label == gold
            session.add(answer)
            audit.record(
                session, who, "case.corrected", task=task, subject=case.id,
                before={"label": before},
                after={"label": body.label, "opinion" if gold is None else "gold": True},
            )  # fmt: skip
        return answer.created_at


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
) -> Row:
    """Append one entry to the label log (in the caller's transaction) and return it
    (the row as stored, with the label's columns as attributes)."""
    row: dict[str, Any] = {
        "task_id": task.id,
        "case_id": case.id,
        "label": label,
        "kind": kind,
        "key_id": who.id,
        "labelled_by": who.name,
        "lease_id": lease_id,
        "comment": comment,
        "created_at": now,
        "corrects": corrects,
        "route": routing.route,
        "suggestion": routing.suggestion,
        "confidence": routing.confidence,
        "propensity": routing.propensity,
        "audit": routing.audit,
        "audit_weight": routing.audit_weight,
        "guarded": held_by_rule(routing.reasons),
    }
    return session.execute(_APPEND_LABEL, row).one()


def _learn(
    db: Database,
    store: ModelStore,
    task: Task,
    case: Case,
    routing: Routing,
    entry: Row,
    who: Principal,
) -> CaseDetail:
    """Apply a committed label to the live model, then refresh the task's aggregates.

    ``task`` is the row as the label's transaction left it (its ``n_labels`` counts
    this label); ``case`` carries the label.
    """
    live = store.get(task)
    assert live is not None and entry.id is not None
    applied = store.apply(live, entry, case.features)  # elsewhere the leader applies it
    if applied or store.leader:  # on the leader its poll may have applied the label first:
        # record the progress (a mode change, a curve point) here too, so it is stored
        # before this answer either way (the two take turns; the second finds it done)
        record_progress(db, task.name, live, seen=task)
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
            mine = lease is not None and lease.key_id == who.id and lease.case_id == case_id
            if mine and lease.outcome == "released":  # type: ignore[union-attr]
                return  # a repeated release (say, after a lost response) is a no-op
            gold = mine and lease.outcome is None and quality.gold_label(session, case_id)  # type: ignore[union-attr]
            if not gold:  # a gold case's lease is its reviewer's alone: not on the case row
                if mine and lease.outcome == "labelled":  # type: ignore[union-attr]
                    raise Conflict(f"case {case_id} was labelled under lease {lease_id}: "
                                   "nothing to give back")  # fmt: skip
                raise Conflict(f"lease {lease_id} on case {case_id} is not held by this key")
        session.exec(  # type: ignore[call-overload]
            update(Lease).where(col(Lease.id) == lease_id).values(ended_at=now, outcome="released")
        )
        audit.record(
            session, who, "case.released", task=task, subject=case_id,
            after={"lease_id": lease_id},
        )  # fmt: skip
