"""Cases: validate, score, route and store; read back with their labels."""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from types import SimpleNamespace
from typing import Any

from sqlalchemy import bindparam, text, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from api.db import Database, insert_rows
from api.errors import InvalidInput, NotFound
from api.live import LiveModel, ModelStore
from api.schemas import CaseCreate, CaseDetail, Contribution, Prediction, iso
from api.security import Principal
from api.services import audit, quality
from api.services.tasks import effective_state, to_resume
from api.tables import Case, Routing, Task
from learner import (
    FeatureSpec,
    InvalidFeatures,
    InvalidSchema,
    RoutingDecision,
    RoutingPolicy,
    Rule,
    apply_guardrails,
    format_bound,
    id_draw,
    infer_schema,
    parse_rules,
    queue_priority,
    review_sample_rate,
    route_case,
    schema_to_json,
    validate_features,
)


@dataclass
class Scored:
    """A case ready to store: its id, cleaned features and routing decision."""

    case_id: str
    item: CaseCreate
    features: dict
    decision: RoutingDecision
    model_version: int


COUNT_CASES = text(
    "UPDATE task SET n_cases = n_cases + :cases, n_auto = n_auto + :auto,"
    " n_pending = n_pending + :pending, n_queued = n_queued + :queued WHERE id = :id"
)


class RandomHex:
    """Random hex tokens of ``nbytes`` from the OS's CSPRNG, one ``os.urandom`` call per
    ``batch`` tokens: a call per token releases the GIL on the event loop, which then
    waits behind busy threads to take it back. A forked child draws fresh bytes.

    >>> token = RandomHex(12)
    >>> len(token()), token() != token()
    (24, True)
    """

    def __init__(self, nbytes: int, batch: int = 512) -> None:
        self.nbytes = nbytes
        self.size = nbytes * batch
        self._lock = threading.Lock()
        self._reset()
        os.register_at_fork(after_in_child=self._reset)

    def _reset(self) -> None:
        self._buffer, self._pos = b"", 0

    def __call__(self) -> str:
        with self._lock:
            if self._pos + self.nbytes > len(self._buffer):
                self._buffer, self._pos = os.urandom(self.size), 0
            start = self._pos
            self._pos += self.nbytes
            return self._buffer[start : self._pos].hex()


_case_token = RandomHex(8)


def new_case_id() -> str:
    """``c_`` + the time in milliseconds (12 hex digits) + 64 random bits: unique, not
    guessable, and in creation order, so a new case's rows land at the end of the
    indexes keyed by case id (case, routing, audit subject) instead of on a random page
    of each; on a large database, random ids made every insert touch (and log) a page
    of its own.

    >>> a, b = new_case_id(), new_case_id()
    >>> len(a), a[:2], a != b, a[:8] <= b[:8]
    (30, 'c_', True, True)
    """
    return f"c_{time.time_ns() // 1_000_000:012x}{_case_token()}"


#: While drift is suspected the governor raises the audit rate (TaskGovernor.audit_rate); a
#: call takes the raised rate for this many automated cases at most. The warning ends on
#: the labels of those audits, which come back after the call: auditing a whole batch of
#: 1,000 at the raised rate (every case, at the usual 5%) would spend a thousand labels on
#: one warning, most of them after it could have ended.
MAX_CASES_AT_RAISED_AUDIT_RATE = 20


def routing_policy(task: Task, live: LiveModel, oldest: float | None = None) -> RoutingPolicy:
    """The policy in force: the kill switch, cold start, then the fixed or certified rule.

    ``oldest`` (the creation time of the task's oldest queued case) turns the review
    sample on while the queue is behind (``learner.review_sample_rate``).
    """
    mode, threshold, reason = effective_state(task, live)
    if mode == "suspended":  # why, and what it waits for today (not only what suspended it)
        reason = f"{reason}; {to_resume(live.governor)}"
    certified = task.threshold_policy == "certified"
    # while drift is suspected, or the inputs moved, the governor audits more (propensity
    # recorded as drawn)
    moved = live.inputs_moved
    audit_rate = live.governor.audit_rate(task.audit_rate, moved) if certified else task.audit_rate
    raised = audit_rate > task.audit_rate
    return RoutingPolicy(
        threshold=1.0 if threshold is None else threshold,  # unused: nothing automates then
        min_labels=task.min_labels,
        audit_rate=audit_rate,
        automation_on=task.automation == "on",
        threshold_note="certified threshold" if certified else "threshold",
        hold_reason=None if mode == "automated" else reason,
        sample_rate=review_sample_rate(task.audit_rate, oldest, time.time()),
        audit_note=f"raised: {live.governor.raised_audits(moved)}" if raised else None,
    )


def _with_bound(decision: RoutingDecision, live: LiveModel, target: float) -> RoutingDecision:
    """State the certificate behind an automated decision in its first reason."""
    upper = live.governor.certificate.upper
    if decision.route != "auto" or upper is None:
        return decision
    first = f"{decision.reasons[0]} (bound {format_bound(upper, target)} <= {target:g})"
    return replace(decision, reasons=[first, *decision.reasons[1:]])


def ensure_schema(
    db: Database,
    store: ModelStore,
    task: Task,
    first_features: dict,
    loc: list,
    schema: dict[str, FeatureSpec] | None = None,
) -> Task:
    """Fix the task's schema from its first case (or as ``schema``, inferred from more
    rows than one) when none was declared."""
    if task.features is not None:
        return task
    return _fix_schema(db, store, task, _inferred(task, first_features, loc, schema))


def _inferred(
    task: Task, features: dict, loc: list, schema: dict[str, FeatureSpec] | None = None
) -> dict[str, FeatureSpec]:
    """The schema a first case implies (or ``schema``); a 422 at ``loc`` when it implies
    none, or one that the task's rules cannot compare with (``amount > 100`` and
    ``"amount": "lots"``)."""
    if schema is None:
        try:
            schema = infer_schema(features)
        except InvalidFeatures as exc:
            raise InvalidInput([*loc, *exc.loc], exc.reason) from exc
    try:
        parse_rules(task.rules, schema)
    except InvalidSchema as exc:
        reason = f"as the task's first case this fixes a schema that its {exc.field} cannot "
        reason += f"apply to: {exc.reason}"
        raise InvalidInput(loc, reason) from exc
    return schema


def _fix_schema(
    db: Database, store: ModelStore, task: Task, schema: dict[str, FeatureSpec]
) -> Task:
    with db.write() as session:
        session.exec(  # type: ignore[call-overload]
            update(Task)
            .where(col(Task.id) == task.id, col(Task.features).is_(None))
            .values(features=schema_to_json(schema))
        )
    store.tasks.forget(task.name)
    return store.tasks.get(task.name)


def _validated(
    schema: dict[str, FeatureSpec], features: dict, max_string_length: int, loc: list
) -> dict:
    """The case's features cleaned (:func:`validate_features`); a 422 at ``loc`` if not."""
    try:
        return validate_features(schema, features, max_string_length=max_string_length)
    except InvalidFeatures as exc:
        raise InvalidInput([*loc, *exc.loc], exc.reason) from exc


def score(
    task: Task,
    live: LiveModel,
    features: dict,
    case_id: str,
    max_string_length: int,
    loc: list,
    policy: RoutingPolicy | None = None,
    oldest: float | None = None,
    draw: float | None = None,
    watch: bool = False,
) -> tuple[dict, RoutingDecision, int]:
    """Validate features against the task's schema, then score and route them (under
    ``policy``, else the policy in force now, given the queue's ``oldest`` case).
    ``case_id`` is a :func:`new_case_id`: its random tail is the case's audit draw
    (unless ``draw`` is given). ``watch``: the case will be stored, so the input monitor
    of a certified task sees it (:meth:`LiveModel.watch`; a fixed rule's audit rate never
    follows it)."""
    clean = _validated(live.model.schema, features, max_string_length, loc)
    with live.lock:
        if watch and task.threshold_policy == "certified":
            live.watch(clean)
        proba = live.model.predict_proba_one(clean)
        version, labelled = live.version, live.labelled
        if policy is None:
            policy = routing_policy(task, live, oldest)
    decision = route_case(
        proba,
        policy=policy,
        n_labels=labelled,
        task=task.name,
        case_key=case_id,
        draw=id_draw(case_id) if draw is None else draw,  # the id's 64 random bits
    )
    if task.threshold_policy == "certified":
        decision = _with_bound(decision, live, task.target_error)
    if task.rules:
        decision = apply_guardrails(decision, guardrails(task, live), clean)
    return clean, decision, version


def rescored(
    task: Task, live: LiveModel | None, features: dict, case_id: str, draw: float = 1.0
) -> Any:
    """Today's model's scores and routing for stored ``features`` (checked when they were
    stored: no length limit again), as a namespace like a routing row; ``None`` without a
    model or when the features no longer fit the schema. ``draw``: as for :func:`score`
    (1.0: no audit)."""
    if live is None:
        return None
    try:
        _, d, version = score(task, live, features, case_id, 10**9, ["features"], draw=draw)
    except InvalidInput:
        return None
    return SimpleNamespace(
        route=d.route, suggestion=d.suggestion, confidence=d.confidence, proba=d.proba,
        threshold=d.threshold, audit=d.audit, reasons=list(d.reasons),
        propensity=d.propensity, model_version=version,
    )  # fmt: skip


def as_claimed(task: Task, live: LiveModel | None, case: Case, routing: Routing) -> Any:
    """A waiting case as a reviewer is handed it: scored by today's model, which may have
    learned much since the case arrived (a queue filled during the cold start would
    otherwise read "no suggestion yet" for ever; a gold case, scored the same way, does not
    stand out). The reasons are today's while today's model would also send the case to
    people; when it would now decide the case, the reasons it was queued for stay. An
    audit is shown as routed: the decision it checks was made then. Nothing is stored: a
    label's evidence is the case's routing as stored."""
    if routing.audit or not case.features:
        return routing
    now = rescored(task, live, case.features, case.id)
    if now is None or now.model_version == routing.model_version:
        return routing
    if now.route == "auto":
        now.reasons = list(routing.reasons)
    now.route, now.propensity = routing.route, routing.propensity
    return now


def guardrails(task: Task, live: LiveModel) -> list[Rule]:
    """The task's rules, their values cleaned as the schema cleans features: parsed once
    for the task's row and the model's schema (~2 µs a rule), not per case. The cache
    holds the very objects it was parsed from: a refreshed task row or a new model parses
    them again."""
    schema, cached = live.model.schema, live.rules
    if cached is None or cached[0] is not task.rules or cached[1] is not schema:
        cached = live.rules = (task.rules, schema, parse_rules(task.rules, schema))
    return cached[2]


def prepare(
    db: Database,
    store: ModelStore,
    task_name: str,
    items: Sequence[CaseCreate],
    *,
    max_string_length: int = 10_000,
    persist: bool = True,
    batch: bool = False,
) -> tuple[Task, LiveModel]:
    """The task and its model, the task's schema fixed from the first case when none was
    declared: only once every case of the call fits it (a rejected call fixes nothing),
    and never by a prediction (``persist=False``: it stores nothing). ``batch``: the
    items came as a body's ``cases`` (errors name ``cases``, the index, ``features``)."""
    task = store.tasks.get(task_name)
    if task.features is None:
        schema = _inferred(task, items[0].features, _loc(0, batch))
        for i, item in enumerate(items):
            _validated(schema, item.features, max_string_length, _loc(i, batch))
        if not persist:
            transient = task.model_copy(update={"features": schema_to_json(schema)})
            return transient, store.new_live(transient)
        task = _fix_schema(db, store, task, schema)
    live = store.get(task)
    assert live is not None
    return task, live


def _loc(index: int, batch: bool) -> list:
    return ["cases", index, "features"] if batch else ["features"]


def predict(
    db: Database, store: ModelStore, task_name: str, features: dict, max_string_length: int
) -> Prediction:
    task, live = prepare(
        db,
        store,
        task_name,
        [CaseCreate(features=features)],
        max_string_length=max_string_length,
        persist=False,
    )
    return _predicted(task, live, features, max_string_length)


def _predicted(task: Task, live: LiveModel, features: dict, max_string_length: int) -> Prediction:
    """The route a case would take, without the draws a sent case gets (an audit or a
    review sample): a prediction stores nothing, so it is audited by nobody."""
    _, decision, version = score(
        task, live, features, "predict", max_string_length, ["features"], draw=1.0
    )
    return _prediction(task, decision, version)


def predict_ready(
    store: ModelStore, task_name: str, features: dict, max_string_length: int
) -> Prediction | None:
    """:func:`predict` when it needs no database (settings cached, model loaded), so
    it can run on the event loop; ``None`` otherwise."""
    ready = store.ready(task_name)
    if ready is None:
        return None
    task, live = ready
    return _predicted(task, live, features, max_string_length)


async def submit_case_ready(
    db: Database, store: ModelStore, task_name: str, item: CaseCreate, max_string_length: int
) -> dict[str, Any] | None:
    """Route and store one new case without blocking the event loop: scored here, stored
    by the group commit (answered once committed). ``None`` when the database is needed
    first (settings not cached, model not loaded, an ``external_id`` to look up)."""
    if item.external_id is not None:
        return None
    ready = store.ready(task_name)
    if ready is None:
        return None
    task, live = ready
    cached, oldest = store.oldest_queued.at_hand(task.id)  # type: ignore[arg-type]  # stored: an id
    if not cached:
        return None
    case_id = new_case_id()
    clean, decision, version = score(
        task, live, item.features, case_id, max_string_length, ["features"], oldest=oldest,
        watch=True,
    )  # fmt: skip
    scored = [Scored(case_id, item, clean, decision, version)]
    publics, write = _case_writes(task, live, scored, oldest)
    await asyncio.wrap_future(db.group.submit(write))
    return publics[case_id]


def submit_cases(
    db: Database,
    store: ModelStore,
    task_name: str,
    items: Sequence[CaseCreate],
    *,
    max_string_length: int,
    batch: bool = False,
    retry: bool = True,
) -> list[tuple[dict[str, Any], bool]]:
    """Route and store cases; returns each case with ``True`` when it was created now.

    A case whose ``external_id`` was seen before is returned as first answered. Every
    case is validated before anything is written: one bad case rejects the call.
    ``batch``: as for :func:`prepare`.
    """
    task, live = prepare(
        db, store, task_name, items, max_string_length=max_string_length, batch=batch
    )
    existing = _existing(db, task, items)
    scored: list[Scored | dict[str, Any]] = []
    first_of: dict[str, int] = {}
    oldest = store.oldest_queued.get(task.id)  # type: ignore[arg-type]

    def policy_now() -> tuple[RoutingPolicy, str | None, int | None]:
        """The policy in force, the moved input it follows, and how many automated cases
        may take a rate raised on a drift warning (a raise for moved inputs lasts as the
        input monitor says)."""
        with live.lock:
            policy, moved = routing_policy(task, live, oldest), live.inputs_moved
        warned = policy.audit_rate > task.audit_rate and moved is None
        return policy, moved, MAX_CASES_AT_RAISED_AUDIT_RATE if warned else None

    # one policy for the call (~10 us a case otherwise, in a batch) until the inputs move
    policy, moved, boost_left = policy_now()
    for i, item in enumerate(items):
        if item.external_id in existing:
            scored.append(existing[item.external_id])
            continue
        if item.external_id is not None:
            if item.external_id in first_of:
                scored.append(scored[first_of[item.external_id]])  # type: ignore[arg-type]
                continue
            first_of[item.external_id] = i
        case_id = new_case_id()
        clean, decision, version = score(
            task, live, item.features, case_id, max_string_length, _loc(i, batch), policy,
            watch=True,
        )  # fmt: skip
        if live.inputs_moved != moved:  # a raise for moved inputs began or ended here
            policy, moved, boost_left = policy_now()
        elif boost_left is not None and decision.route == "auto":
            boost_left -= 1
            if not boost_left:  # the rest of the call at the task's own rate
                policy = replace(policy, audit_rate=task.audit_rate, audit_note=None)
                boost_left = None
        scored.append(Scored(case_id, item, clean, decision, version))
    fresh = [s for s in scored if isinstance(s, Scored)]
    fresh = list({s.case_id: s for s in fresh}.values())
    try:
        publics = _store(db, task, live, fresh, oldest)
    except IntegrityError:  # an external_id stored concurrently: answer with that one
        if not retry:
            raise
        return submit_cases(
            db, store, task_name, items, max_string_length=max_string_length, batch=batch,
            retry=False,
        )  # fmt: skip
    results: list[tuple[dict[str, Any], bool]] = []
    seen: set[str] = set()
    for s in scored:
        if isinstance(s, Scored):
            results.append((publics[s.case_id], s.case_id not in seen))
            seen.add(s.case_id)
        else:
            results.append((s, False))
    return results


def _existing(db: Database, task: Task, items: Sequence[CaseCreate]) -> dict[str, dict]:
    ids = {item.external_id for item in items if item.external_id is not None}
    if not ids:
        return {}
    with db.read() as session:
        rows = session.exec(
            select(Case, Routing)
            .join(Routing, col(Routing.case_id) == Case.id)
            .where(Case.task_id == task.id, col(Case.external_id).in_(ids))
        ).all()
    return {c.external_id: _as_first_answered(case_public(task, c, r), c) for c, r in rows}  # type: ignore[misc]


def _as_first_answered(answer: dict[str, Any], case: Case) -> dict[str, Any]:
    """A repeated ``external_id`` gets the first result (CONTRACT.md), as any retried call
    should: a case decided after it was created reads ``pending`` again, as it was
    answered then (``GET /v1/cases/{id}`` tells its state now)."""
    if case.decided_at is None or case.decided_at > case.created_at:
        answer.update(status="pending", decision=None)
    return answer


def _store(
    db: Database, task: Task, live: LiveModel, fresh: list[Scored], oldest: float | None = None
) -> dict[str, dict[str, Any]]:
    publics, write = _case_writes(task, live, fresh, oldest)
    if fresh:
        db.group.run(write)
    return publics


def _case_writes(
    task: Task, live: LiveModel, fresh: list[Scored], oldest: float | None = None
) -> tuple[dict[str, dict[str, Any]], CaseWrite]:
    """The cases as answered, and the write that stores them (for the group commit).

    ``oldest`` (the creation time of the task's oldest queued case) bounds the queue
    ageing under a backlog (:func:`learner.routing.queue_priority`). Automated cases are
    counted in the model's :class:`~learner.controller.AuditTally`, so that an audit
    records the cases it stands for."""
    tally = live.tally
    now = time.time()
    publics: dict[str, dict[str, Any]] = {}
    write = CaseWrite(task, audit.acting())
    for i, s in enumerate(fresh):
        d = s.decision
        decided = d.route == "auto"
        queued = not decided or d.audit
        at = now + i * 1e-6  # cases of a batch keep their order (exports sort by time)
        # plain rows, not table models: building a SQLModel object costs ~100 us a case
        case = {
            "id": s.case_id,
            "task_id": task.id,
            "external_id": s.item.external_id,
            "features": s.features,
            "created_at": at,
            "status": "decided" if decided else "pending",
            "decision": d.suggestion if decided else None,
            "decided_at": at if decided else None,
            "queued": queued,
            "priority": queue_priority(
                d.margin, now, audit=d.audit, sample=d.sample, oldest=oldest,
                scored=d.suggestion is not None,
            ),  # fmt: skip
        }
        routing = {
            "case_id": s.case_id,
            "route": d.route,
            "suggestion": d.suggestion,
            "confidence": d.confidence,
            "proba": d.proba,
            "threshold": d.threshold,
            "audit": d.audit,
            "reasons": list(d.reasons),
            "propensity": d.propensity,
            "audit_weight": tally.count(d.route, d.audit, d.confidence, d.threshold),
            "margin": d.margin,
            "model_version": s.model_version,
        }
        write.cases.append(case)
        write.routings.append(routing)
        write.n_auto += decided
        write.n_pending += not decided
        write.n_queued += queued
        row, routed = SimpleNamespace(**case), SimpleNamespace(**routing)
        publics[s.case_id] = case_public(task, row, routed)  # type: ignore[arg-type]
        write.trail.append(audit.routed_entry(case, routing))
    return publics, write


@dataclass
class CaseWrite:
    """Routed cases to store: their rows, the task's counters and the audit trail.

    The group commit stores the case writes of concurrent requests with
    :meth:`apply_many`: one multi-row insert per table, one counter update per task and
    one audit append per task and caller for the whole group.
    """

    task: Task
    actor: Principal | None
    cases: list[dict] = field(default_factory=list)
    routings: list[dict] = field(default_factory=list)
    trail: list[audit.Entry] = field(default_factory=list)
    n_auto: int = 0
    n_pending: int = 0
    n_queued: int = 0

    def __call__(self, session: Session) -> None:
        self.apply_many(session, [self])

    @staticmethod
    def apply_many(session: Session, writes: Sequence[CaseWrite]) -> list[None]:
        # plain-row inserts: the ORM's unit of work costs more than the rows
        cases = [row for w in writes for row in w.cases]
        if not cases:
            return [None] * len(writes)
        routings = [row for w in writes for row in w.routings]
        insert_rows(session, Case.__table__, cases)  # type: ignore[attr-defined]
        insert_rows(session, Routing.__table__, routings)  # type: ignore[attr-defined]
        counts: dict[int, dict] = {}
        trails: dict[tuple[int | None, str | None], tuple[CaseWrite, list[audit.Entry]]] = {}
        for w in writes:
            c = counts.setdefault(
                w.task.id,  # type: ignore[arg-type]
                {"id": w.task.id, "cases": 0, "auto": 0, "pending": 0, "queued": 0},
            )
            c["cases"] += len(w.cases)
            c["auto"] += w.n_auto
            c["pending"] += w.n_pending
            c["queued"] += w.n_queued
            key = (w.task.id, w.actor.id if w.actor else None)
            trails.setdefault(key, (w, []))[1].extend(w.trail)
        for task_id in sorted(counts):  # a fixed order: no deadlock between processes
            session.execute(COUNT_CASES, counts[task_id])
        for w, trail in trails.values():  # last: see api.services.audit
            audit.record_many(session, w.actor, w.task, trail)
        return [None] * len(writes)


def _scores(task: Task, routed: RoutingDecision | Routing, version: int) -> dict:
    """The fields a prediction and a stored case share (a decision and a routing row
    carry the same names)."""
    return {
        "task": task.name,
        "route": routed.route,
        "suggestion": routed.suggestion,
        "confidence": routed.confidence,
        "proba": routed.proba,
        "threshold": routed.threshold,
        "audit": routed.audit,
        "reasons": list(routed.reasons),
        "propensity": routed.propensity,
        "model_version": version,
    }


def _prediction(task: Task, d: RoutingDecision, version: int) -> Prediction:
    return Prediction(**_scores(task, d, version))


def case_public(task: Task, case: Case, routing: Routing) -> dict[str, Any]:
    """The case as answered: :class:`~api.schemas.CasePublic`'s fields, JSON-ready. A plain
    dict, because building and validating the model cost ~4.5 us a case in a batch of
    1,000 where the dict and its JSON cost ~2.5 (the values come from validated rows)."""
    answer = _scores(task, routing, routing.model_version)
    answer.update(
        id=case.id,
        external_id=case.external_id,
        status=case.status,
        decision=case.decision,
        created_at=iso(case.created_at),
    )
    return answer


def case_detail(
    task: Task, case: Case, routing: Routing, live: LiveModel | None = None
) -> CaseDetail:
    """The case with its features, label and (given a model) what drove the suggestion."""
    explanation: list[Contribution] = []
    if live is not None:
        with live.lock:
            pairs = live.model.explain_one(case.features)
        explanation = [Contribution(feature=f, contribution=c) for f, c in pairs]
    return CaseDetail(
        **case_public(task, case, routing),
        features=case.features,
        label=case.label,
        labelled_by=case.labelled_by,
        labelled_at=iso(case.labelled_at),
        explanation=explanation,
    )


_LOAD_CASE = (  # built once: the statement is on every review request's path
    select(Case, Routing, Task)
    .join(Routing, col(Routing.case_id) == Case.id)
    .join(Task, col(Task.id) == Case.task_id)
    .where(col(Case.id) == bindparam("case_id"))
)


def load_case(session: Session, case_id: str) -> tuple[Task, Case, Routing]:
    row = session.exec(_LOAD_CASE, params={"case_id": case_id}).first()
    if row is None:
        raise NotFound(f"case {case_id!r} not found")
    case, routing, task = row
    return task, case, routing


def get_case(db: Database, store: ModelStore, case_id: str, who: Principal) -> CaseDetail:
    """The case; a gold case that ``who`` answered as they see it (like any case they
    labelled: decided, with their label)."""
    with db.read() as session:
        task, case, routing = load_case(session, case_id)
        waiting = case.label is None and not case.queued  # gold cases are never queued
        answer = quality.gold_answer(session, case_id, who.id) if waiting else None
    detail = case_detail(task, case, routing, store.get(task))
    if answer is None:
        return detail
    return quality.as_answered(detail, answer.label, answer.reviewer or "", answer.created_at)
