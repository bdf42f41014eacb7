from tests.utils.factories import auth


def test_healthz_and_readyz(client):
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/readyz").status_code == 200
    assert client.head("/healthz").status_code == client.head("/readyz").status_code == 200


def test_every_operation_in_the_schema_has_its_own_id(client):
    """Code generators key an operation by its id: HEAD probes must not repeat GET's."""
    paths = client.get("/openapi.json").json()["paths"]
    ids = [op["operationId"] for item in paths.values() for op in item.values()]
    assert len(ids) == len(set(ids))
    assert "get" in paths["/healthz"] and "get" in paths["/readyz"]


def test_prometheus_metrics_are_for_keys_that_read_every_tasks_metrics(api):
    api.create_task()
    assert api.client.get("/metrics").status_code == 401
    assert api.client.get("/metrics", headers=api.as_("reviewer")).status_code == 403
    assert api.client.get("/metrics", headers=api.as_("service")).status_code == 403
    scoped = api.client.post(
        "/v1/keys", json={"name": "one", "role": "analyst", "tasks": ["claims"]}, headers=api.admin
    ).json()["key"]
    assert api.client.get("/metrics", headers=auth(scoped)).status_code == 403
    assert api.client.get("/metrics", headers=api.admin).status_code == 200


def test_prometheus_metrics_per_route_and_task(api):
    api.create_task()
    api.send("claims", {"amount": 1, "country": "fr", "note": "x", "vip": True})
    text = api.client.get("/metrics", headers=api.as_("analyst")).text
    assert (
        'tierline_requests_total{method="POST",route="/v1/tasks/{task}/cases",status="201"}' in text
    )
    assert "tierline_request_seconds_bucket" in text
    assert 'tierline_cases_total{route="assist",task="claims"} 1.0' in text
    for gauge in ("queue_depth", "labels", "model_version", "automation_rate"):
        assert f'tierline_{gauge}{{task="claims"}}' in text
