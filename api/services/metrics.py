"""Task metrics and the learning curve, read from maintained aggregates."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from sqlmodel import Session, col, select

from api.db import Database, lock_task_progress
from api.live import LiveModel, ModelStore
from api.schemas import Curve, CurvePointPublic, Metrics, QueueStatus, iso
from api.services import quality
from api.services.tasks import get_task, sync_due, sync_task
from api.tables import CurvePoint, Label, Task

CURVE_WINDOW = 200  # labels behind each point's prequential accuracy
NOT_EVIDENCE = ("correction", "feedback")  # label kinds that are no prequential sample


def curve_mark(n_labels: int) -> int:
    """The latest label count, at most ``n_labels``, that is due a curve point: points
    at every label up to 50, then every 10th up to 1,000, then every 50th.

    >>> curve_mark(37), curve_mark(57), curve_mark(1049)
    (37, 50, 1000)
    """
    if n_labels <= 50:
        return n_labels
    return n_labels - n_labels % (10 if n_labels <= 1000 else 50)


def curve_due(n_labels: int) -> bool:
    """True when the ``n_labels``-th label is due a curve point (:func:`curve_mark`)."""
    return curve_mark(n_labels) == n_labels


def windowed_accuracy(labels: Sequence[Any]) -> float | None:
    """Prequential accuracy of the suggestion, weighted by 1 / propensity.

    Reviewed cases are the uncertain ones; weighting each label by the inverse of
    the probability that its case was sent to a person makes the mix represent
    all cases, automated ones included (through their audits). ``labels``: label log
    entries, or rows with their ``label``, ``suggestion`` and ``propensity``.
    """
    total = hits = 0.0
    for entry in labels:
        if entry.suggestion is None or entry.propensity <= 0:
            continue
        weight = 1.0 / entry.propensity
        total += weight
        hits += weight * (entry.suggestion == entry.label)
    return hits / total if total else None


def record_progress(
    db: Database, task_name: str, live: LiveModel, seen: Task | None = None
) -> None:
    """After a label: move the task's mode if due, and append a curve point if due.

    ``seen`` is the task row as the caller read it with the label's own count: when it
    shows that neither is due, nothing is written (most labels).
    """
    if seen is not None and not (sync_due(seen, live) or curve_due(seen.n_labels)):
        return
    with db.write() as session:
        # concurrent calls (several request threads, the leader's poll) take turns, so
        # each sees the other's mode changes and records each change once
        lock_task_progress(session.connection(), live.task_id)
        task = get_task(session, task_name)
        sync_task(session, task, live, f"label {task.n_labels}")
        n_labels = live.labelled  # the labelled cases the model's state counts: the point's
        if not _point_due(session, task, n_labels):
            return
        recent = session.exec(  # the columns only: a point is due every 10th or 50th label
            select(Label.label, Label.suggestion, Label.propensity)
            .where(
                Label.task_id == task.id,
                col(Label.kind).not_in(NOT_EVIDENCE),
                col(Label.id) <= live.last_label_id,  # up to the state the point shows
            )
            .order_by(col(Label.id).desc())
            .limit(CURVE_WINDOW)
        ).all()
        estimate, upper = error_bound(task, live)
        session.add(
            CurvePoint(
                task_id=task.id,  # type: ignore[arg-type]
                at=time.time(),
                labels=n_labels,
                cases=task.n_cases,
                automation_rate=automation_rate(task),
                accuracy=windowed_accuracy(recent),
                threshold=task.threshold_in_force,
                mode=task.mode,
                auto_error_estimate=estimate,
                auto_error_upper=upper,
            )
        )


def _point_due(session: Session, task: Task, n_labels: int) -> bool:
    """True when the newest curve point is older than the last mark at or below
    ``n_labels``. The count may have passed the mark (labels folded together: the point
    then counts a few labels more); a repeated call (the leader and the process that
    took the label) finds the point there."""
    newest = session.exec(
        select(CurvePoint.labels)
        .where(CurvePoint.task_id == task.id)
        .order_by(col(CurvePoint.id).desc())
        .limit(1)
    ).first()
    return newest is None or newest < curve_mark(n_labels)


def error_bound(task: Task, live: LiveModel | None) -> tuple[float | None, float | None]:
    """Estimated error of automated decisions and its upper bound, at the threshold in force.

    Certified tasks report their governor's certificate; fixed-threshold tasks the
    controller's evidence at the fixed threshold (importance-weighted, so audits and
    reviews both count without bias).
    """
    if live is None or task.threshold_in_force is None:
        return None, None  # nothing is automated: there is no automated error to estimate
    with live.lock:
        governor = live.governor
        if task.threshold_policy == "fixed":
            certificate = governor.controller.certificate_at(task.threshold)
        else:
            certificate = governor.certificate
    return certificate.estimate, certificate.upper


def task_metrics(db: Database, store: ModelStore, task_name: str) -> Metrics:
    with db.read() as session:
        task = get_task(session, task_name)
        agreement, kappa = quality.agreement_headline(session, task)
    metrics = metrics_of(task, store)
    metrics.agreement, metrics.kappa = agreement, kappa
    return metrics


def automation_rate(task: Task) -> float:
    """The share of the task's cases decided automatically so far."""
    return task.n_auto / task.n_cases if task.n_cases else 0.0


def queue_status(db: Database, task_name: str) -> QueueStatus:
    """The task's backlog and automated share, from its counters (what reviewers see)."""
    with db.read() as session:
        task = get_task(session, task_name)
    return QueueStatus(
        task=task.name,
        mode=task.mode,
        queue_depth=task.n_queued,
        automation_rate=automation_rate(task),
        cases=task.n_cases,
    )


def metrics_of(task: Task, store: ModelStore) -> Metrics:
    live = store.get(task)
    estimate, upper = error_bound(task, live)
    return Metrics(
        cases=task.n_cases,
        automated=task.n_auto,
        pending=task.n_pending,
        labels=task.n_labels,
        automation_rate=automation_rate(task),
        threshold=task.threshold_in_force,
        mode=task.mode,
        model_version=live.version if live else 0,
        auto_error_estimate=estimate,
        auto_error_upper=upper,
        target_error=task.target_error,
        queue_depth=task.n_queued,
        audited=task.n_audited,
        feedback=task.n_feedback,
        second_opinions=task.n_second_opinions,
        second_opinion_share=quality.second_opinion_share(task),
        escalated=task.n_escalated,
    )


def task_curve(
    db: Database, task_name: str, *, after: int | None = None, limit: int | None = None
) -> Curve:
    """The task's learning curve in label order; ``after``/``limit`` page through it
    (``next_after`` is the cursor for the next page, ``None`` on the last one)."""
    with db.read() as session:
        task = get_task(session, task_name)
        query = select(CurvePoint).where(CurvePoint.task_id == task.id)
        if after is not None:
            query = query.where(col(CurvePoint.labels) > after)
        query = query.order_by(col(CurvePoint.id))
        if limit is not None:
            query = query.limit(limit)
        rows = session.exec(query).all()
    more = limit is not None and len(rows) == limit
    return Curve(
        next_after=rows[-1].labels if more else None,
        points=[
            CurvePointPublic(
                labels=p.labels,
                cases=p.cases,
                automation_rate=p.automation_rate,
                accuracy=p.accuracy,
                threshold=p.threshold,
                mode=p.mode,
                auto_error_estimate=p.auto_error_estimate,
                auto_error_upper=p.auto_error_upper,
                at=iso(p.at),
            )
            for p in rows
        ],
    )
