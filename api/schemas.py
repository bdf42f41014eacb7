"""Request and response models (never bound straight onto table rows)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

Role = Literal["admin", "service", "reviewer", "analyst"]
TaskName = Annotated[str, StringConstraints(pattern=r"^[a-z0-9_-]{1,64}$")]
LabelName = Annotated[str, StringConstraints(min_length=1, max_length=128)]


def iso(ts: float | None) -> str | None:
    """Epoch seconds → ISO 8601 in UTC (``None`` stays ``None``)."""
    return None if ts is None else datetime.fromtimestamp(ts, UTC).isoformat()


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid")


# --- keys -------------------------------------------------------------------------------
class KeyCreate(StrictModel):
    name: Annotated[str, StringConstraints(min_length=1, max_length=128)]
    role: Role


class KeyPublic(BaseModel):
    id: str
    name: str
    role: Role
    created_at: str | None
    revoked: bool
    last_used_at: str | None = None


class KeyCreated(BaseModel):
    id: str
    name: str
    role: Role
    key: str


class KeysPublic(BaseModel):
    data: list[KeyPublic]
    count: int


class Me(BaseModel):
    id: str
    name: str
    role: Role


# --- tasks ------------------------------------------------------------------------------
class Rule(StrictModel):
    """A guardrail: matching cases always go to a person."""

    feature: Annotated[str, StringConstraints(min_length=1, max_length=64)]
    op: Literal[">", ">=", "<", "<=", "==", "!=", "in", "not_in", "missing"]
    value: Any = None


class TaskSettings(StrictModel):
    target_error: float = Field(0.05, gt=0, lt=1)
    audit_rate: float = Field(0.05, gt=0, le=1)
    min_labels: int = Field(50, ge=0, le=1_000_000)
    threshold: float = Field(0.9, ge=0, le=1)
    threshold_policy: Literal["certified", "fixed"] = "certified"
    delta: float = Field(0.05, gt=0, lt=1)


class TaskCreate(TaskSettings):
    name: TaskName
    labels: Annotated[list[LabelName], Field(min_length=2, max_length=100)]
    features: dict[str, Any] | None = None
    model: Literal["linear", "forest"] = "linear"
    rules: Annotated[list[Rule], Field(max_length=100)] = []

    @field_validator("labels")
    @classmethod
    def _distinct(cls, labels: list[str]) -> list[str]:
        if len(set(labels)) != len(labels):
            raise ValueError("labels must be distinct")
        return labels


class TaskUpdate(StrictModel):
    target_error: float | None = Field(None, gt=0, lt=1)
    audit_rate: float | None = Field(None, gt=0, le=1)
    min_labels: int | None = Field(None, ge=0, le=1_000_000)
    threshold: float | None = Field(None, ge=0, le=1)
    threshold_policy: Literal["certified", "fixed"] | None = None
    delta: float | None = Field(None, gt=0, lt=1)
    automation: Literal["on", "off"] | None = None


class TaskPublic(BaseModel):
    name: str
    labels: list[str]
    features: dict[str, Any] | None
    target_error: float
    audit_rate: float
    min_labels: int
    threshold: float
    threshold_policy: Literal["certified", "fixed"]
    threshold_in_force: float | None
    mode_reason: str | None
    delta: float
    model: str
    rules: list[dict[str, Any]]
    mode: Literal["assist", "automated", "suspended"]
    automation: Literal["on", "off"]
    model_version: int
    created_at: str | None


class TasksPublic(BaseModel):
    data: list[TaskPublic]
    count: int


# --- cases ------------------------------------------------------------------------------
Features = Annotated[dict[str, Any], Field(max_length=512)]


class CaseCreate(StrictModel):
    external_id: Annotated[str, StringConstraints(min_length=1, max_length=256)] | None = None
    features: Features


class CaseBatch(StrictModel):
    cases: Annotated[list[CaseCreate], Field(min_length=1, max_length=1000)]


class PredictRequest(StrictModel):
    features: Features


class Contribution(BaseModel):
    feature: str
    contribution: float


class Prediction(BaseModel):
    """The scores and the route a case would take."""

    task: str
    route: Literal["auto", "review", "assist"]
    suggestion: str | None
    confidence: float
    proba: dict[str, float]
    threshold: float
    audit: bool
    reasons: list[str]
    propensity: float
    model_version: int


class CasePublic(Prediction):
    id: str
    external_id: str | None
    status: Literal["decided", "pending"]
    decision: str | None
    created_at: str | None


class CaseDetail(CasePublic):
    features: dict[str, Any]
    label: str | None
    labelled_by: str | None
    labelled_at: str | None
    explanation: list[Contribution] = []


class CaseBatchResult(BaseModel):
    results: list[CasePublic]


# --- review -----------------------------------------------------------------------------
class Claim(BaseModel):
    case: CaseDetail
    lease_id: str
    lease_expires_at: str | None


class ClaimRequest(StrictModel):
    """Optional claim body: cases to pass over (the reviewer skipped them)."""

    exclude: Annotated[
        list[Annotated[str, StringConstraints(max_length=64)]], Field(max_length=1000)
    ] = []


class LabelCreate(StrictModel):
    label: LabelName
    lease_id: Annotated[str, StringConstraints(min_length=1, max_length=64)]
    comment: Annotated[str, StringConstraints(max_length=2000)] | None = None


class Correction(StrictModel):
    label: LabelName
    comment: Annotated[str, StringConstraints(max_length=2000)] | None = None


class Release(StrictModel):
    lease_id: Annotated[str, StringConstraints(min_length=1, max_length=64)]


# --- metrics ----------------------------------------------------------------------------
class Metrics(BaseModel):
    cases: int
    automated: int
    pending: int
    labels: int
    automation_rate: float
    threshold: float | None
    mode: str
    model_version: int
    auto_error_estimate: float | None
    auto_error_upper: float | None
    target_error: float
    queue_depth: int
    audited: int
    feedback: int = 0  # downstream feedback reports (learned, but not evidence)


class CurvePointPublic(BaseModel):
    labels: int
    cases: int
    automation_rate: float
    accuracy: float | None
    threshold: float | None
    mode: str | None = None
    auto_error_estimate: float | None
    auto_error_upper: float | None
    at: str | None


class Curve(BaseModel):
    points: list[CurvePointPublic]


class HistoryEntry(BaseModel):
    at: str | None
    mode: str
    threshold: float | None
    reason: str
    n: int
    errors: int
    upper: float | None


class History(BaseModel):
    data: list[HistoryEntry]
    count: int


# --- webhooks ---------------------------------------------------------------------------
WebhookEventType = Literal[
    "case.decided", "case.corrected", "audit.disagreed", "task.mode_changed", "case.feedback"
]
WEBHOOK_EVENT_TYPES: tuple[str, ...] = WebhookEventType.__args__  # type: ignore[attr-defined]


class WebhookSet(StrictModel):
    """``PUT /v1/tasks/{task}/webhook``: where to POST the task's events, and which."""

    url: Annotated[str, StringConstraints(min_length=8, max_length=2048)]
    events: Annotated[list[WebhookEventType], Field(min_length=1)] | None = None

    @field_validator("url")
    @classmethod
    def _http_url(cls, url: str) -> str:
        from urllib.parse import urlsplit

        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("expected an http:// or https:// URL with a host")
        return url


class WebhookPublic(BaseModel):
    task: str
    url: str
    events: list[str]
    created_at: str | None
    updated_at: str | None


class WebhookEventPublic(BaseModel):
    id: str
    type: str
    task: str
    case_id: str | None
    status: Literal["pending", "delivered", "failed", "cancelled"]
    attempts: int
    created_at: str | None
    next_attempt_at: str | None
    delivered_at: str | None
    last_error: str | None
    data: dict[str, Any]


class WebhookEventsPublic(BaseModel):
    data: list[WebhookEventPublic]
    count: int


class WebhookDeliveryPublic(BaseModel):
    id: int
    event_id: str
    type: str
    case_id: str | None
    attempt: int
    url: str
    attempted_at: str | None
    duration_ms: float
    status_code: int | None
    ok: bool
    error: str | None


class WebhookDeliveriesPublic(BaseModel):
    data: list[WebhookDeliveryPublic]
    count: int


# --- feedback ---------------------------------------------------------------------------
class FeedbackCreate(StrictModel):
    """A downstream outcome for a decided case (an appeal, a chargeback)."""

    label: LabelName
    source: Annotated[str, StringConstraints(min_length=1, max_length=128)] | None = None
    comment: Annotated[str, StringConstraints(max_length=2000)] | None = None
    external_id: Annotated[str, StringConstraints(min_length=1, max_length=256)] | None = None


class FeedbackPublic(BaseModel):
    id: int
    case_id: str
    task: str
    external_id: str | None
    label: str
    source: str | None
    comment: str | None
    decision: str | None
    agrees: bool | None  # the feedback's label equals the case's decision
    reported_by: str | None
    created_at: str | None
    model_version: int


class FeedbacksPublic(BaseModel):
    data: list[FeedbackPublic]
    count: int
