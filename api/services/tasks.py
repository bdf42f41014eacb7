"""Tasks: create, read, change settings, and keep the task's mode in step with evidence."""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from api.errors import Conflict, InvalidInput, NotFound
from api.live import LiveModel, ModelStore
from api.schemas import History, HistoryEntry, TaskCreate, TaskPublic, TasksPublic, TaskUpdate, iso
from api.security import Principal
from api.services import audit, webhooks
from api.tables import Task, TaskHistory
from learner import InvalidSchema, parse_rules, parse_schema, schema_to_json
from learner.controller import TaskGovernor


def get_task(session: Session, name: str) -> Task:
    """The task named ``name``."""
    task = session.exec(select(Task).where(Task.name == name)).first()
    if task is None:
        raise NotFound(f"task {name!r} not found")
    return task


def task_public(task: Task, store: ModelStore) -> TaskPublic:
    live = store.get(task)
    return TaskPublic(
        name=task.name,
        labels=list(task.labels),
        features=task.features,
        target_error=task.target_error,
        audit_rate=task.audit_rate,
        min_labels=task.min_labels,
        threshold=task.threshold,
        threshold_policy=task.threshold_policy,  # type: ignore[arg-type]
        threshold_in_force=task.threshold_in_force,
        mode_reason=current_reason(task, live),
        delta=task.delta,
        model=task.model_family,
        rules=list(task.rules),
        mode=task.mode,  # type: ignore[arg-type]
        automation=task.automation,  # type: ignore[arg-type]
        model_version=live.version if live else 0,
        created_at=iso(task.created_at),
        labels_per_case=task.labels_per_case,
        second_opinion_confidence=task.second_opinion_confidence,
        second_opinion_agreement=task.second_opinion_agreement,
        second_opinion_share=task.second_opinion_share,
        gold_rate=task.gold_rate,
    )


def create_task(session: Session, body: TaskCreate, actor: Principal | None = None) -> Task:
    features = None
    if body.features is not None:
        try:
            features = schema_to_json(parse_schema(body.features))
        except InvalidSchema as exc:
            raise InvalidInput(["features", exc.field], exc.reason) from exc
    rules = _checked_rules(body.rules, features)
    now = time.time()
    task = Task(
        name=body.name,
        labels=body.labels,
        features=features,
        target_error=body.target_error,
        audit_rate=body.audit_rate,
        min_labels=body.min_labels,
        threshold=body.threshold,
        threshold_policy=body.threshold_policy,
        delta=body.delta,
        model_family=body.model,
        rules=rules,
        created_at=now,
        updated_at=now,
        labels_per_case=body.labels_per_case,
        second_opinion_confidence=body.second_opinion_confidence,
        second_opinion_agreement=body.second_opinion_agreement,
        second_opinion_share=body.second_opinion_share,
        gold_rate=body.gold_rate,
        automation=body.automation,
    )
    task.mode_reason = f"cold start: 0 of {task.min_labels} labels"
    session.add(task)
    try:
        session.flush()
    except IntegrityError as exc:
        raise Conflict(f"task {body.name!r} already exists") from exc
    record_history(session, task, f"task created in mode {task.mode}")
    after = _settings(task)
    audit.record(session, actor, "task.created", task=task, subject=task.name, after=after)
    return task


AUDITED_SETTINGS = (
    "labels", "features", "target_error", "audit_rate", "min_labels", "threshold",
    "threshold_policy", "delta", "model_family", "rules", "automation",
)  # fmt: skip


def _settings(task: Task) -> dict:
    """The task's settings as an audit row records them."""
    extra = ("labels_per_case", "second_opinion_confidence", "second_opinion_agreement",
             "second_opinion_share", "gold_rate")  # fmt: skip
    names = AUDITED_SETTINGS + tuple(n for n in extra if hasattr(task, n))
    return {name: getattr(task, name) for name in names}


def list_tasks(session: Session, store: ModelStore) -> TasksPublic:
    tasks = session.exec(select(Task).order_by(col(Task.name))).all()
    return TasksPublic(data=[task_public(t, store) for t in tasks], count=len(tasks))


def _checked_rules(rules: list[Any], features: dict | None) -> list[dict]:
    """The rules as stored, checked against the task's schema when it has one (422 naming
    ``rules[i]``)."""
    raw = [rule.model_dump() for rule in rules]
    try:
        parse_rules(raw, parse_schema(features) if features is not None else None)
    except InvalidSchema as exc:
        raise InvalidInput([exc.field], exc.reason) from exc
    return raw


def update_task(
    session: Session,
    store: ModelStore,
    name: str,
    body: TaskUpdate,
    actor: Principal | None = None,
) -> Task:
    task = get_task(session, name)
    changes = body.model_dump(exclude_unset=True, exclude_none=True)
    if "rules" in changes:  # guardrails change from the next case on
        changes["rules"] = _checked_rules(body.rules or [], task.features)
    before = {field: getattr(task, field) for field in changes}
    for field, value in changes.items():
        setattr(task, field, value)
    task.updated_at = time.time()
    task.settings_version += 1
    session.add(task)
    live = store.get(task)
    if live is not None:  # the other processes align theirs at their next poll
        store.align_settings(live, task, record=True)
    if changes:
        summary = ", ".join(f"{k}={v}" for k, v in sorted(changes.items()))
        changed_mode = sync_task(session, task, live, f"settings changed: {summary}")
        if not changed_mode and {"target_error", "delta"} & changes.keys():
            # the promise changed though mode and threshold did not: in the history too
            reason = f"{current_reason(task, live)} (settings changed: {summary})"
            _history(session, task, reason, **_evidence(task, live))
        audit.record(
            session, actor, "task.changed", task=task, subject=task.name, before=before,
            after=changes,
        )  # fmt: skip
    return task


def effective_state(task: Task, live: LiveModel | None) -> tuple[str, float | None, str]:
    """The mode, threshold in force and reason that routing follows now.

    The admin's kill switch overrides everything; a fixed-threshold task automates once
    out of its cold start; a certified task follows its governor.
    """
    n_labels = live.labelled if live else 0
    if task.automation == "off":
        return "assist", None, "automation switched off by an admin"
    if n_labels < task.min_labels:
        return "assist", None, f"cold start: {n_labels} of {task.min_labels} labels"
    if task.threshold_policy == "fixed":
        return "automated", task.threshold, f"fixed threshold {task.threshold:g}"
    if live is None:
        return "assist", None, "no model yet"
    governor = live.governor
    cert = governor.certificate
    if governor.mode == "assist":
        if cert.threshold is None:  # "no threshold certified: best bound ..."
            return "assist", None, cert.reason
        return "assist", None, f"not automated yet: {cert.reason} must hold after one more error"
    if governor.mode == "automated" and cert.threshold == governor.threshold:
        # today's evidence: the threshold's own check ("threshold 0.9 (bound ...)"), or, just
        # after certifying, the scan's certificate ("certified threshold 0.9 (bound ...)")
        reason = cert.reason if cert.reason.startswith("certified") else f"certified {cert.reason}"
        return "automated", governor.threshold, reason
    return governor.mode, governor.threshold, live.mode_reason or cert.reason


def current_reason(task: Task, live: LiveModel | None) -> str | None:
    """Why the task is in its stored mode, in today's words ("cold start: 12 of 50 labels").

    The row's ``mode_reason`` is written with each migration; between them the counts in
    the reason move with every label, so they are read from the live model instead of
    being written to the row on every label.
    """
    mode, threshold, reason = effective_state(task, live)
    if (mode, threshold) != (task.mode, task.threshold_in_force):
        return task.mode_reason
    if mode == "suspended" and live is not None:  # why, and what it waits for now
        return f"{reason}; {to_resume(live.governor)}"
    if mode == "automated" and live is not None and task.threshold_policy == "certified":
        governor, moved = live.governor, live.inputs_moved
        raised = governor.audit_rate(task.audit_rate, moved)
        if raised > task.audit_rate:  # the drift warning's audits: say why so many
            return f"{reason}; audits raised to rate {raised:g}: {governor.raised_audits(moved)}"
    return reason


def to_resume(governor: TaskGovernor) -> str:
    """What a suspended task waits for, on today's evidence."""
    if governor.fresh_labels < governor.min_labels:
        return f"resumes after {governor.min_labels} fresh labels ({governor.fresh_labels} so far)"
    cert = governor.certificate
    if cert.threshold is None:  # "no threshold certified: best bound ..."
        return f"not re-certified yet: {cert.reason}"
    return f"not re-certified yet: {cert.reason} must hold after one more error"


def sync_due(task: Task, live: LiveModel) -> bool:
    """True when the task row lags the evidence: a migration waits to be recorded, or the
    mode or threshold in force moved (cheap: no database)."""
    if live.migrations:
        return True
    mode, threshold, _ = effective_state(task, live)
    return (mode, threshold) != (task.mode, task.threshold_in_force)


def sync_task(
    session: Session, task: Task, live: LiveModel | None, cause: str, covers: int | None = None
) -> bool:
    """Bring the task row's mode and threshold in line with the evidence, recording why;
    whether anything moved.

    Each governor migration becomes a history row, once: one caused by a label the
    history already covers (``task.history_label_id``; another process folded it first)
    is skipped. ``covers``: the caller folded the log up to this label id and its
    migrations are all in ``live`` (an import, in the transaction that stores the labels).
    A change that no migration explains (the kill switch, a fixed threshold, cold start)
    gets one row naming ``cause``.
    """
    taken = live.take_migrations() if live is not None else []
    migrations = [m for at, m in taken if at is None or at > task.history_label_id]
    causes = [at for at, _ in taken if at is not None]
    task.history_label_id = max([task.history_label_id, covers or 0, *causes])
    follows_governor = task.automation == "on" and task.threshold_policy == "certified"
    moved = follows_governor and bool(migrations)
    for m in migrations if follows_governor else []:
        before = task.mode
        was = {"mode": task.mode, "threshold": task.threshold_in_force}
        task.mode, task.threshold_in_force, task.mode_reason = m.mode, m.threshold, m.reason
        _history(session, task, m.reason, n=m.n, errors=m.errors, upper=m.upper)
        _mode_event(session, task, before, m.reason)
        _audit_migration(session, task, was, m.reason, n=m.n, errors=m.errors, upper=m.upper)
    mode, threshold, reason = effective_state(task, live)
    if (mode, threshold) != (task.mode, task.threshold_in_force):
        moved = True
        before = task.mode
        was = {"mode": task.mode, "threshold": task.threshold_in_force}
        task.mode, task.threshold_in_force, task.mode_reason = mode, threshold, reason
        evidence = _evidence(task, live)
        _history(session, task, f"{reason} ({cause})", **evidence)
        _mode_event(session, task, before, f"{reason} ({cause})")
        _audit_migration(session, task, was, f"{reason} ({cause})", **evidence)
    session.add(task)  # written only if something changed (see current_reason)
    return moved


def _evidence(task: Task, live: LiveModel | None) -> dict[str, Any]:
    """The governor's evidence when the mode is the governor's (:func:`effective_state`
    past the kill switch, the cold start and a fixed threshold, which rest on no
    certificate): what its reason quotes."""
    governed = task.automation == "on" and task.threshold_policy == "certified"
    if live is None or not governed or live.labelled < task.min_labels:
        return {}
    cert = live.governor.certificate
    return {"n": cert.n, "errors": cert.errors, "upper": cert.upper}


def _audit_migration(
    session: Session, task: Task, was: dict, reason: str, **evidence: object
) -> None:
    """An audit row for a mode or threshold migration (the system decided it)."""
    now = {"mode": task.mode, "threshold": task.threshold_in_force, "reason": reason}
    audit.record(
        session, None, "task.migrated", task=task, subject=task.name, before=was,
        after={**now, **evidence},
    )  # fmt: skip


def _mode_event(session: Session, task: Task, before: str, reason: str) -> None:
    """A ``task.mode_changed`` webhook event, when the mode (not only the threshold) moved."""
    if task.mode != before:
        data = {
            "mode": task.mode,
            "previous_mode": before,
            "threshold": task.threshold_in_force,
            "reason": reason,
        }
        webhooks.emit(session, task, "task.mode_changed", data)


def record_history(session: Session, task: Task, reason: str) -> None:
    _history(session, task, reason)


def _history(
    session: Session,
    task: Task,
    reason: str,
    *,
    n: int = 0,
    errors: int = 0,
    upper: float | None = None,
) -> None:
    session.add(
        TaskHistory(
            task_id=task.id,  # type: ignore[arg-type]
            at=time.time(),
            mode=task.mode,
            threshold=task.threshold_in_force,
            reason=reason,
            n=n,
            errors=errors,
            upper=upper,
        )
    )


def task_history(session: Session, name: str) -> History:
    task = get_task(session, name)
    rows = session.exec(
        select(TaskHistory).where(TaskHistory.task_id == task.id).order_by(col(TaskHistory.id))
    ).all()
    data = [
        HistoryEntry(
            at=iso(r.at),
            mode=r.mode,
            threshold=r.threshold,
            reason=r.reason,
            n=r.n,
            errors=r.errors,
            upper=r.upper,
        )
        for r in rows
    ]
    return History(data=data, count=len(data))
