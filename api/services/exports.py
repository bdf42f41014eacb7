"""Exports: a task's labels or cases, read in chunks and encoded as they are read.

- ``labels``: one row per labelled case, in the order the model first learned them
  (the label log), with the case's *current* label (after any correction), the
  features, and what was recorded at routing time (route, suggestion, confidence,
  propensity), so prequential accuracy and the risk-coverage curve can be computed
  from it. Feedback reports are not labels of the case and are not in it. The file
  imports back with ``tierline import labels``.
- ``cases``: every case in arrival order, with its route, decision, probabilities,
  reasons and any label.

Reads are keyset-paginated (``label.id``, or ``case.created_at, case.id`` on an
index), one short read transaction per chunk, so an export of millions of rows
holds no transaction open and needs memory for one chunk only.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy import and_, exists, or_
from sqlmodel import col, select

from api.db import Database
from api.fileformats import Column
from api.services.metrics import NOT_EVIDENCE
from api.services.tasks import get_task
from api.tables import Case, GoldCase, Label, Routing, Task
from learner import parse_schema

What = Literal["labels", "cases"]
EXPORT_CHUNK = 1000
_FEATURE_KINDS = {"number": "float", "boolean": "bool", "category": "str", "text": "str"}

LABEL_COLUMNS = [
    Column("case_id", "str", ("case_id",)),
    Column("external_id", "str", ("external_id",)),
    Column("label", "str", ("label",)),
    Column("labelled_by", "str", ("labelled_by",)),
    Column("labelled_at", "time", ("labelled_at",)),
    Column("kind", "str", ("kind",)),
    Column("route", "str", ("route",)),
    Column("suggestion", "str", ("suggestion",)),
    Column("confidence", "float", ("confidence",)),
    Column("propensity", "float", ("propensity",)),
    Column("audit", "bool", ("audit",)),
    Column("comment", "str", ("comment",)),
    Column("created_at", "time", ("created_at",)),
]
CASE_COLUMNS = [
    Column("id", "str", ("id",)),
    Column("external_id", "str", ("external_id",)),
    Column("created_at", "time", ("created_at",)),
    Column("status", "str", ("status",)),
    Column("route", "str", ("route",)),
    Column("decision", "str", ("decision",)),
    Column("suggestion", "str", ("suggestion",)),
    Column("confidence", "float", ("confidence",)),
    Column("threshold", "float", ("threshold",)),
    Column("audit", "bool", ("audit",)),
    Column("propensity", "float", ("propensity",)),
    Column("model_version", "int", ("model_version",)),
    Column("reasons", "json", ("reasons",)),
    Column("label", "str", ("label",)),
    Column("labelled_by", "str", ("labelled_by",)),
    Column("labelled_at", "time", ("labelled_at",)),
]


@dataclass
class Export:
    """What an export will contain: its columns and its chunks of records (lazy)."""

    task: str
    what: str
    columns: list[Column]
    chunks: Iterator[list[dict[str, Any]]]


def feature_columns(task: Task) -> list[Column]:
    schema = parse_schema(task.features) if task.features else {}
    return [
        Column(f"features.{name}", _FEATURE_KINDS[spec.kind], ("features", name))
        for name, spec in schema.items()
    ]


def start_export(db: Database, task_name: str, what: What) -> Export:
    """Check the task (404 before anything streams) and set up the chunked read."""
    with db.read() as session:
        task = get_task(session, task_name)
    if what == "labels":
        columns = LABEL_COLUMNS + feature_columns(task)
        chunks = _label_chunks(db, task.id)  # type: ignore[arg-type]
    else:
        proba = [Column(f"proba.{label}", "float", ("proba", label)) for label in task.labels]
        columns = CASE_COLUMNS + proba + feature_columns(task)
        chunks = _case_chunks(db, task.id)  # type: ignore[arg-type]
    return Export(task.name, what, columns, chunks)


def _label_chunks(db: Database, task_id: int) -> Iterator[list[dict[str, Any]]]:
    after = 0
    while True:
        with db.read() as session:
            rows = session.exec(
                select(Label, Case)
                .join(Case, col(Case.id) == Label.case_id)
                .where(
                    Label.task_id == task_id,
                    col(Label.kind).not_in(NOT_EVIDENCE),
                    col(Label.id) > after,
                )
                .order_by(col(Label.id))
                .limit(EXPORT_CHUNK)
            ).all()
        if not rows:
            return
        after = rows[-1][0].id  # type: ignore[assignment]
        yield [
            {
                "case_id": case.id,
                "external_id": case.external_id,
                "label": case.label if case.label is not None else first.label,
                "labelled_by": case.labelled_by or first.labelled_by,
                "labelled_at": case.labelled_at or first.created_at,
                "kind": first.kind,
                "route": first.route,
                "suggestion": first.suggestion,
                "confidence": first.confidence,
                "propensity": first.propensity,
                "audit": first.audit,
                "comment": first.comment,
                "created_at": case.created_at,
                "features": case.features,
            }
            for first, case in rows
        ]
        if len(rows) < EXPORT_CHUNK:
            return


def _case_chunks(db: Database, task_id: int) -> Iterator[list[dict[str, Any]]]:
    after: tuple[float, str] | None = None
    while True:
        query = (
            select(Case, Routing)
            .join(Routing, col(Routing.case_id) == Case.id)
            .where(Case.task_id == task_id)
            .where(~exists().where(col(GoldCase.case_id) == Case.id))  # gold is not a case
        )
        if after is not None:
            at, case_id = after
            query = query.where(
                or_(
                    col(Case.created_at) > at,
                    and_(col(Case.created_at) == at, col(Case.id) > case_id),
                )
            )
        with db.read() as session:
            rows = session.exec(
                query.order_by(col(Case.created_at), col(Case.id)).limit(EXPORT_CHUNK)
            ).all()
        if not rows:
            return
        last = rows[-1][0]
        after = (last.created_at, last.id)
        yield [
            {
                "id": case.id,
                "external_id": case.external_id,
                "created_at": case.created_at,
                "status": case.status,
                "route": routing.route,
                "decision": case.decision,
                "suggestion": routing.suggestion,
                "confidence": routing.confidence,
                "proba": routing.proba,
                "threshold": routing.threshold,
                "audit": routing.audit,
                "propensity": routing.propensity,
                "model_version": routing.model_version,
                "reasons": routing.reasons,
                "label": case.label,
                "labelled_by": case.labelled_by,
                "labelled_at": case.labelled_at,
                "features": case.features,
            }
            for case, routing in rows
        ]
        if len(rows) < EXPORT_CHUNK:
            return
