"""SQLModel tables: the persistent state of tierline.

Times are stored as epoch seconds (UTC floats): exact, portable between SQLite and
PostgreSQL, and cheap to compare and index. The label log (``label``) is
append-only and is the source of truth for learning; ``model_snapshot`` caches
folds of it.
"""

from __future__ import annotations

from sqlalchemy import JSON, Column, Index, LargeBinary, UniqueConstraint, false
from sqlmodel import Field, SQLModel


class ApiKey(SQLModel, table=True):
    __tablename__ = "api_key"

    id: str = Field(primary_key=True, max_length=32)
    name: str = Field(max_length=128)
    role: str = Field(max_length=16)
    key_hash: str = Field(max_length=64, unique=True)
    created_at: float
    revoked: bool = False
    revoked_at: float | None = None
    last_used_at: float | None = None
    # scope: the task names this key may act on (None: every task)
    tasks: list[str] | None = Field(
        default=None, sa_column=Column(JSON(none_as_null=True), nullable=True)
    )
    expires_at: float | None = None  # a rotated key keeps working until then
    rotated_to: str | None = Field(default=None, max_length=32)
    lead: bool = False  # may decide cases whose reviewers disagreed (admin-granted)


class Task(SQLModel, table=True):
    __tablename__ = "task"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=64, unique=True)
    labels: list[str] = Field(sa_column=Column(JSON, nullable=False))
    features: dict | None = Field(
        default=None, sa_column=Column(JSON(none_as_null=True), nullable=True)
    )
    target_error: float
    audit_rate: float
    min_labels: int
    threshold: float
    delta: float
    model_family: str = Field(max_length=16)
    rules: list = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    automation: str = Field(default="on", max_length=8)
    threshold_policy: str = Field(default="certified", max_length=16)  # certified | fixed
    mode: str = Field(default="assist", max_length=16)
    mode_reason: str | None = None
    threshold_in_force: float | None = None  # None: nothing is automated
    created_at: float
    updated_at: float
    # maintained aggregates (updated in the same transaction as the rows they count)
    n_cases: int = 0
    n_auto: int = 0
    n_pending: int = 0
    n_queued: int = 0
    n_labels: int = 0
    n_audited: int = 0
    n_audit_errors: int = 0
    n_feedback: int = 0  # downstream feedback reports (not evidence)
    # the newest label whose governor migrations are in the history: a process that folds
    # the same labels again (a restart, a new leader, an import by the CLI) records none twice
    history_label_id: int = 0
    settings_version: int = 0  # counts settings changes (api.live.ModelStore.align_settings)
    # counts erasures of labelled cases: the model is rebuilt without their values
    # (api.live.ModelStore.forget_erased)
    erasures: int = 0
    # label quality (see api/services/quality.py)
    labels_per_case: int = 1  # distinct reviewers whose opinions a case needs
    second_opinion_confidence: float = 0.98  # contradicting a model this sure asks again
    second_opinion_agreement: float = 0.8  # a reviewer agreeing less than this is checked
    second_opinion_share: float = 0.0  # opt-in; at most this share of labels get a second opinion
    gold_rate: float = 0.0  # share of claims that serve a gold case
    n_second_opinions: int = 0
    n_escalated: int = 0  # cases sent to a lead because their reviewers disagreed


class Case(SQLModel, table=True):
    __tablename__ = "case"
    __table_args__ = (
        UniqueConstraint("task_id", "external_id", name="uq_case_task_external"),
        Index("ix_case_queue", "task_id", "queued", "priority"),
        Index("ix_case_task_created", "task_id", "created_at", "id"),  # exports, in order
    )

    id: str = Field(primary_key=True, max_length=32)
    task_id: int = Field(foreign_key="task.id")
    external_id: str | None = Field(default=None, max_length=256)
    features: dict = Field(sa_column=Column(JSON, nullable=False))
    created_at: float
    status: str = Field(max_length=16)  # decided | pending
    decision: str | None = None
    decided_at: float | None = None
    # review queue: a case waits for a person while ``queued`` is true
    queued: bool = False
    priority: float = 0.0
    lease_id: str | None = Field(default=None, max_length=32)
    lease_expires_at: float | None = None
    leased_by: str | None = Field(default=None, max_length=32)
    # the latest human label
    label: str | None = None
    labelled_by: str | None = None
    labelled_at: float | None = None
    label_id: int | None = None
    erased_at: float | None = None  # features deleted on request (DELETE /v1/cases/{id})
    # label quality: opinions recorded so far (their rows are in ``opinion``)
    opinions: int = 0
    second_opinion: bool = False  # a second reviewer must confirm the first opinion
    escalated: bool = False  # the reviewers disagreed: waits for a lead


class Routing(SQLModel, table=True):
    """How a case was routed, recorded before any label (prequential evidence)."""

    __tablename__ = "routing"

    case_id: str = Field(primary_key=True, foreign_key="case.id", max_length=32)
    route: str = Field(max_length=16)  # auto | review | assist
    suggestion: str | None = None
    confidence: float
    proba: dict = Field(sa_column=Column(JSON, nullable=False))
    threshold: float | None = None  # in force for the case; None when nothing was automated
    audit: bool
    reasons: list[str] = Field(sa_column=Column(JSON, nullable=False))
    propensity: float
    # an audit: the automated cases of its confidence bin it stands for, itself included
    # (learner.controller.AuditTally; per process); None for other routes
    audit_weight: int | None = None
    margin: float
    model_version: int


class Lease(SQLModel, table=True):
    __tablename__ = "lease"

    id: str = Field(primary_key=True, max_length=32)
    case_id: str = Field(foreign_key="case.id", index=True, max_length=32)
    key_id: str = Field(max_length=32)
    claimed_at: float
    expires_at: float
    ended_at: float | None = None
    outcome: str | None = Field(default=None, max_length=16)  # labelled | released


class Label(SQLModel, table=True):
    """The append-only label log; its order is the order the model learns in."""

    __tablename__ = "label"
    __table_args__ = (Index("ix_label_task_id", "task_id", "id"),)

    id: int | None = Field(default=None, primary_key=True)
    task_id: int = Field(foreign_key="task.id")
    case_id: str = Field(foreign_key="case.id", index=True, max_length=32)
    label: str
    kind: str = Field(max_length=16)  # review | assist | audit | correction | import | feedback
    key_id: str | None = Field(default=None, max_length=32)
    labelled_by: str | None = None
    lease_id: str | None = Field(default=None, max_length=32)
    comment: str | None = None
    created_at: float
    corrects: int | None = None
    # copied from the routing record, so the evidence is one table
    route: str = Field(max_length=16)
    suggestion: str | None = None
    confidence: float
    propensity: float
    audit: bool
    audit_weight: int | None = None
    # a guardrail rule held the case for a person: it teaches the model, but is no
    # evidence about automated decisions (learner.rules.held_by_rule)
    guarded: bool = Field(default=False, sa_column_kwargs={"server_default": false()})


class ModelSnapshot(SQLModel, table=True):
    """A signed pickle of a task's model after folding labels up to ``last_label_id``."""

    __tablename__ = "model_snapshot"
    __table_args__ = (Index("ix_snapshot_task_version", "task_id", "version"),)

    id: int | None = Field(default=None, primary_key=True)
    task_id: int = Field(foreign_key="task.id")
    version: int
    last_label_id: int
    family: str = Field(max_length=16)
    blob: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    signature: str = Field(max_length=64)
    created_at: float
    # a restart point one can roll back to; False: published for the other processes only
    # (each is deleted when the next snapshot of the task is written)
    kept: bool = True
    # [after, upto] label-id ranges the rollbacks of this lineage left out (the labels after
    # #after up to #upto): a rebuild from the label log leaves them out too
    skipped_labels: list = Field(
        default_factory=list, sa_column=Column(JSON, nullable=False, server_default="[]")
    )


class TaskHistory(SQLModel, table=True):
    """Threshold and mode changes of a task, with the evidence behind them."""

    __tablename__ = "task_history"

    id: int | None = Field(default=None, primary_key=True)
    task_id: int = Field(foreign_key="task.id", index=True)
    at: float
    mode: str = Field(max_length=16)
    threshold: float | None = None
    reason: str
    n: int = 0
    errors: int = 0
    upper: float | None = None


class CurvePoint(SQLModel, table=True):
    """A learning-curve point, appended as labels arrive (a maintained aggregate)."""

    __tablename__ = "curve_point"

    id: int | None = Field(default=None, primary_key=True)
    task_id: int = Field(foreign_key="task.id", index=True)
    at: float
    labels: int
    cases: int
    automation_rate: float
    accuracy: float | None
    threshold: float | None = None
    mode: str | None = Field(default=None, max_length=16)
    auto_error_estimate: float | None = None
    auto_error_upper: float | None = None


class Feedback(SQLModel, table=True):
    """A downstream report on a decided case (an appeal, a chargeback), stored beside it.

    Its label is also appended to the label log (``kind="feedback"``) so the model learns
    from it, but it never reaches the risk controller: such reports are not a random
    sample of cases.
    """

    __tablename__ = "feedback"
    __table_args__ = (UniqueConstraint("task_id", "external_id", name="uq_feedback_task_external"),)

    id: int | None = Field(default=None, primary_key=True)
    task_id: int = Field(foreign_key="task.id")
    case_id: str = Field(foreign_key="case.id", index=True, max_length=32)
    external_id: str | None = Field(default=None, max_length=256)
    label: str
    source: str | None = Field(default=None, max_length=128)
    comment: str | None = None
    decision: str | None = None  # the case's decision when the feedback came
    key_id: str | None = Field(default=None, max_length=32)
    reported_by: str | None = None
    created_at: float
    label_id: int | None = None  # its row in the label log


class TaskWebhook(SQLModel, table=True):
    """Where a task's events are POSTed, and which events."""

    __tablename__ = "task_webhook"

    task_id: int = Field(primary_key=True, foreign_key="task.id")
    url: str = Field(max_length=2048)
    events: list[str] = Field(sa_column=Column(JSON, nullable=False))
    created_at: float
    updated_at: float
    # the webhook's own secret is derived from this and the server's webhook secret
    # (api.outbox.webhook_secret), so the database holds nothing a delivery is signed with
    secret_salt: str | None = Field(default=None, max_length=64)


class WebhookEvent(SQLModel, table=True):
    """The outbox: an event written in the same transaction as the change it reports.

    A background dispatcher delivers pending events, oldest first, one at a time per
    ``ordering_key`` (the case, or the task for task events), so events of a case
    arrive in order.
    """

    __tablename__ = "webhook_event"
    __table_args__ = (
        Index("ix_webhook_event_pending", "status", "ordering_key", "id"),
        Index("ix_webhook_event_task", "task_id", "id"),
    )

    id: int | None = Field(default=None, primary_key=True)
    task_id: int = Field(foreign_key="task.id")
    type: str = Field(max_length=32)
    case_id: str | None = Field(default=None, max_length=32)
    ordering_key: str = Field(max_length=64)
    payload: dict = Field(sa_column=Column(JSON, nullable=False))
    created_at: float
    retry_since: float | None = None  # an admin's retry: the retry window starts again here
    status: str = Field(default="pending", max_length=16)  # pending|delivered|failed|cancelled
    attempts: int = 0
    next_attempt_at: float
    locked_until: float | None = None  # a dispatcher is delivering it until then
    delivered_at: float | None = None
    last_error: str | None = None


class WebhookDelivery(SQLModel, table=True):
    """One delivery attempt of an event (visible to admins)."""

    __tablename__ = "webhook_delivery"
    __table_args__ = (Index("ix_webhook_delivery_task", "task_id", "id"),)

    id: int | None = Field(default=None, primary_key=True)
    event_id: int = Field(foreign_key="webhook_event.id", index=True)
    task_id: int = Field(foreign_key="task.id")
    attempt: int
    url: str = Field(max_length=2048)
    attempted_at: float
    duration_ms: float
    status_code: int | None = None
    ok: bool
    error: str | None = None


class Opinion(SQLModel, table=True):
    """One reviewer's answer on a case; only a case's *final* label enters the label log.

    Every label given through the queue is an opinion (one per reviewer and case, which
    the unique constraint enforces); a case needing several (overlap, a second opinion)
    keeps its opinions here until they agree or a lead decides. Answers on gold cases are
    opinions too (``role="gold"``), checked against the known label.
    """

    __tablename__ = "opinion"
    __table_args__ = (
        UniqueConstraint("case_id", "key_id", name="uq_opinion_case_key"),
        Index("ix_opinion_task", "task_id", "id"),
        Index("ix_opinion_key", "key_id", "id"),
    )

    id: int | None = Field(default=None, primary_key=True)
    task_id: int = Field(foreign_key="task.id")
    case_id: str = Field(foreign_key="case.id", max_length=32)
    key_id: str = Field(max_length=32)
    reviewer: str | None = None
    label: str
    role: str = Field(max_length=16)  # review | lead | gold
    lease_id: str | None = Field(default=None, max_length=32)
    claimed_at: float | None = None
    created_at: float
    final_label: str | None = None  # the case's final (or gold) label, once known
    agrees: bool | None = None  # label == final_label


class GoldCase(SQLModel, table=True):
    """An admin-marked case with a known label, served to reviewers at the task's gold rate."""

    __tablename__ = "gold_case"
    __table_args__ = (Index("ix_gold_case_task", "task_id", "created_at"),)

    case_id: str = Field(primary_key=True, foreign_key="case.id", max_length=32)
    task_id: int = Field(foreign_key="task.id")
    label: str
    created_at: float


class AuditLog(SQLModel, table=True):
    """The append-only audit trail: one row per state change, chained by hash.

    Rows form chains (one per task, ``chain`` = task id, and ``0`` for the rest); each
    row's ``hash`` covers its fields, the ``digest`` of its payload and the previous row's
    hash in its chain (``prev_hash``). See :mod:`api.services.audit`.
    """

    __tablename__ = "audit_log"
    __table_args__ = (
        Index("ix_audit_chain_seq", "chain", "seq", unique=True),
        Index("ix_audit_task_id", "task", "id"),
        Index("ix_audit_subject", "subject"),
        Index("ix_audit_action_id", "action", "id"),
    )

    id: int | None = Field(default=None, primary_key=True)
    chain: int
    seq: int
    at: float
    actor_id: str = Field(max_length=32)
    actor_name: str = Field(max_length=128)
    actor_role: str = Field(max_length=16)
    action: str = Field(max_length=32)
    task: str | None = Field(default=None, max_length=64)
    subject: str | None = Field(default=None, max_length=64)
    before: dict | None = Field(
        default=None, sa_column=Column(JSON(none_as_null=True), nullable=True)
    )
    after: dict | None = Field(
        default=None, sa_column=Column(JSON(none_as_null=True), nullable=True)
    )
    redacted: bool = False
    digest: str = Field(max_length=64)
    prev_hash: str = Field(max_length=64)
    hash: str = Field(max_length=64)
