"""Imports: cases, or labelled history, from CSV, JSON Lines or Parquet files.

``tierline import cases`` streams a file through :func:`api.services.cases.submit_cases`
in batches of 1,000, exactly as ``POST /cases/batch`` would route and store them.

``tierline import labels`` warm-starts a task from labelled history. Rows are applied
in file order and each is *predicted before it is learned*: the case is scored and
routed by the model as it stands (its route, suggestion, confidence recorded as for
any case), stored, and its label appended to the label log (``kind="import"``) and
folded into the model and the governor, before the next row is scored. So the
evidence stays prequential and the model, governor, history and learning curve end as
if the history had been labelled live. Every row of the history is labelled, a census
rather than a sample, so each label enters the evidence with propensity 1 (a routed-
to-auto row counts as an audited automated decision).

Rows are validated against the task's schema one at a time; bad rows are reported by
line number and either skipped (``on_error="skip"``) or reject the whole import
(``on_error="reject"``: the file is validated in a first streaming pass and nothing is
imported unless every row is good). Rows whose ``external_id`` the task already has are
skipped as already imported, so a rerun after an interruption resumes where it stopped.

A task without a declared schema takes it from the file's first rows (up to
:data:`SCHEMA_SAMPLE`): every feature they carry, of the kind of its first value, and
optional when some of those rows lack it (an export's optional feature is often absent
from its first row, and a schema from that row alone refused every later row that had
it).

Columns: features as columns named like the task's features (or ``features.<name>``,
as exports write them; JSON Lines may instead carry a ``features`` object), and
``external_id``, ``label`` (labels only), ``labelled_by``, ``comment``. Other columns
written by ``tierline export`` are ignored; any other column is an error.
"""

from __future__ import annotations

import gc
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Any, Literal

from sqlalchemy import func, update
from sqlmodel import col, select

from api.db import Database, insert_rows, lock_label_log
from api.errors import NotFound, Unavailable
from api.fileformats import Record, detect_format, read_records, total_size, where
from api.live import LiveModel, ModelStore
from api.schemas import CaseCreate
from api.security import Principal
from api.services import audit
from api.services.cases import (
    _with_bound,
    ensure_schema,
    guardrails,
    new_case_id,
    routing_policy,
    submit_cases,
)
from api.services.metrics import CURVE_WINDOW, NOT_EVIDENCE, curve_due, windowed_accuracy
from api.services.tasks import effective_state, get_task, sync_task
from api.tables import Case, CurvePoint, Label, Routing, Task
from api.text import unstorable
from learner import (
    FeatureSpec,
    InvalidFeatures,
    apply_guardrails,
    held_by_rule,
    id_draw,
    infer_schema,
    parse_schema,
    route_case,
    validate_features,
)
from learner.schema import label_of

What = Literal["labels", "cases"]
OnError = Literal["skip", "reject"]
BATCH = 1000
MAX_REPORTED = 100  # bad rows kept in a report (all are counted)
MAX_EXTERNAL_ID = 256
MAX_NAME = 128
# labels between model snapshots while importing history: the label log is the durable
# record and a snapshot only shortens a replay, so a bulk import snapshots less often (each
# costs ~20 ms with a full evidence window) and once more at the end of the file
IMPORT_SNAPSHOT_EVERY = 5000
IMPORTER = Principal(id="import", name="import", role="admin")
IMPORT_REASON = "imported with its label (labelled history)"

# columns that ``tierline export`` writes and an import ignores
EXPORT_ONLY = frozenset(
    {
        "id",
        "case_id",
        "task",
        "status",
        "route",
        "decision",
        "suggestion",
        "confidence",
        "proba",
        "threshold",
        "audit",
        "reasons",
        "propensity",
        "model_version",
        "created_at",
        "labelled_at",
        "kind",
        "explanation",
    }
)
META = frozenset({"external_id", "label", "labelled_by", "comment"})
_TRUE = frozenset({"true", "t", "yes", "y", "1"})
_FALSE = frozenset({"false", "f", "no", "n", "0"})


class RowError(ValueError):
    """A row that cannot be imported, and why."""


@dataclass
class Row:
    """A validated row, ready for the service layer."""

    line: int
    features: dict[str, Any]
    external_id: str | None = None
    label: str | None = None
    labelled_by: str | None = None
    comment: str | None = None


@dataclass
class ImportReport:
    """What an import did: rows read, imported, already there, and the bad ones."""

    what: str
    task: str
    format: str
    on_error: str
    rows: int = 0
    imported: int = 0
    existing: int = 0
    bad: int = 0
    errors: list[str] = field(default_factory=list)  # "line 12: features.amount: ..."
    rejected: bool = False
    seconds: float = 0.0

    def add_error(self, message: str) -> None:
        self.bad += 1
        if len(self.errors) < MAX_REPORTED:
            self.errors.append(message)

    @property
    def rate(self) -> float:
        """Rows imported per second."""
        return self.imported / self.seconds if self.seconds > 0 else 0.0


# --- parsing ----------------------------------------------------------------------------
def _typed(cell: str, spec: FeatureSpec | None) -> Any:
    """A CSV cell as the schema's kind; ``None`` for an empty cell."""
    if cell == "":
        return None
    kind = spec.kind if spec is not None else None
    if kind in ("category", "text"):
        return cell
    low = cell.strip().lower()
    if kind == "boolean" or (kind is None and low in ("true", "false")):
        if low in _TRUE:
            return True
        if low in _FALSE:
            return False
        raise ValueError(f"expected true or false, got {cell!r}")
    try:
        return float(cell)
    except ValueError:
        if kind == "number":
            raise ValueError(f"expected a number, got {cell!r}") from None
        return cell


class RowParser:
    """Turns file records into validated :class:`Row` objects for one task."""

    def __init__(
        self,
        what: What,
        labels: Sequence[str],
        schema: dict[str, FeatureSpec] | None,
        *,
        max_string_length: int,
        max_comment_length: int,
    ) -> None:
        self.what = what
        self.label_list = list(labels)
        self.schema = schema
        self.max_string_length = max_string_length
        self.max_comment_length = max_comment_length
        self._names: dict[str, str | None] = {}  # column -> feature, once a schema is known

    def _feature_name(self, key: str) -> str | None:
        """The feature a column holds, or ``None`` for a known non-feature column."""
        if self.schema is None:
            return self._name_of(key)
        name = self._names.get(key, "")  # "": not looked up yet
        if name == "":
            name = self._names[key] = self._name_of(key)
        return name

    def _name_of(self, key: str) -> str | None:
        if key.startswith("features."):
            return key.removeprefix("features.")
        if key in META or key in EXPORT_ONLY or key.startswith("proba."):
            return None
        if self.schema is not None and key not in self.schema:
            known = ", ".join(list(self.schema)[:20])
            raise RowError(
                f"{key}: unknown column; expected features ({known}) or external_id, "
                "label, labelled_by, comment"
            )
        return key

    def features_of(self, data: dict[str, Any], text: bool) -> dict[str, Any]:
        nested = data.get("features")
        if isinstance(nested, dict) and not text:
            for key in data:  # beside the object: only the row's other fields
                if key != "features" and self._name_of(str(key)) is not None:
                    raise RowError(
                        f"{key}: a feature beside the row's \"features\" object; put every "
                        "feature in it"
                    )
            return dict(nested)
        if "features" in data and nested is None and not text:
            raise RowError("features: null; expected an object mapping feature names to values")
        features: dict[str, Any] = {}
        for key, value in data.items():
            name = self._feature_name(str(key))
            if name is None:
                continue
            if text:
                spec = self.schema.get(name) if self.schema is not None else None
                try:
                    value = _typed(value, spec)
                except ValueError as exc:
                    raise RowError(f"features.{name}: {exc}") from None
            if value is not None:
                features[name] = value
        return features

    def parse(self, record: Record) -> Row:
        """Validate one record; :class:`RowError` says what is wrong with it."""
        if record.error is not None or record.data is None:
            raise RowError(record.error or "empty row")
        data = record.data
        features = self.features_of(data, record.text)
        if self.schema is None:  # the task's first case will fix its schema
            try:
                self.schema = infer_schema(features)
            except InvalidFeatures as exc:
                raise _bad_features(exc) from None
        try:
            clean = validate_features(
                self.schema, features, max_string_length=self.max_string_length
            )
        except InvalidFeatures as exc:
            raise _bad_features(exc) from None
        for name, value in clean.items():
            if isinstance(value, str) and (what := unstorable(value)) is not None:
                raise RowError(f"features.{name}: not storable text: {what}")
        row = Row(record.line, clean)
        row.external_id = self._text(data, "external_id", MAX_EXTERNAL_ID)
        if self.what == "labels":
            label = self._text(data, "label", MAX_NAME)
            if label is None:
                raise RowError("label: missing; every row of labelled history needs its label")
            row.label = label_of(self.label_list, label)
            if row.label is None:
                raise RowError(f"label: {label!r} is not one of {self.label_list}")
            row.labelled_by = self._text(data, "labelled_by", MAX_NAME)
            row.comment = self._text(data, "comment", self.max_comment_length)
        return row

    @staticmethod
    def _text(data: dict[str, Any], key: str, limit: int) -> str | None:
        value = data.get(key)
        if value is None or value == "":
            return None
        if isinstance(value, bool) or not isinstance(value, str | int):
            raise RowError(f"{key}: expected a string, got {type(value).__name__}")
        text = str(value)
        if len(text) > limit:
            raise RowError(f"{key}: longer than {limit} characters ({len(text)})")
        if (what := unstorable(text)) is not None:
            raise RowError(f"{key}: not storable text: {what}")
        return text


# --- the service layer: one batch ---------------------------------------------------------
def import_case_batch(
    db: Database, store: ModelStore, task_name: str, rows: Sequence[Row], max_string_length: int
) -> tuple[int, int]:
    """Route and store validated cases, as ``POST /cases/batch`` does: (new, existing)."""
    items = [CaseCreate(external_id=r.external_id, features=r.features) for r in rows]
    results = submit_cases(db, store, task_name, items, max_string_length=max_string_length)
    created = sum(1 for _, new in results if new)
    return created, len(results) - created


def _bad_features(exc: InvalidFeatures) -> RowError:
    """``features.amount: expected a number, ...`` (``features: ...`` for the object)."""
    return RowError(f"{'.'.join(('features', *exc.loc))}: {exc.reason}")


class _Raced(Exception):
    """A label reached the task's log while a batch was being prepared."""


@dataclass(slots=True)
class _Entry:
    """A label as :meth:`LiveModel.fold` and the curve read it (no ORM object: speed)."""

    case_id: str
    label: str
    kind: str
    suggestion: str | None
    confidence: float
    propensity: float
    audit: bool
    route: str
    guarded: bool  # held for a person by a rule: no evidence (LiveModel.fold)
    audit_weight: None = None  # every imported label stands for itself (propensity 1)


def import_label_batch(
    db: Database,
    store: ModelStore,
    task_name: str,
    rows: Sequence[Row],
    who: Principal = IMPORTER,
    *,
    attempts: int = 3,
) -> tuple[int, int]:
    """Predict, store and learn labelled rows in order: (imported, already there).

    The batch is scored and folded into the live model under its lock, then written in
    one transaction, which first checks that no other label reached the task's log in
    between (else the batch is prepared again from the log). If the write fails, the
    in-memory model is dropped and reloaded from the log: the model stays a fold of it.
    """
    task = store.tasks.get(task_name)
    live = store.get(task)
    if live is None:
        raise NotFound(f"task {task_name!r} has no schema yet")
    fresh, existing = _new_rows(db, task, rows)
    if not fresh:
        return 0, existing
    for _ in range(attempts):
        try:
            _import_labels(db, store, task, live, fresh, who)
            return len(fresh), existing
        except _Raced:
            store.forget(task.id)  # type: ignore[arg-type]
            live = store.get(task)
            assert live is not None
        except BaseException:
            store.forget(task.id)  # type: ignore[arg-type]
            raise
    raise Unavailable("labels kept arriving in this task during the import; try again")


def _new_rows(db: Database, task: Task, rows: Sequence[Row]) -> tuple[list[Row], int]:
    ids = {r.external_id for r in rows if r.external_id is not None}
    known: set[str] = set()
    if ids:
        with db.read() as session:
            known = set(
                session.exec(
                    select(Case.external_id).where(
                        Case.task_id == task.id, col(Case.external_id).in_(ids)
                    )
                ).all()  # type: ignore[arg-type]
            )
    fresh = []
    for row in rows:
        if row.external_id is not None:
            if row.external_id in known:
                continue
            known.add(row.external_id)
        fresh.append(row)
    return fresh, len(rows) - len(fresh)


def _bound(task: Task, live: LiveModel, threshold: float | None) -> tuple[float | None, ...]:
    """:func:`api.services.metrics.error_bound`, for a caller that holds ``live.lock``."""
    if threshold is None:
        return None, None
    governor = live.governor
    if task.threshold_policy == "fixed":
        certificate = governor.controller.certificate_at(task.threshold)
    else:
        certificate = governor.certificate
    return certificate.estimate, certificate.upper


def _import_labels(
    db: Database,
    store: ModelStore,
    task: Task,
    live: LiveModel,
    rows: Sequence[Row],
    who: Principal,
) -> None:
    store.catch_up(live)
    with db.read() as session:
        counts = get_task(session, task.name)
        recent = session.exec(  # what the curve's accuracy reads, not whole rows
            select(Label.label, Label.suggestion, Label.propensity)
            .where(Label.task_id == task.id, col(Label.kind).not_in(NOT_EVIDENCE))
            .order_by(col(Label.id).desc())
            .limit(CURVE_WINDOW)
        ).all()
    now = time.time()
    rules = guardrails(task, live) if task.rules else None
    certified = task.threshold_policy == "certified"
    cases: list[dict[str, Any]] = []
    routings: list[dict[str, Any]] = []
    labels: list[dict[str, Any]] = []
    points: list[dict[str, Any]] = []
    window: deque[Any] = deque(reversed(recent), maxlen=CURVE_WINDOW)
    n_auto = n_auto_wrong = 0
    with live.lock:
        last = live.last_label_id
        for i, row in enumerate(rows):
            case_id = new_case_id()
            version = live.version
            proba = live.model.predict_proba_one(row.features)
            d = route_case(
                proba,
                policy=routing_policy(task, live),
                n_labels=live.labelled,
                task=task.name,
                case_key=case_id,
                draw=id_draw(case_id),
            )
            if certified:
                d = _with_bound(d, live, task.target_error)
            if rules:
                d = apply_guardrails(d, rules, row.features)
            label = row.label
            assert label is not None
            auto = d.route == "auto"
            n_auto += auto
            n_auto_wrong += auto and label != d.suggestion
            labelled_by = row.labelled_by or who.name
            cases.append(
                {
                    "id": case_id,
                    "task_id": task.id,
                    "external_id": row.external_id,
                    "features": row.features,
                    "created_at": now + i * 1e-6,  # keeps the file's order in exports
                    "status": "decided",
                    "decision": label,
                    "decided_at": now,
                    "queued": False,
                    "priority": 0.0,
                    "label": label,
                    "labelled_by": labelled_by,
                    "labelled_at": now,
                }
            )
            routings.append(
                {
                    "case_id": case_id,
                    "route": d.route,
                    "suggestion": d.suggestion,
                    "confidence": d.confidence,
                    "proba": d.proba,
                    "threshold": d.threshold,
                    "audit": d.audit,
                    "reasons": [*d.reasons, IMPORT_REASON],
                    "propensity": d.propensity,
                    "margin": d.margin,
                    "model_version": version,
                }
            )
            guarded = held_by_rule(d.reasons)
            entry = _Entry(
                case_id, label, "import", d.suggestion, d.confidence, 1.0, auto, d.route, guarded
            )
            labels.append(
                {
                    "task_id": task.id,
                    "case_id": case_id,
                    "label": label,
                    "kind": "import",
                    "key_id": who.id,
                    "labelled_by": labelled_by,
                    "comment": row.comment,
                    "created_at": now,
                    "route": d.route,
                    "suggestion": d.suggestion,
                    "confidence": d.confidence,
                    "propensity": 1.0,
                    "audit": auto,
                    "guarded": guarded,
                }
            )
            live.fold(last, entry, row.features, logged=False)  # type: ignore[arg-type]
            window.append(entry)
            n_labels = counts.n_labels + i + 1
            if curve_due(n_labels):
                n_cases = counts.n_cases + i + 1
                mode, threshold, _ = effective_state(task, live)
                estimate, upper = _bound(task, live, threshold)
                points.append(
                    {
                        "task_id": task.id,
                        "at": now,
                        "labels": n_labels,
                        "cases": n_cases,
                        "automation_rate": (counts.n_auto + n_auto) / n_cases,
                        "accuracy": windowed_accuracy(window),
                        "threshold": threshold,
                        "mode": mode,
                        "auto_error_estimate": estimate,
                        "auto_error_upper": upper,
                    }
                )
        folded = live.version

    with db.write() as session:
        lock_label_log(session.connection(), task.id)  # type: ignore[arg-type]
        newest = session.exec(select(func.max(Label.id)).where(Label.task_id == task.id)).one()
        with live.lock:
            if live.version != folded or (newest or 0) != last:
                raise _Raced
        insert_rows(session, Case.__table__, cases)  # type: ignore[attr-defined]
        insert_rows(session, Routing.__table__, routings)  # type: ignore[attr-defined]
        insert_rows(session, Label.__table__, labels)  # type: ignore[attr-defined]
        # each new case has exactly one label: point the case at it in one statement
        session.exec(  # type: ignore[call-overload]
            update(Case)
            .where(col(Case.id).in_([c["id"] for c in cases]))
            .values(
                label_id=select(Label.id).where(col(Label.case_id) == Case.id).scalar_subquery()
            )
        )
        newest_id = session.exec(select(func.max(Label.id)).where(Label.task_id == task.id)).one()
        if points:
            session.execute(CurvePoint.__table__.insert(), points)  # type: ignore[attr-defined]
        n = len(rows)
        session.exec(  # type: ignore[call-overload]
            update(Task)
            .where(col(Task.id) == task.id)
            .values(
                n_cases=Task.n_cases + n,
                n_auto=Task.n_auto + n_auto,
                n_labels=Task.n_labels + n,
                n_audited=Task.n_audited + n_auto,
                n_audit_errors=Task.n_audit_errors + n_auto_wrong,
            )
        )
        with live.lock:
            live.last_label_id = newest_id or last
        row_task = get_task(session, task.name)
        sync_task(session, row_task, live, f"import of {n} labelled cases", covers=newest_id)
        audit.record(  # one row per chunk: the cases and labels it stored
            session, audit.acting(), "labels.imported", task=row_task, subject=task.name,
            after={"cases": n, "first_case": cases[0]["id"], "last_case": cases[-1]["id"],
                   "last_label_id": newest_id, "model_version": folded},
        )  # fmt: skip
    store.tasks.forget(task.name)
    if live.snapshot_due(max(store.snapshot_every, IMPORT_SNAPSHOT_EVERY)):
        store.save_snapshot(live)


# --- the whole file -----------------------------------------------------------------------
@contextmanager
def _young_collections_every(allocations: int) -> Iterator[None]:
    """Collect the youngest generation every ``allocations`` allocations, not every 700.

    A bulk import allocates millions of short-lived objects (rows, dicts, evidence); the
    default threshold runs the collector hundreds of times per 20,000 rows, each pass
    also walking the survivors. Measured: labels/s +10% (``bench/import_bench.py``).
    """
    before = gc.get_threshold()
    gc.set_threshold(max(allocations, before[0]), *before[1:])
    try:
        yield
    finally:
        gc.set_threshold(*before)


#: Rows a file's schema is inferred from, for a task that declares none.
SCHEMA_SAMPLE = 1000


def infer_file_schema(head: Sequence[Record], parser: RowParser) -> dict[str, FeatureSpec] | None:
    """The schema of a file's first rows (``parser`` holds no schema): every feature any
    readable row carries, of the kind its first value gives (a string feature is text
    when any of its values reads as text, not only its first), required only when every
    such row has it; ``None`` when no row gives one.

    A feature whose first value gives no kind is left out (the rows that carry it then
    fail as unknown features, as they would have against a schema from the first row).
    """
    kinds: dict[str, FeatureSpec] = {}
    present: dict[str, int] = {}
    readable = 0
    for record in head:
        if record.error is not None or record.data is None:
            continue
        try:
            features = parser.features_of(record.data, record.text)
        except RowError:
            continue
        readable += 1
        for name, value in features.items():
            present[name] = present.get(name, 0) + 1
            known = kinds.get(name)
            if known is None or (known.kind == "category" and isinstance(value, str)):
                try:
                    kind = infer_schema({name: value})[name]
                except InvalidFeatures:
                    continue
                if known is None or kind.kind == "text":
                    kinds[name] = kind
    if not kinds:
        return None
    return {name: FeatureSpec(spec.kind, present[name] == readable) for name, spec in kinds.items()}


def _batches(
    records: Iterator[Record],
    parser: RowParser,
    report: ImportReport,
    fmt: str,
    strict: bool,
) -> Iterator[list[Row]]:
    batch: list[Row] = []
    for record in records:
        report.rows += 1
        try:
            batch.append(parser.parse(record))
        except RowError as exc:
            message = f"{where(fmt, record.line)}: {exc}"
            if strict:
                raise RowError(message) from None
            report.add_error(message)
            continue
        if len(batch) >= BATCH:
            yield batch
            batch = []
    if batch:
        yield batch


def run_import(
    db: Database,
    store: ModelStore,
    task_name: str,
    path: str | Path,
    what: What,
    *,
    on_error: OnError = "skip",
    fmt: str | None = None,
    max_string_length: int = 10_000,
    max_comment_length: int = 2_000,
    who: Principal = IMPORTER,
    progress: Callable[[int, int], None] | None = None,
) -> ImportReport:
    """Import a whole file in batches; ``progress(done, total)`` in bytes (Parquet: rows).

    With ``on_error="reject"`` a first pass validates every row and nothing is imported
    when any is bad (the report lists them with ``rejected=True``).
    """
    started = time.monotonic()
    fmt = detect_format(path, fmt)
    task = store.tasks.get(task_name)
    report = ImportReport(what, task.name, fmt, on_error)

    def parser(schema: dict[str, FeatureSpec] | None) -> RowParser:
        return RowParser(
            what,
            task.labels,
            schema,
            max_string_length=max_string_length,
            max_comment_length=max_comment_length,
        )

    schema = parse_schema(task.features) if task.features is not None else None
    if schema is None:  # inferred from the file's first rows, fixed with the first batch
        head = list(islice(read_records(path, fmt), SCHEMA_SAMPLE))
        schema = infer_file_schema(head, parser(None))

    total = total_size(path, fmt)
    if on_error == "reject":
        check = ImportReport(what, task.name, fmt, on_error)
        for _ in _batches(read_records(path, fmt), parser(schema), check, fmt, strict=False):
            pass
        if check.bad:
            check.rejected = True
            check.seconds = time.monotonic() - started
            return check

    def tick(done: int) -> None:
        if progress is not None:
            progress(done, total)

    records = read_records(path, fmt, tick)
    rows_parser = parser(schema)
    first = True
    with _young_collections_every(10_000):  # bulk work: fewer passes of the collector
        for batch in _batches(records, rows_parser, report, fmt, strict=on_error == "reject"):
            if first and task.features is None:
                task = ensure_schema(
                    db, store, task, batch[0].features, ["features"], schema=rows_parser.schema
                )
                rows_parser.schema = parse_schema(task.features)  # type: ignore[arg-type]
                first = False
            if what == "labels":
                imported, existing = import_label_batch(db, store, task.name, batch, who)
            else:
                imported, existing = import_case_batch(
                    db, store, task.name, batch, max_string_length
                )
            report.imported += imported
            report.existing += existing
    live = store.get(task) if what == "labels" else None
    if live is not None and live.snapshot_due(store.snapshot_every):
        store.save_snapshot(live)
    report.seconds = time.monotonic() - started
    return report
