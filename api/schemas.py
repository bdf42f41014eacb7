"""Request and response models (never bound straight onto table rows)."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from functools import lru_cache
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StringConstraints,
    field_validator,
)

from learner.controller import MIN_DELTA, MIN_TARGET_ERROR
from learner.routing import MIN_AUDIT_RATE
from learner.schema import invisible_characters, look_alike, screen_form

Role = Literal["admin", "service", "reviewer", "analyst"]
TaskName = Annotated[str, StringConstraints(pattern=r"^[a-z0-9_-]{1,64}$")]
LabelName = Annotated[str, StringConstraints(min_length=1, max_length=128)]


#: The largest id, page cursor or version a route takes: a 64-bit integer column (SQLite,
#: PostgreSQL bigint) holds it, where a larger one overflowed the driver (a 500, not a 422).
MAX_ID = 2**62


def iso(ts: float | None) -> str | None:
    """Epoch seconds → ISO 8601 in UTC (``None`` stays ``None``), exactly as
    ``datetime.fromtimestamp(ts, UTC).isoformat()`` writes it: microseconds rounded half
    to even, none written when they are 0. A batch answers 1,000 of them from one second,
    so the date and time of the second are formatted once (1.3 → 0.4 µs a time).

    >>> iso(0.0), iso(1.5), iso(1767225599.9999996)
    ('1970-01-01T00:00:00+00:00', '1970-01-01T00:00:01.500000+00:00', '2026-01-01T00:00:00+00:00')
    """
    if ts is None:
        return None
    fraction, whole = math.modf(ts)
    micro = round(fraction * 1e6)
    second = int(whole)
    if micro >= 1_000_000:
        second, micro = second + 1, micro - 1_000_000
    elif micro < 0:
        second, micro = second - 1, micro + 1_000_000
    prefix = _second(second)
    return f"{prefix}.{micro:06d}+00:00" if micro else f"{prefix}+00:00"


@lru_cache(maxsize=256)
def _second(second: int) -> str:
    return datetime.fromtimestamp(second, UTC).isoformat(timespec="seconds")[:-6]


class StrictModel(BaseModel):
    """A request body: unknown fields refused, and a NaN or infinite number too (JSON has
    none; Python's parser reads them) with "Input should be a finite number"."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


def _offer_no_null(schema: dict[str, Any]) -> None:
    """Drop ``null`` from each property's JSON schema: the model takes ``None`` for "left
    out", but a client sending ``null`` gets a 422 (:class:`PartialUpdate`)."""
    for name, prop in schema.get("properties", {}).items():
        kinds = [k for k in prop.get("anyOf", ()) if k != {"type": "null"}]
        if len(kinds) == 1:
            rest = {k: v for k, v in prop.items() if k not in ("anyOf", "default")}
            schema["properties"][name] = {**kinds[0], **rest}


class PartialUpdate(StrictModel):
    """A PATCH body: only the settings sent change. A setting sent as ``null`` is a 422
    naming it (it was ignored: a client meaning "reset" or "clear" would have been told
    nothing); leave a setting out to keep it."""

    model_config = ConfigDict(json_schema_extra=_offer_no_null)

    @field_validator("*", mode="before")
    @classmethod
    def _not_null(cls, value: Any) -> Any:
        if value is None:
            raise ValueError("null is not a value of this setting; leave it out to keep it")
        return value


# --- keys -------------------------------------------------------------------------------
#: Names the audit trail gives tierline's own actors (the bootstrap key, the system, bulk
#: imports, "tierline CLI (user)"): no key may be named like them, to pass for them.
BUILT_IN_ACTORS = frozenset({"admin (tierline_admin_key)", "tierline", "import"})


class KeyCreate(StrictModel):
    name: Annotated[str, StringConstraints(min_length=1, max_length=128)]
    role: Role
    lead: StrictBool = False  # may decide cases whose reviewers disagreed (JSON true/false)
    tasks: Annotated[list[TaskName], Field(min_length=1, max_length=100)] | None = Field(
        None, description="scope: the only tasks this key may act on (default: every task)"
    )

    @field_validator("name")
    @classmethod
    def _shown_as_written(cls, name: str) -> str:
        """A key's name is who labelled a case and who acted in the audit trail: no
        invisible characters (controls, zero-width, direction overrides) to disguise it."""
        hidden = invisible_characters(name)
        if hidden:
            raise ValueError(f"holds invisible characters ({hidden})")
        if not name.strip():
            raise ValueError("is blank (spaces only)")
        shown = screen_form(name).strip().casefold()
        if shown in BUILT_IN_ACTORS or shown.startswith("tierline cli ("):
            raise ValueError(f"{name!r} is the name of one of tierline's own actors")
        return name


class KeyUpdate(PartialUpdate):
    """``PATCH /v1/keys/{id}``: grant or withdraw the ``lead`` permission."""

    lead: StrictBool | None = None


class KeyPublic(BaseModel):
    id: str
    name: str
    role: Role
    created_at: str | None
    revoked: bool
    last_used_at: str | None = None
    lead: bool = False
    tasks: list[str] | None = None  # scope (None: every task)
    expires_at: str | None = None  # a rotated key stops working then
    rotated_to: str | None = None


class KeyCreated(BaseModel):
    id: str
    name: str
    role: Role
    key: str
    tasks: list[str] | None = None
    lead: bool = False


class KeyRotate(StrictModel):
    """``POST /v1/keys/{id}/rotate``: the old key keeps working for ``grace_seconds``."""

    grace_seconds: float = Field(3600.0, ge=0, le=30 * 86_400, strict=True)


class KeyRotated(KeyCreated):
    replaces: str
    old_key_expires_at: str | None


class KeysPublic(BaseModel):
    data: list[KeyPublic]
    count: int


class Me(BaseModel):
    id: str
    name: str
    role: Role
    lead: bool = False
    tasks: list[str] | None = None  # scope (None: every task)


# --- tasks ------------------------------------------------------------------------------
class Rule(StrictModel):
    """A guardrail: matching cases always go to a person."""

    feature: Annotated[str, StringConstraints(min_length=1, max_length=64)]
    op: Literal[">", ">=", "<", "<=", "==", "!=", "in", "not_in", "missing"]
    value: Any = None


class TaskSettings(StrictModel):
    target_error: float = Field(0.05, ge=MIN_TARGET_ERROR, lt=1, strict=True)
    audit_rate: float = Field(0.05, ge=MIN_AUDIT_RATE, le=1, strict=True)
    min_labels: int = Field(50, ge=0, le=1_000_000, strict=True)
    threshold: float = Field(0.9, ge=0, le=1, strict=True)
    threshold_policy: Literal["certified", "fixed"] = "certified"
    delta: float = Field(0.05, ge=MIN_DELTA, lt=1, strict=True)
    # label quality
    labels_per_case: int = Field(1, ge=1, le=10, strict=True)
    second_opinion_confidence: float = Field(0.98, ge=0, le=1, strict=True)
    second_opinion_agreement: float = Field(0.8, ge=0, le=1, strict=True)
    second_opinion_share: float = Field(0.0, ge=0, le=1, strict=True)
    gold_rate: float = Field(0.0, ge=0, le=0.5, strict=True)


class TaskCreate(TaskSettings):
    name: TaskName
    labels: Annotated[list[LabelName], Field(min_length=2, max_length=100)]
    features: dict[str, Any] | None = None
    model: Literal["linear", "forest"] = "linear"
    rules: Annotated[list[Rule], Field(max_length=100)] = []
    automation: Literal["on", "off"] = "on"  # "off": people decide every case until PATCHed

    @field_validator("labels")
    @classmethod
    def _distinguishable(cls, labels: list[str]) -> list[str]:
        """Labels a reviewer can tell apart on screen: no surrounding spaces, no invisible
        characters (zero-width, direction overrides, controls), and distinct also as
        they look on screen ("é" written as one character or as "e" and an accent, "ﬁx"
        and "fix", a Cyrillic "а" and a Latin "a": :func:`learner.schema.screen_form`)."""
        for i, label in enumerate(labels):
            if label != label.strip():
                raise ValueError(f"labels[{i}] {label!r} has leading or trailing spaces")
            hidden = invisible_characters(label)
            if hidden:
                raise ValueError(
                    f"labels[{i}] {label!r} holds invisible characters ({hidden}): "
                    "reviewers could not tell it from another label"
                )
        pair = look_alike(labels)
        if pair is not None:
            raise ValueError(
                f"labels must look different on screen: {pair[0]!r} and {pair[1]!r} do not"
            )
        return labels


class TaskUpdate(PartialUpdate):
    """Only the settings sent change; leave a setting out to keep it."""

    target_error: float | None = Field(None, ge=MIN_TARGET_ERROR, lt=1, strict=True)
    audit_rate: float | None = Field(None, ge=MIN_AUDIT_RATE, le=1, strict=True)
    min_labels: int | None = Field(None, ge=0, le=1_000_000, strict=True)
    threshold: float | None = Field(None, ge=0, le=1, strict=True)
    threshold_policy: Literal["certified", "fixed"] | None = None
    delta: float | None = Field(None, ge=MIN_DELTA, lt=1, strict=True)
    automation: Literal["on", "off"] | None = None
    labels_per_case: int | None = Field(None, ge=1, le=10, strict=True)
    second_opinion_confidence: float | None = Field(None, ge=0, le=1, strict=True)
    second_opinion_agreement: float | None = Field(None, ge=0, le=1, strict=True)
    second_opinion_share: float | None = Field(None, ge=0, le=1, strict=True)
    gold_rate: float | None = Field(None, ge=0, le=0.5, strict=True)
    rules: Annotated[list[Rule], Field(max_length=100)] | None = None


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
    labels_per_case: int = 1
    second_opinion_confidence: float = 0.98
    second_opinion_agreement: float = 0.8
    second_opinion_share: float = 0.0
    gold_rate: float = 0.0


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
    threshold: float | None  # in force for this case; null when nothing was automated
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
class OpinionShown(BaseModel):
    """A reviewer's answer, as a lead deciding a disagreement sees it."""

    reviewer: str | None
    label: str


class Claim(BaseModel):
    case: CaseDetail
    lease_id: str
    lease_expires_at: str | None
    # a case whose reviewers disagreed, claimed by a lead: what each of them answered
    disagreement: list[OpinionShown] | None = None


class QueueStatus(BaseModel):
    """What a reviewer sees of a task's progress: the backlog and the automated share."""

    task: str
    mode: str
    queue_depth: int
    automation_rate: float
    cases: int = 0  # cases so far: the automated share means nothing before the first


class ClaimRequest(StrictModel):
    """Optional claim body: cases to pass over (the reviewer skipped them), and whether a
    case this key already holds comes first (``resume``: a reviewer whose page reloaded
    gets back the cases it held, with their leases, instead of finding them locked)."""

    exclude: Annotated[
        list[Annotated[str, StringConstraints(max_length=64)]], Field(max_length=1000)
    ] = []
    resume: StrictBool = False  # JSON true/false, not "yes" or 1


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
    # label quality
    second_opinions: int = 0  # cases sent to a second reviewer
    second_opinion_share: float = 0.0  # of the labels (bounded by the task setting)
    escalated: int = 0  # cases sent to a lead after their reviewers disagreed
    agreement: float | None = None  # raw agreement between reviewers on the same case
    kappa: float | None = None  # Fleiss' kappa over cases with two or more opinions


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
    next_after: int | None = None  # with ?limit=: pass as ?after= for the next page


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

    url: Annotated[str, StringConstraints(max_length=2048)]  # the scheme and host: below
    events: Annotated[list[WebhookEventType], Field(min_length=1)] | None = None
    rotate_secret: StrictBool = Field(False, description="replace the webhook's own secret")

    @field_validator("url")
    @classmethod
    def _http_url(cls, url: str) -> str:
        from urllib.parse import urlsplit

        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("expected an http:// or https:// URL with a host")
        if any(c.isspace() or not c.isprintable() for c in url):
            raise ValueError("a URL holds no spaces, line breaks or control characters")
        return url


class WebhookPublic(BaseModel):
    task: str
    url: str
    events: list[str]
    created_at: str | None
    updated_at: str | None
    secret: str | None = Field(
        None, description="the webhook's own secret: it signs Tierline-Webhook-Signature"
    )


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


# --- label quality ----------------------------------------------------------------------
class GoldCreate(StrictModel):
    """A gold case: features and the label known to be right."""

    features: Features
    label: LabelName


class GoldBatch(StrictModel):
    cases: Annotated[list[GoldCreate], Field(min_length=1, max_length=1000)]


class GoldPublic(BaseModel):
    case_id: str
    label: str
    created_at: str | None
    answers: int = 0
    correct: int = 0


class GoldsPublic(BaseModel):
    data: list[GoldPublic]
    count: int


class ReviewerQuality(BaseModel):
    """One reviewer's work and quality on a task."""

    key_id: str
    reviewer: str | None
    labels: int  # answers on real cases (opinions), gold excluded
    final_labels: int  # of which became the case's final label
    checked: int  # answers on cases that more than one person labelled
    agreement_with_final: float | None  # share of checked answers equal to the final label
    audited: int  # final labels of theirs that a later correction or lead re-examined
    agreement_with_audits: float | None  # share of those the re-examination upheld
    gold_answers: int
    gold_accuracy: float | None
    recent_agreement: float | None  # over their last answers with a known final/gold label
    labels_per_hour: float | None  # while active (gaps over 10 minutes are breaks)
    seconds_per_case: float | None  # median time from claim to label
    second_opinions_triggered: int  # of their answers that were sent to a second reviewer
    lead: bool = False


class ReviewersPublic(BaseModel):
    task: str
    data: list[ReviewerQuality]
    count: int


class ReviewerPair(BaseModel):
    a: str
    b: str
    cases: int
    agreement: float | None
    cohen_kappa: float | None


class AgreementPublic(BaseModel):
    """Agreement between reviewers on cases that two or more of them labelled."""

    task: str
    labels: list[str]
    cases: int
    pairs: int
    raw_agreement: float | None
    cohen_kappa: float | None  # pooled over every pair of reviewers on a case
    fleiss_kappa: float | None
    confusion: list[list[int]]  # pairs of opinions, label x label (symmetric)
    per_label: dict[str, float | None]  # specific agreement on each label
    per_label_kappa: dict[str, float | None] = {}  # Cohen's kappa of each label vs the rest
    label_pairs: list[dict[str, Any]]  # {a, b, pairs}: how often two labels were paired
    reviewer_pairs: list[ReviewerPair]
    second_opinions: int
    second_opinion_share: float
    escalated: int


# --- security and governance -------------------------------------------------------------
class AuditActor(BaseModel):
    id: str
    name: str
    role: str


class AuditEntry(BaseModel):
    """One state change: who, when, what, before and after, and its place in the chain."""

    id: int
    at: str | None
    actor: AuditActor
    action: str
    task: str | None
    subject: str | None
    before: dict[str, Any] | None
    after: dict[str, Any] | None
    redacted: bool
    chain: int
    seq: int
    prev_hash: str
    hash: str


class AuditPage(BaseModel):
    data: list[AuditEntry]
    count: int
    next_before: int | None  # pass as ``before`` for the next (older) page


class ModelSnapshotPublic(BaseModel):
    """A kept snapshot of a task's model: a version one can activate (roll back to)."""

    id: int
    version: int
    last_label_id: int
    family: str
    created_at: str | None
    signed: bool  # its HMAC checks out (a snapshot that fails is never loaded)


class ModelsPublic(BaseModel):
    task: str
    active_version: int
    data: list[ModelSnapshotPublic]
    count: int
