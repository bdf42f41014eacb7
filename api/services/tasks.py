"""Tasks: create, read, change settings, and keep the task's mode in step with evidence."""

from __future__ import annotations

import time

from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from api.errors import Conflict, InvalidInput, NotFound
from api.live import ModelStore
from api.schemas import History, HistoryEntry, TaskCreate, TaskPublic, TasksPublic, TaskUpdate, iso
from api.tables import Task, TaskHistory
from learner import InvalidSchema, parse_rules, parse_schema, schema_to_json


def get_task(session: Session, name: str) -> Task:
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
        delta=task.delta,
        model=task.model_family,
        rules=list(task.rules),
        mode=task.mode,  # type: ignore[arg-type]
        automation=task.automation,  # type: ignore[arg-type]
        model_version=live.version if live else 0,
        created_at=iso(task.created_at),
    )


def create_task(session: Session, body: TaskCreate) -> Task:
    features = None
    if body.features is not None:
        try:
            features = schema_to_json(parse_schema(body.features))
        except InvalidSchema as exc:
            raise InvalidInput(["features", exc.field], exc.reason) from exc
    rules = [rule.model_dump() for rule in body.rules]
    try:
        parse_rules(rules, parse_schema(features) if features is not None else None)
    except InvalidSchema as exc:
        raise InvalidInput([exc.field], exc.reason) from exc
    now = time.time()
    task = Task(
        name=body.name,
        labels=body.labels,
        features=features,
        target_error=body.target_error,
        audit_rate=body.audit_rate,
        min_labels=body.min_labels,
        threshold=body.threshold,
        delta=body.delta,
        model_family=body.model,
        rules=rules,
        created_at=now,
        updated_at=now,
    )
    task.mode = expected_mode(task, 0)
    session.add(task)
    try:
        session.flush()
    except IntegrityError as exc:
        raise Conflict(f"task {body.name!r} already exists") from exc
    record_history(session, task, f"task created in mode {task.mode}")
    return task


def list_tasks(session: Session, store: ModelStore) -> TasksPublic:
    tasks = session.exec(select(Task).order_by(col(Task.name))).all()
    return TasksPublic(data=[task_public(t, store) for t in tasks], count=len(tasks))


def update_task(session: Session, store: ModelStore, name: str, body: TaskUpdate) -> Task:
    task = get_task(session, name)
    changes = body.model_dump(exclude_unset=True, exclude_none=True)
    for field, value in changes.items():
        setattr(task, field, value)
    task.updated_at = time.time()
    session.add(task)
    if changes:
        live = store.get(task)
        summary = ", ".join(f"{k}={v}" for k, v in sorted(changes.items()))
        refresh_mode(session, task, live.version if live else 0, f"settings changed: {summary}")
    return task


def expected_mode(task: Task, n_labels: int) -> str:
    """The mode a task with fixed-threshold routing should be in."""
    if task.automation == "off" or n_labels < task.min_labels:
        return "assist"
    return "automated"


def refresh_mode(session: Session, task: Task, n_labels: int, reason: str) -> None:
    """Move the task to the mode its evidence calls for, recording the migration."""
    mode = expected_mode(task, n_labels)
    if mode == task.mode:
        return
    if task.automation == "off":
        why = "automation switched off by an admin"
    elif mode == "assist":
        why = f"cold start: {n_labels} of {task.min_labels} labels"
    else:
        why = f"{n_labels} labels >= min_labels {task.min_labels}; fixed threshold in force"
    task.mode = mode
    session.add(task)
    record_history(session, task, f"{why} ({reason})")


def record_history(session: Session, task: Task, reason: str) -> None:
    session.add(
        TaskHistory(
            task_id=task.id,  # type: ignore[arg-type]
            at=time.time(),
            mode=task.mode,
            threshold=task.threshold,
            reason=reason,
            n=task.n_audited,
            errors=task.n_audit_errors,
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
