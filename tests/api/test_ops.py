def test_healthz_and_readyz(client):
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/readyz").status_code == 200
    assert client.head("/healthz").status_code == client.head("/readyz").status_code == 200


def test_prometheus_metrics_per_route_and_task(api):
    api.create_task()
    api.send("claims", {"amount": 1, "country": "fr", "note": "x", "vip": True})
    text = api.client.get("/metrics").text
    assert (
        'tierline_requests_total{method="POST",route="/v1/tasks/{task}/cases",status="201"}' in text
    )
    assert "tierline_request_seconds_bucket" in text
    assert 'tierline_cases_total{route="assist",task="claims"} 1.0' in text
    for gauge in ("queue_depth", "labels", "model_version", "automation_rate"):
        assert f'tierline_{gauge}{{task="claims"}}' in text
