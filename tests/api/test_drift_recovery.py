"""The live model after drift: a challenger replaces it, as a deterministic fold of the log."""

from __future__ import annotations

import pickle
from types import SimpleNamespace

from api.live import LiveModel
from learner import TaskGovernor, TaskModel, parse_schema
from learner.routing import RoutingPolicy, route_case

SCHEMA = parse_schema({"v": "number", "w": "number"})
PROBES = [{"v": v / 3.0, "w": (v % 5) - 2.0} for v in range(-30, 31)]


def fresh() -> LiveModel:
    model = TaskModel(["a", "b"], SCHEMA)
    return LiveModel(1, model, TaskGovernor(target_error=0.05, min_labels=50, window=1000))


def case(i: int) -> tuple[dict, str]:
    """``v > 0`` means "b"; from case 3,000 on every label is swapped."""
    v = (1.0 + (i * 37) % 90 / 10.0) * (1 if i * 13 % 7 < 3 else -1)  # |v| >= 1: clear cut
    x = {"v": v, "w": float(i % 5) - 2.0}
    y = "b" if v > 0 else "a"
    if i >= 3000:
        y = "a" if y == "b" else "b"
    return x, y


def run(n: int) -> tuple[LiveModel, list[tuple[int, SimpleNamespace, dict]]]:
    """Route cases with the live model and fold the labels a person would give."""
    live, log = fresh(), []
    for i in range(n):
        x, y = case(i)
        on = live.governor.mode == "automated"
        policy = RoutingPolicy(
            threshold=live.governor.threshold if on else 1.0,
            min_labels=50,
            audit_rate=live.governor.audit_rate(0.05),
            automation_on=on,
        )
        d = route_case(
            live.model.predict_proba_one(x),
            policy=policy,
            n_labels=live.version,
            task="t",
            case_key=str(i),
        )
        if d.route == "auto" and not d.audit:
            continue  # decided by the model: nobody labels it
        row = SimpleNamespace(
            label=y,
            suggestion=d.suggestion,
            kind="review",
            case_id=f"c{i}",
            confidence=d.confidence,
            propensity=d.propensity,
            audit=d.audit,
            route=d.route,
            guarded=False,
            audit_weight=None,
        )
        log.append((len(log) + 1, row, x))
        live.fold(len(log), row, x)
    return live, log


def state(live: LiveModel) -> tuple:
    return (
        [live.model.predict_proba_one(x) for x in PROBES],
        live.version,
        live.governor.mode,
        live.governor.threshold,
        live.governor.controller.to_state(),
        live.challenger is None,
        live.migrations,  # each with the label that caused it
    )


def test_after_rotated_labels_a_challenger_replaces_the_model_and_it_recertifies():
    live, _ = run(4500)
    migrations = [m for _, m in live.migrations]
    reasons = [m.reason for m in migrations]
    drift = next(i for i, r in enumerate(reasons) if "drift detected" in r)
    # the reason names the label's place in the log: the governor saw one label fewer
    # (the first, before any model, is no evidence)
    at = migrations[drift].at_label
    assert reasons[drift].startswith(f"suspended: drift detected at label {at + 1:,} (")
    replaced = next(i for i, r in enumerate(reasons) if "model replaced" in r)
    assert drift < replaced
    assert any(m.mode == "automated" for m in migrations[replaced:])  # re-certified
    x, y = case(4499)
    proba = live.model.predict_proba_one(x)
    assert max(proba, key=proba.get) == y  # the new concept


def test_replaying_the_log_or_resuming_a_snapshot_ends_in_the_same_model():
    live, log = run(3600)
    replayed = fresh()
    for label_id, row, x in log:
        replayed.fold(label_id, row, x)
    assert state(replayed) == state(live)

    # a snapshot taken while a challenger races the model, then the rest of the log
    first = fresh()
    cut = next(
        k for k in range(len(log)) if (first.fold(*log[k]) or True) and first.challenger is not None
    )
    blob = pickle.dumps(
        {"model": first.model, "governor": first.governor, "challenger": first.challenger}
    )
    loaded = pickle.loads(blob)
    resumed = LiveModel(1, loaded["model"], loaded["governor"], challenger=loaded["challenger"])
    resumed.last_label_id = first.last_label_id
    resumed.migrations = list(first.migrations)
    for label_id, row, x in log[cut + 1 :]:
        resumed.fold(label_id, row, x)
    assert state(resumed) == state(live)


def test_a_suspension_by_the_bound_alone_also_starts_a_challenger():
    """A sudden change can break the bound before the drift monitor fires (audits find
    errors bit by bit): the fresh model races the live one from that suspension too."""
    live = fresh()
    label_id = 0

    def fold(x: dict, y: str) -> None:
        nonlocal label_id
        proba = live.model.predict_proba_one(x)
        suggestion = max(proba, key=proba.get) if live.version else None
        row = SimpleNamespace(
            label=y, suggestion=suggestion, kind="review", case_id=f"c{label_id}",
            confidence=max(proba.values()), propensity=1.0, audit=False, route="review",
            guarded=False,
            audit_weight=None,
        )  # fmt: skip
        label_id += 1
        live.fold(label_id, row, x)

    i = 0
    while live.governor.mode != "automated":
        fold(*case(i))
        i += 1
    while live.governor.mode == "automated":  # reviewed cases of the region turn wrong
        x, y = case(i)
        fold(x, "a" if y == "b" else "b")
        i += 1
    assert live.governor.mode == "suspended" and live.governor.n_detections == 0
    assert live.challenger is not None
