def test_create_task_returns_settings_mode_and_automation(api):
    task = api.create_task(target_error=0.02)
    assert task["name"] == "claims"
    assert task["labels"] == ["approve", "reject"]
    assert task["target_error"] == 0.02
    assert task["mode"] == "assist" and task["automation"] == "on"
    assert task["features"]["amount"] == "number"


def test_create_task_twice_is_409(api):
    api.create_task()
    again = api.client.post(
        "/v1/tasks", json={"name": "claims", "labels": ["a", "b"]}, headers=api.admin
    )
    assert again.status_code == 409


def test_task_name_and_labels_are_validated(api):
    bad = [
        ({"name": "Bad Name", "labels": ["a", "b"]}, "name"),
        ({"name": "ok", "labels": ["a"]}, "labels"),
        ({"name": "ok", "labels": ["a", "a"]}, "labels"),
        ({"name": "ok", "labels": ["a", "b"], "features": {"x": "colour"}}, "x"),
        ({"name": "ok", "labels": ["a", "b"], "target_error": 2}, "target_error"),
    ]
    for body, field in bad:
        response = api.client.post("/v1/tasks", json=body, headers=api.admin)
        assert response.status_code == 422, body
        assert field in str(response.json()["detail"]), (body, response.text)
    assert api.client.get("/v1/tasks", headers=api.admin).json()["count"] == 0


def test_list_get_and_patch_task(api):
    api.create_task()
    assert api.client.get("/v1/tasks", headers=api.admin).json()["count"] == 1
    assert api.client.get("/v1/tasks/nope", headers=api.admin).status_code == 404
    patched = api.client.patch(
        "/v1/tasks/claims", json={"automation": "off", "threshold": 0.8}, headers=api.admin
    )
    assert patched.status_code == 200
    assert patched.json()["automation"] == "off" and patched.json()["threshold"] == 0.8
    assert api.client.get("/v1/tasks/claims", headers=api.admin).json()["threshold"] == 0.8


def test_patch_rejects_unknown_field(api):
    api.create_task()
    response = api.client.patch("/v1/tasks/claims", json={"name": "x"}, headers=api.admin)
    assert response.status_code == 422


def test_features_inferred_from_first_case_then_fixed(api):
    response = api.client.post(
        "/v1/tasks", json={"name": "free", "labels": ["a", "b"]}, headers=api.admin
    )
    assert response.status_code == 201 and response.json()["features"] is None
    api.send("free", {"amount": 3.5, "country": "fr", "vip": False})
    task = api.client.get("/v1/tasks/free", headers=api.admin).json()
    assert task["features"] == {"amount": "number", "country": "category", "vip": "boolean"}
    wrong = api.client.post(
        "/v1/tasks/free/cases",
        json={"features": {"amount": "x", "country": "fr", "vip": False}},
        headers=api.as_("service"),
    )
    assert wrong.status_code == 422 and "amount" in wrong.text


def test_guardrail_rule_sends_matching_cases_to_a_person(api):
    api.create_task(
        min_labels=5, threshold=0.0, rules=[{"feature": "amount", "op": ">", "value": 10000}]
    )
    api.teach("claims", 20)
    small = api.send("claims", {"amount": 50, "country": "fr", "note": "x", "vip": False})
    large = api.send("claims", {"amount": 50000, "country": "fr", "note": "x", "vip": False})
    assert small["route"] == "auto"
    assert large["route"] == "assist" and "rule: amount > 10000" in large["reasons"]


def test_invalid_rules_are_422(api):
    for rule in (
        {"feature": "ghost", "op": ">", "value": 1},
        {"feature": "amount", "op": ">", "value": "big"},
        {"feature": "amount", "op": "~", "value": 1},
        {"feature": "country", "op": "in", "value": []},
    ):
        response = api.client.post(
            "/v1/tasks",
            json={
                "name": "r",
                "labels": ["a", "b"],
                "features": {"amount": "number", "country": "category"},
                "rules": [rule],
            },
            headers=api.admin,
        )
        assert response.status_code == 422, rule
        assert "rules" in str(response.json()["detail"])
