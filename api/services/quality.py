"""Label quality: overlap, second opinions, lead decisions, gold cases, reviewer figures.

Every answer given through the queue is an :class:`~api.tables.Opinion`; only a case's
*final* label is appended to the label log (so only final labels teach the model and
feed the risk controller, and replaying the log rebuilds the same model). A case is
final when it has as many opinions as it needs (the task's ``labels_per_case``, or two
once a second opinion was asked for) and a strict majority of them agree; without a
majority it is escalated to a reviewer with the ``lead`` permission, whose answer is
final. The claim never hands a case to a reviewer who already gave an opinion on it
(:func:`claimable_by`, part of the claim statement; the unique constraint on
``opinion (case_id, key_id)`` backs it up).
"""

from __future__ import annotations

import random
import statistics
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

from sqlalchemy import ColumnElement, bindparam, exists, func, insert, true, update
from sqlalchemy import case as sql_case
from sqlmodel import Session, col, select

from api.db import Database
from api.errors import InvalidInput
from api.live import LiveModel, ModelStore
from api.schemas import (
    AgreementPublic,
    CaseDetail,
    GoldBatch,
    GoldPublic,
    GoldsPublic,
    ReviewerPair,
    ReviewerQuality,
    ReviewersPublic,
    iso,
)
from api.security import Principal
from api.services.keys import BOOTSTRAP_ADMIN
from api.tables import ApiKey, Case, GoldCase, Label, Lease, Opinion, Routing, Task
from learner.agreement import cohen_kappa, majority, summarize
from learner.schema import label_of

RECENT_ANSWERS = 50  # a reviewer's "recent agreement" looks at this many checked answers
MIN_RECENT = 10  # ... and needs at least this many before it may trigger second opinions
RECENT_SCAN = 500  # ... among their last this many answers
IDLE_GAP_SECONDS = 600.0  # longer gaps between a reviewer's labels are breaks
MIN_ACTIVE_SECONDS = 60.0  # less labelling time than this gives no labels-per-hour figure
ACTIVE_SECONDS = 3600.0  # a reviewer who claimed within this long can give a second opinion
REVIEWER_WINDOW = 100_000  # the newest answers behind the reviewer figures
AGREEMENT_WINDOW = 5000  # multi-opinion cases behind the agreement figures in /metrics
AGREEMENT_ROUTE_WINDOW = 50_000  # ... and behind GET /v1/tasks/{task}/agreement


def is_lead(who: Principal) -> bool:
    """Leads (and admins) decide cases whose reviewers disagreed."""
    return who.lead or who.role == "admin"


def claimable_by(lead: bool) -> ColumnElement[bool]:
    """The claim's filter: a case the reviewer (the ``reviewers`` parameter: their key id
    and those it replaced by rotation) gave no opinion on, and, unless a ``lead`` claims,
    not one waiting for a lead.

    One ``CASE`` on ``opinions``: fresh cases (the plain path) pass at once, the subquery
    runs only for cases that already have opinions, and PostgreSQL cannot turn it into an
    anti-join over every queued case.
    """
    answered = exists().where(
        col(Opinion.case_id) == Case.id,
        col(Opinion.key_id).in_(bindparam("reviewers", expanding=True)),
    )
    allowed = ~answered if lead else ~col(Case.escalated) & ~answered
    return sql_case((col(Case.opinions) == 0, true()), else_=allowed)


# --- deciding a case -------------------------------------------------------------------------
@dataclass(frozen=True)
class Outcome:
    """What a new opinion does to its case.

    ``final``: the case's final label (``None``: the case waits for more opinions);
    ``ask_second``: the opinion asks for a second one (subject to the task's budget);
    ``escalate``: the opinions disagree and a lead must decide.
    """

    final: str | None
    ask_second: bool = False
    escalate: bool = False


def decide(
    task: Task,
    case: Case,
    routing: Routing,
    prior: Sequence[str],
    label: str,
    recent_agreement: float | None,
) -> Outcome:
    """The outcome of ``label`` given the case's ``prior`` opinions (pure)."""
    if case.escalated:
        return Outcome(final=label)  # a lead's answer decides
    labels = [*prior, label]
    needed = max(task.labels_per_case, 2 if case.second_opinion else 1)
    if len(labels) < needed:
        return Outcome(final=None)
    if len(labels) == 1:
        confident = routing.confidence >= task.second_opinion_confidence
        contradicts = routing.suggestion is not None and label != routing.suggestion
        low = recent_agreement is not None and recent_agreement < task.second_opinion_agreement
        if (confident and contradicts) or low:
            return Outcome(final=None, ask_second=True)
        return Outcome(final=label)
    agreed = majority(labels)
    if agreed is None:
        return Outcome(final=None, escalate=True)
    return Outcome(final=agreed)


def recent_agreement(session: Session, task: Task, key_id: str) -> float | None:
    """Share of the reviewer's last checked answers (overlap, second opinions, leads,
    corrections, gold) that agreed with the final or gold label.

    Looks at the reviewer's last :data:`RECENT_SCAN` answers only (an index range), so
    the cost per label stays flat however many unchecked labels they gave.
    """
    recent = (
        select(Opinion.agrees)
        .where(Opinion.key_id == key_id, Opinion.task_id == task.id)
        .order_by(col(Opinion.id).desc())
        .limit(RECENT_SCAN)
    ).subquery()
    rows = session.exec(
        select(recent.c.agrees).where(recent.c.agrees.is_not(None)).limit(RECENT_ANSWERS)
    ).all()
    if len(rows) < MIN_RECENT:
        return None
    return sum(bool(a) for a in rows) / len(rows)


def other_reviewer_active(session: Session, task: Task, who: Principal) -> bool:
    """True when another key claimed a case of ``task`` in the last hour (a second opinion
    needs someone to give it: a lone reviewer's labels stand)."""
    since = time.time() - ACTIVE_SECONDS
    other = session.exec(
        select(Lease.id)
        .join(Case, col(Case.id) == Lease.case_id)
        .where(Case.task_id == task.id, Lease.key_id != who.id, col(Lease.claimed_at) > since)
        .limit(1)
    ).first()
    return other is not None


def take_second_opinion_budget(session: Session, task: Task) -> bool:
    """Count one more second opinion if the task's share allows it (atomic)."""
    taken = session.exec(  # type: ignore[call-overload]
        update(Task)
        .where(
            col(Task.id) == task.id,
            (col(Task.n_second_opinions) + 1)
            <= col(Task.second_opinion_share) * (col(Task.n_labels) + 1),
        )
        .values(n_second_opinions=Task.n_second_opinions + 1)
    ).rowcount
    return bool(taken == 1)


_ADD_OPINION = insert(Opinion.__table__)  # type: ignore[attr-defined]


def add_opinion(
    session: Session,
    task: Task,
    case_id: str,
    who: Principal,
    label: str,
    role: str,
    now: float,
    *,
    lease_id: str | None,
    claimed_at: float | None,
    final_label: str | None = None,
) -> None:
    session.execute(
        _ADD_OPINION,
        {
            "task_id": task.id,
            "case_id": case_id,
            "key_id": who.id,
            "reviewer": who.name,
            "label": label,
            "role": role,
            "lease_id": lease_id,
            "claimed_at": claimed_at,
            "created_at": now,
            "final_label": final_label,
            "agrees": None if final_label is None else label == final_label,
        },
    )


def settle_opinions(
    session: Session, case_id: str, final: str, reviser: str | None = None
) -> None:
    """Record the case's final label on its opinions, and whether each agreed.

    ``reviser``: the key of a reviewer who corrected their own label to ``final``. Their
    answer changed, which is no check on them: their opinions take the new label and
    stay settled (or not) as they were.
    """
    opinions = update(Opinion).where(col(Opinion.case_id) == case_id, col(Opinion.role) != "gold")
    if reviser is not None:
        session.exec(opinions.where(col(Opinion.key_id) == reviser).values(label=final))  # type: ignore[call-overload]
        opinions = opinions.where(col(Opinion.key_id) != reviser)
    session.exec(opinions.values(final_label=final, agrees=col(Opinion.label) == final))  # type: ignore[call-overload]


def final_author(prior: Sequence[Opinion], label: str, final: str, who: Principal) -> Principal:
    """Who the final label is logged under: ``who`` if they gave it, else the first
    reviewer who did."""
    if label == final:
        return who
    for opinion in prior:
        if opinion.label == final:
            name = opinion.reviewer or opinion.key_id
            return Principal(id=opinion.key_id, name=name, role="reviewer")
    return who


# --- gold cases ------------------------------------------------------------------------------
def create_gold(db: Database, store: ModelStore, task_name: str, body: GoldBatch) -> GoldsPublic:
    """Store gold cases: scored like any case (so they look like one), never queued."""
    from api.services import audit as trail
    from api.services.cases import new_case_id, prepare, score

    labels = store.tasks.get(task_name).labels  # checked first: a rejected call fixes no schema
    for i, item in enumerate(body.cases):
        label = label_of(labels, item.label)
        if label is None:
            raise InvalidInput(
                ["cases", i, "label"], f"{item.label!r} is not a label of task {task_name!r}"
            )
        item.label = label
    task, live = prepare(db, store, task_name, body.cases, batch=True)  # type: ignore[arg-type]
    now = time.time()
    rows: list[GoldPublic] = []
    with db.write() as session:
        for i, item in enumerate(body.cases):
            case_id = new_case_id()
            clean, d, version = score(
                task, live, item.features, case_id, 10_000, ["cases", i, "features"]
            )
            route, audit, reasons = d.route, d.audit, list(d.reasons)
            if route == "auto" and not audit:  # shown like an audit sample of an automated case
                audit = True
                reasons.append(f"audit sample (rate {task.audit_rate:g})")
            session.add(
                Case(
                    id=case_id,
                    task_id=task.id,  # type: ignore[arg-type]
                    features=clean,
                    created_at=now,
                    status="pending",
                    queued=False,
                )
            )
            session.add(
                Routing(
                    case_id=case_id,
                    route=route,
                    suggestion=d.suggestion,
                    confidence=d.confidence,
                    proba=d.proba,
                    threshold=d.threshold,
                    audit=audit,
                    reasons=reasons,
                    propensity=d.propensity,
                    margin=d.margin,
                    model_version=version,
                )
            )
            session.flush()
            session.add(
                GoldCase(case_id=case_id, task_id=task.id, label=item.label, created_at=now)  # type: ignore[arg-type]
            )
            rows.append(GoldPublic(case_id=case_id, label=item.label, created_at=iso(now)))
        trail.record(
            session, trail.acting(), "gold.created", task=task, subject=task.name,
            after={"cases": {r.case_id: r.label for r in rows}},
        )  # fmt: skip
    return GoldsPublic(data=rows, count=len(rows))


def list_gold(session: Session, task: Task) -> GoldsPublic:
    golds = session.exec(
        select(GoldCase).where(GoldCase.task_id == task.id).order_by(col(GoldCase.created_at))
    ).all()
    answers: dict[str, list[bool]] = defaultdict(list)
    for case_id, agrees in session.exec(
        select(Opinion.case_id, Opinion.agrees).where(
            Opinion.task_id == task.id, Opinion.role == "gold"
        )
    ).all():
        answers[case_id].append(bool(agrees))
    data = [
        GoldPublic(
            case_id=g.case_id,
            label=g.label,
            created_at=iso(g.created_at),
            answers=len(answers[g.case_id]),
            correct=sum(answers[g.case_id]),
        )
        for g in golds
    ]
    return GoldsPublic(data=data, count=len(data))


def pick_gold(
    session: Session,
    task: Task,
    who: Principal,
    rng: random.Random,
    exclude: Sequence[str] = (),
) -> str | None:
    """A gold case of ``task`` that ``who`` has not answered (nor skipped: ``exclude``)
    yet, at the task's gold rate."""
    if task.gold_rate <= 0 or rng.random() >= task.gold_rate:
        return None
    answered = exists().where(
        col(Opinion.case_id) == GoldCase.case_id, col(Opinion.key_id).in_(who.identities)
    )
    held = exists().where(  # already on this reviewer's screen (say, prefetched)
        col(Lease.case_id) == GoldCase.case_id,
        col(Lease.key_id) == who.id,
        col(Lease.ended_at).is_(None),
        col(Lease.expires_at) > time.time(),
    )
    candidates = session.exec(
        select(GoldCase.case_id)
        .join(Case, col(Case.id) == GoldCase.case_id)
        .where(
            GoldCase.task_id == task.id,
            ~answered,
            ~held,
            col(GoldCase.case_id).not_in(exclude),
            col(Case.erased_at).is_(None),  # nobody can answer what they cannot see
        )
        .limit(50)
    ).all()
    return rng.choice(candidates) if candidates else None


def as_served(
    task: Task, live: LiveModel | None, case: Case, routing: Routing, created_at: float
) -> tuple[Any, Any]:
    """A gold case as a reviewer sees it: scored by today's model like every case handed
    out (:func:`api.services.cases.as_claimed`) and shown as created at ``created_at`` (the
    scoring stored when it was added, a model version of long ago and "cold start" among
    its reasons, would give it away). A case the model would decide is shown as an audit,
    as such a case reaches a reviewer. Nothing is stored."""
    from api.services.cases import rescored

    routed = rescored(task, live, case.features, case.id, draw=0.0)  # decided: an audit
    if routed is None:  # no model yet, or features that no longer fit the schema
        return case, routing
    audit = routed.audit = routed.audit or routed.route == "auto"
    shown = SimpleNamespace(
        id=case.id, external_id=None, features=case.features, created_at=created_at,
        status="decided" if audit else "pending", decision=routed.suggestion if audit else None,
        label=None, labelled_by=None, labelled_at=None,
    )  # fmt: skip
    return shown, routed


def gold_label(session: Session, case_id: str) -> str | None:
    gold = session.get(GoldCase, case_id)
    return None if gold is None else gold.label


def gold_answer(session: Session, case_id: str, key_id: str) -> Opinion | None:
    """``key_id``'s answer to the gold case ``case_id``, if it gave one."""
    return session.exec(
        select(Opinion).where(
            Opinion.case_id == case_id, Opinion.key_id == key_id, Opinion.role == "gold"
        )
    ).first()


def as_answered(detail: CaseDetail, label: str, reviewer: str, at: float) -> CaseDetail:
    """A gold case as the reviewer who answered it sees it: decided, with their label,
    like any case they labelled."""
    return detail.model_copy(
        update={
            "status": "decided",
            "decision": label,
            "label": label,
            "labelled_by": reviewer,
            "labelled_at": iso(at),
        }
    )


# --- reviewer figures ------------------------------------------------------------------------
def _labels_per_hour(times: list[float]) -> float | None:
    """Labelling speed: labels after the first per hour of the gaps between consecutive
    labels, breaks left out; ``None`` under :data:`MIN_ACTIVE_SECONDS` of such time (a
    handful of quick labels says nothing of an hour's pace).

    >>> _labels_per_hour([0.0, 30.0, 60.0, 90.0]), _labels_per_hour([0.0, 0.01, 0.02])
    (120.0, None)
    """
    times = sorted(times)
    gaps = [b - a for a, b in zip(times, times[1:], strict=False) if b - a <= IDLE_GAP_SECONDS]
    active = sum(gaps)
    return len(gaps) / active * 3600.0 if active >= MIN_ACTIVE_SECONDS else None


def reviewers(session: Session, task: Task) -> ReviewersPublic:
    """Per reviewer: agreement with final labels, with audits (lead decisions and
    corrections by others), with gold; labels per hour and time per case (over the task's
    newest :data:`REVIEWER_WINDOW` answers)."""
    rows = session.exec(
        select(Opinion, Case.escalated, Case.second_opinion, Case.opinions)
        .join(Case, col(Case.id) == Opinion.case_id)
        .where(Opinion.task_id == task.id)
        .order_by(col(Opinion.id).desc())
        .limit(REVIEWER_WINDOW)
    ).all()[::-1]
    by_key: dict[str, list[tuple[Opinion, bool, bool, int]]] = defaultdict(list)
    first_on_case: dict[str, int] = {}
    for opinion, escalated, second, n_opinions in rows:
        by_key[opinion.key_id].append((opinion, escalated, second, n_opinions))
        first_on_case.setdefault(opinion.case_id, opinion.id)  # type: ignore[arg-type]
    # final labels of a reviewer that someone else corrected later
    corrected: dict[str, int] = defaultdict(int)
    corrections = session.exec(
        select(Label.key_id, Label.corrects).where(
            Label.task_id == task.id, Label.kind == "correction"
        )
    ).all()
    corrected_ids = {c for _, c in corrections if c is not None}
    if corrected_ids:
        corrector = {c: k for k, c in corrections}
        for label_id, key_id in session.exec(
            select(Label.id, Label.key_id).where(col(Label.id).in_(corrected_ids))
        ).all():
            if key_id is not None and corrector.get(label_id) != key_id:
                corrected[key_id] += 1
    finals: dict[str, int] = defaultdict(int)
    for key_id, n in session.exec(
        select(Label.key_id, func.count())
        .where(Label.task_id == task.id, col(Label.kind).in_(("review", "assist", "audit")))
        .group_by(col(Label.key_id))
    ).all():
        if key_id is not None:
            finals[key_id] = n
    leads = {k.id for k in session.exec(select(ApiKey).where(col(ApiKey.lead).is_(True))).all()}
    data = []
    for key_id, items in by_key.items():
        real = [t for t in items if t[0].role != "gold"]
        gold = [t[0] for t in items if t[0].role == "gold"]
        checked = [o for o, *_ in real if o.agrees is not None]
        decided_by_lead = [
            o for o, esc, *_ in real if esc and o.role != "lead" and o.agrees is not None
        ]
        audited = len(decided_by_lead) + corrected[key_id]
        upheld = sum(bool(o.agrees) for o in decided_by_lead)
        times = [o.created_at for o, *_ in real]
        durations = [o.created_at - o.claimed_at for o, *_ in real if o.claimed_at is not None]
        recent = [o.agrees for o, *_ in items if o.agrees is not None][-RECENT_ANSWERS:]
        first = items[0][0]
        data.append(
            ReviewerQuality(
                key_id=key_id,
                reviewer=first.reviewer,
                labels=len(real),
                final_labels=finals[key_id],
                checked=len(checked),
                agreement_with_final=_share([bool(o.agrees) for o in checked]),
                audited=audited,
                agreement_with_audits=upheld / audited if audited else None,
                gold_answers=len(gold),
                gold_accuracy=_share([bool(o.agrees) for o in gold]),
                recent_agreement=_share([bool(a) for a in recent]),
                labels_per_hour=_labels_per_hour(times),
                seconds_per_case=statistics.median(durations) if durations else None,
                second_opinions_triggered=sum(
                    1 for o, _, second, _ in real if second and first_on_case[o.case_id] == o.id
                ),
                lead=key_id in leads,
            )
        )
    data.sort(key=lambda r: (-r.labels, r.reviewer or ""))
    return ReviewersPublic(task=task.name, data=data, count=len(data))


def _share(values: list[bool]) -> float | None:
    return sum(values) / len(values) if values else None


# --- agreement -------------------------------------------------------------------------------
def _opinion_items(
    session: Session, task: Task, limit: int | None = None
) -> list[list[tuple[str, str]]]:
    """(reviewer key, label) lists of the cases with two or more opinions, newest first."""
    cases = select(Case.id).where(Case.task_id == task.id, col(Case.opinions) >= 2)
    cases = cases.order_by(col(Case.created_at).desc())
    if limit is not None:
        cases = cases.limit(limit)
    case_ids = list(session.exec(cases).all())
    if not case_ids:
        return []
    grouped: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for chunk_start in range(0, len(case_ids), 900):
        chunk = case_ids[chunk_start : chunk_start + 900]
        for case_id, key_id, label in session.exec(
            select(Opinion.case_id, Opinion.key_id, Opinion.label)
            .where(col(Opinion.case_id).in_(chunk), col(Opinion.role) != "gold")
            .order_by(col(Opinion.id))
        ).all():
            grouped[case_id].append((key_id, label))
    return [v for v in grouped.values() if len(v) >= 2]


def agreement(session: Session, task: Task) -> AgreementPublic:
    """Raw agreement, Cohen's and Fleiss' kappa, the confusion matrix between reviewers,
    per label and per pair of labels and of reviewers (newest
    :data:`AGREEMENT_ROUTE_WINDOW` cases with two or more opinions)."""
    items = _opinion_items(session, task, AGREEMENT_ROUTE_WINDOW)
    labels = list(task.labels)
    summary = summarize([[label for _, label in item] for item in items], labels)
    label_pairs = []
    matrix = summary["confusion"]
    for i, a in enumerate(labels):
        for j in range(i, len(labels)):
            n = matrix[i][j] // 2 if i == j else matrix[i][j]
            if n:
                label_pairs.append({"a": a, "b": labels[j], "pairs": n})
    names = dict(session.exec(select(ApiKey.id, ApiKey.name)).all())
    names[BOOTSTRAP_ADMIN.id] = BOOTSTRAP_ADMIN.name
    per_pair: dict[tuple[str, str], list[tuple[str, str]]] = defaultdict(list)
    for item in items:
        for x in range(len(item)):
            for y in range(x + 1, len(item)):
                (ka, la), (kb, lb) = sorted([item[x], item[y]])
                per_pair[(ka, kb)].append((la, lb))
    reviewer_pairs = []
    for (ka, kb), pairs in sorted(per_pair.items(), key=lambda kv: -len(kv[1])):
        directed = [[0] * len(labels) for _ in labels]
        index = {label: i for i, label in enumerate(labels)}
        for la, lb in pairs:
            if la in index and lb in index:
                directed[index[la]][index[lb]] += 1
        reviewer_pairs.append(
            ReviewerPair(
                a=names.get(ka, ka),
                b=names.get(kb, kb),
                cases=len(pairs),
                agreement=sum(la == lb for la, lb in pairs) / len(pairs),
                cohen_kappa=cohen_kappa(directed),
            )
        )
    return AgreementPublic(
        task=task.name,
        labels=labels,
        cases=summary["items"],
        pairs=summary["pairs"],
        raw_agreement=summary["raw_agreement"],
        cohen_kappa=summary["cohen_kappa"],
        fleiss_kappa=summary["fleiss_kappa"],
        confusion=matrix,
        per_label=summary["per_label"],
        per_label_kappa=summary["per_label_kappa"],
        label_pairs=label_pairs,
        reviewer_pairs=reviewer_pairs,
        second_opinions=task.n_second_opinions,
        second_opinion_share=second_opinion_share(task),
        escalated=task.n_escalated,
    )


def second_opinion_share(task: Task) -> float:
    return task.n_second_opinions / task.n_labels if task.n_labels else 0.0


def agreement_headline(session: Session, task: Task) -> tuple[float | None, float | None]:
    """Raw agreement and Fleiss' kappa over the task's recent multi-opinion cases."""
    if task.labels_per_case == 1 and task.n_second_opinions == 0:
        return None, None
    items = _opinion_items(session, task, AGREEMENT_WINDOW)
    summary = summarize([[label for _, label in item] for item in items], list(task.labels))
    return summary["raw_agreement"], summary["fleiss_kappa"]
