import random
from types import SimpleNamespace

from api.schemas import CaseBatchResult, CasePublic
from api.services.cases import guardrails
from learner import id_draw, parse_schema
from tests.utils.factories import claims_case

CASE = {"amount": 120.5, "country": "fr", "note": "windscreen repair", "vip": False}
CASE_FIELDS = {
    "id",
    "task",
    "external_id",
    "status",
    "route",
    "decision",
    "suggestion",
    "confidence",
    "proba",
    "threshold",
    "audit",
    "reasons",
    "model_version",
    "created_at",
}


def test_case_in_cold_start_goes_to_assist_with_reason(api):
    api.create_task()
    case = api.send("claims", CASE)
    assert set(case) >= CASE_FIELDS
    assert case["route"] == "assist" and case["status"] == "pending"
    assert case["decision"] is None
    assert any("cold start" in r for r in case["reasons"])
    assert set(case["proba"]) == {"approve", "reject"}
    assert case["propensity"] == 1.0


def test_no_suggestion_before_any_model(api):
    # CONTRACT.md: suggestion is "the model's best label (null before any model)"
    api.create_task()
    first = api.send("claims", CASE)
    assert first["suggestion"] is None and first["model_version"] == 0
    assert first["confidence"] == max(first["proba"].values())  # even odds, no winner
    assert api.label(api.claim("claims"), "approve").status_code == 200
    after = api.send("claims", CASE)
    assert after["model_version"] == 1 and after["suggestion"] in ("approve", "reject")


def test_external_id_makes_the_call_idempotent(api):
    api.create_task()
    headers = api.as_("service")
    first = api.client.post(
        "/v1/tasks/claims/cases", json={"external_id": "ext-1", "features": CASE}, headers=headers
    )
    again = api.client.post(
        "/v1/tasks/claims/cases", json={"external_id": "ext-1", "features": CASE}, headers=headers
    )
    assert first.status_code == 201 and again.status_code == 200
    assert again.json() == first.json()
    assert api.client.get("/v1/tasks/claims/metrics", headers=api.admin).json()["cases"] == 1
    # decided by a reviewer since: a repeat still gets the first result, in a batch too
    claim = api.claim("claims")
    assert claim is not None and claim["case"]["id"] == first.json()["id"]
    assert api.label(claim, "reject").status_code == 200
    repeat = api.client.post(
        "/v1/tasks/claims/cases", json={"external_id": "ext-1", "features": CASE}, headers=headers
    )
    assert repeat.status_code == 200 and repeat.json() == first.json()
    batch = api.client.post(
        "/v1/tasks/claims/cases/batch",
        json={"cases": [{"external_id": "ext-1", "features": CASE}]},
        headers=headers,
    )
    assert batch.json()["results"] == [first.json()]
    now = api.client.get(f"/v1/cases/{first.json()['id']}", headers=headers).json()
    assert (now["status"], now["decision"], now["label"]) == ("decided", "reject", "reject")


def test_batch_keeps_order_and_dedupes_external_ids(api):
    api.create_task()
    rng = random.Random(1)
    cases = [{"features": claims_case(rng)[0], "external_id": f"e{i}"} for i in range(5)]
    cases.append({"features": CASE, "external_id": "e0"})
    response = api.client.post(
        "/v1/tasks/claims/cases/batch", json={"cases": cases}, headers=api.as_("service")
    )
    assert response.status_code == 200
    results = response.json()["results"]
    assert [r["external_id"] for r in results] == ["e0", "e1", "e2", "e3", "e4", "e0"]
    assert results[5]["id"] == results[0]["id"]
    assert api.client.get("/v1/tasks/claims/metrics", headers=api.admin).json()["cases"] == 5
    # answered from plain dicts, not models: the schema it documents still holds, field
    # for field as a single case is answered, and a repeat answers as first stored
    assert CaseBatchResult.model_validate(response.json()).results[1].external_id == "e1"
    single = api.send("claims", CASE)
    assert set(results[1]) == set(single) == set(CasePublic.model_fields)
    again = api.client.post(
        "/v1/tasks/claims/cases/batch", json={"cases": cases[:2]}, headers=api.as_("service")
    )
    assert again.json()["results"] == results[:2]


def test_get_case_has_features_and_label_fields(api):
    api.create_task()
    case = api.send("claims", CASE)
    detail = api.client.get(f"/v1/cases/{case['id']}", headers=api.as_("analyst")).json()
    assert detail["features"] == CASE
    assert detail["label"] is None and detail["labelled_by"] is None
    assert api.client.get("/v1/cases/c_missing", headers=api.admin).status_code == 404


def test_predict_stores_nothing(api):
    api.create_task()
    response = api.client.post(
        "/v1/tasks/claims/predict", json={"features": CASE}, headers=api.as_("service")
    )
    assert response.status_code == 200
    assert response.json()["route"] == "assist"
    assert api.client.get("/v1/tasks/claims/metrics", headers=api.admin).json()["cases"] == 0


def test_predict_draws_no_audit(api):
    """A probe's predictions said "audit sample" for 17 of 183 feature sets, sent cases for
    8, overlapping in 1: nobody audits a prediction, which stores nothing."""
    api.create_task(min_labels=2, threshold=0.5, audit_rate=1.0)
    for _ in range(2):
        api.send("claims", CASE)
        assert api.label(api.claim("claims"), "approve").status_code == 200
    predicted = api.client.post(
        "/v1/tasks/claims/predict", json={"features": CASE}, headers=api.as_("service")
    ).json()
    assert predicted["route"] == "auto" and predicted["audit"] is False
    assert not any("sample" in reason for reason in predicted["reasons"])
    sent = api.send("claims", CASE)
    assert sent["route"] == "auto" and sent["audit"] is True  # every one, at rate 1


def test_after_cold_start_confident_cases_are_automated_and_audits_sampled(api):
    api.create_task(min_labels=10, threshold=0.6, audit_rate=0.3)
    api.teach("claims", 60)
    rng = random.Random(7)
    routed = [api.send("claims", claims_case(rng)[0]) for _ in range(80)]
    auto = [c for c in routed if c["route"] == "auto"]
    assert auto, "expected some automated cases after learning"
    for case in auto:
        assert case["status"] == "decided" and case["decision"] == case["suggestion"]
        assert case["confidence"] >= case["threshold"]
        assert any(">= threshold" in r for r in case["reasons"])
        assert case["propensity"] == 0.3
        assert case["audit"] == (id_draw(case["id"]) < 0.3)  # the id's random bits decide
    assert any(c["audit"] for c in auto)
    for case in routed:
        if case["route"] == "review":
            assert case["status"] == "pending" and case["confidence"] < case["threshold"]


def test_kill_switch_sends_everything_to_assist(api):
    api.create_task(min_labels=5, threshold=0.5)
    api.teach("claims", 30)
    api.client.patch("/v1/tasks/claims", json={"automation": "off"}, headers=api.admin)
    case = api.send("claims", CASE)
    assert case["route"] == "assist"
    assert any("switched off" in r for r in case["reasons"])
    assert api.client.get("/v1/tasks/claims", headers=api.admin).json()["mode"] == "assist"


def test_feature_names_as_data_sets_spell_them(api):
    # columns as scikit-learn and CSV files name them: spaces, brackets, slashes, digits
    # first, accents; inferred from the first case
    rng = random.Random(5)
    api.create_task("iris", labels=["setosa", "other"], features=None, min_labels=5)
    for _ in range(12):
        length = rng.uniform(4, 8)
        features = {"sepal length (cm)": length, "od280/od315": "a", "2fa": True, "été": "x y"}
        sent = api.send("iris", features)
        held = api.claim("iris")
        assert api.label(held, "setosa" if length < 6 else "other").status_code == 200
    task = api.client.get("/v1/tasks/iris", headers=api.admin).json()
    assert set(task["features"]) == {"sepal length (cm)", "od280/od315", "2fa", "été"}
    case = api.client.get(f"/v1/cases/{sent['id']}", headers=api.admin).json()
    assert case["features"]["sepal length (cm)"] == features["sepal length (cm)"]
    explained = {c["feature"] for c in case["explanation"]}
    assert explained and explained <= set(task["features"])  # mapped back to the names
    bad = api.client.post(
        "/v1/tasks/iris/cases", json={"features": {"ratio:debt": 1}}, headers=api.admin
    )
    assert bad.status_code == 422 and bad.json()["detail"][0]["loc"][-1] == "ratio:debt"


def test_guardrails_are_parsed_once_per_setting_and_schema():
    task = SimpleNamespace(rules=[{"feature": "amount", "op": ">", "value": 10}])
    live = SimpleNamespace(model=SimpleNamespace(schema=parse_schema({"amount": "number"})))
    live.rules = None
    first = guardrails(task, live)  # type: ignore[arg-type]
    assert guardrails(task, live) is first  # type: ignore[arg-type]
    live.model = SimpleNamespace(schema=parse_schema({"amount": "number"}))  # a new model
    assert guardrails(task, live) is not first  # type: ignore[arg-type]
    task = SimpleNamespace(rules=[{"feature": "amount", "op": ">", "value": 99}])  # new row
    assert guardrails(task, live)[0].value == 99  # type: ignore[arg-type]
