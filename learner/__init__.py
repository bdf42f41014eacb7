"""tierline's learner: pure ML, no web or database imports.

Feature pipelines from a task schema, river models, uncertainty measures, the routing
policy, error bounds, certified automation (:mod:`learner.controller`: the risk
controller, drift monitor and tier governor) and a simulator of the whole loop
(:mod:`learner.simulate`, imported on its own: it needs pandas). Features are dicts,
labels are strings, and every model is a deterministic fold of its labels
(``learn_one(x, y)``, ``predict_proba_one(x)``).
"""

from learner.controller import (
    DEFAULT_GRID,
    MODES,
    AuditTally,
    Certificate,
    DriftMonitor,
    Evidence,
    Migration,
    RegionStats,
    RiskController,
    TaskGovernor,
    format_bound,
)
from learner.datasets import STREAM_NAMES, Stream, load_stream
from learner.errors import InvalidFeatures, InvalidLabel, InvalidSchema, LearnerError
from learner.features import build_features, source_feature
from learner.model import MODEL_FAMILIES, TaskModel, make_classifier
from learner.risk import (
    ErrorEstimate,
    clopper_pearson_lower,
    clopper_pearson_upper,
    estimate_audit_error,
    kish_effective_size,
    weighted_clopper_pearson_upper,
    weighted_upper_at_most,
)
from learner.routing import (
    ROUTES,
    RoutingDecision,
    RoutingPolicy,
    audit_draw,
    id_draw,
    queue_priority,
    review_sample_rate,
    route_case,
)
from learner.rules import Rule, apply_guardrails, held_by_rule, matching_rules, parse_rules
from learner.schema import (
    FEATURE_KINDS,
    FeatureSpec,
    infer_schema,
    parse_schema,
    schema_to_json,
    validate_features,
)
from learner.uncertainty import confidence, entropy, margin, suggestion

__all__ = [
    "DEFAULT_GRID",
    "FEATURE_KINDS",
    "MODEL_FAMILIES",
    "MODES",
    "ROUTES",
    "AuditTally",
    "STREAM_NAMES",
    "Certificate",
    "DriftMonitor",
    "ErrorEstimate",
    "Evidence",
    "FeatureSpec",
    "InvalidFeatures",
    "InvalidLabel",
    "InvalidSchema",
    "LearnerError",
    "Migration",
    "RegionStats",
    "RiskController",
    "RoutingDecision",
    "RoutingPolicy",
    "Rule",
    "Stream",
    "TaskGovernor",
    "format_bound",
    "TaskModel",
    "apply_guardrails",
    "audit_draw",
    "id_draw",
    "build_features",
    "clopper_pearson_lower",
    "clopper_pearson_upper",
    "confidence",
    "entropy",
    "estimate_audit_error",
    "infer_schema",
    "kish_effective_size",
    "load_stream",
    "make_classifier",
    "margin",
    "held_by_rule",
    "matching_rules",
    "parse_rules",
    "parse_schema",
    "queue_priority",
    "review_sample_rate",
    "route_case",
    "schema_to_json",
    "source_feature",
    "suggestion",
    "validate_features",
    "weighted_clopper_pearson_upper",
    "weighted_upper_at_most",
]
