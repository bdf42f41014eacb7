"""Every kind of bad input gets a 4xx naming the problem, and changes nothing stored."""

import pytest

GOOD = {"amount": 120.5, "country": "fr", "note": "windscreen repair", "vip": False}


@pytest.fixture
def ready(api):
    api.create_task()
    api.send("claims", GOOD)
    return api


def snapshot(api):
    return (
        api.client.get("/v1/tasks/claims/metrics", headers=api.admin).json(),
        api.client.get("/v1/tasks/claims", headers=api.admin).json(),
    )


@pytest.mark.parametrize(
    ("body", "status", "names"),
    [
        ({"features": {**GOOD, "amount": "lots"}}, 422, "amount"),
        ({"features": {**GOOD, "vip": "yes"}}, 422, "vip"),
        ({"features": {**GOOD, "amount": True}}, 422, "amount"),
        ({"features": {**GOOD, "amount": 1e155}}, 422, "amount"),  # would overflow the model
        ({"features": {**GOOD, "colour": "red"}}, 422, "colour"),
        ({"features": {k: v for k, v in GOOD.items() if k != "country"}}, 422, "country"),
        ({"features": {**GOOD, "note": "x" * 20_000}}, 422, "note"),
        ({}, 422, "features"),
        ({"features": GOOD, "surprise": 1}, 422, "surprise"),
        ({"features": "not a dict"}, 422, "features"),
    ],
)
def test_bad_case_is_rejected_naming_the_field(ready, body, status, names):
    before = snapshot(ready)
    response = ready.client.post("/v1/tasks/claims/cases", json=body, headers=ready.as_("service"))
    assert response.status_code == status, response.text
    assert names in str(response.json()["detail"])
    assert snapshot(ready) == before


def test_unknown_task_is_404(ready):
    response = ready.client.post(
        "/v1/tasks/nope/cases", json={"features": GOOD}, headers=ready.as_("service")
    )
    assert response.status_code == 404 and "nope" in response.json()["detail"]


def test_invalid_json_and_empty_body_are_422(ready):
    headers = {**ready.as_("service"), "content-type": "application/json"}
    assert (
        ready.client.post(
            "/v1/tasks/claims/cases", content=b"{not json", headers=headers
        ).status_code
        == 422
    )
    assert (
        ready.client.post("/v1/tasks/claims/cases", content=b"", headers=headers).status_code == 422
    )
    deep = ready.client.post("/v1/tasks/claims/cases", content=b"[" * 100_000, headers=headers)
    assert deep.status_code == 422 and "nested too deeply" in deep.text
    huge = b'{"features": {"amount": ' + b"9" * 5000 + b"}}"  # beyond Python's int parsing
    huge_int = ready.client.post("/v1/tasks/claims/cases", content=huge, headers=headers)
    assert huge_int.status_code == 422 and "4,300 digits" in huge_int.text


@pytest.mark.parametrize(
    ("path", "raw", "field"),
    [
        ("/v1/tasks/claims/cases", b'{"features": NaN}', "features"),
        ("/v1/tasks/claims/cases/batch", b'{"cases": [{"features": Infinity}]}', "features"),
        ("/v1/tasks/claims/predict", b'{"features": -Infinity}', "features"),
        ("/v1/tasks", b'{"name": "t", "labels": ["a", "b"], "target_error": NaN}', "target_error"),
        ("/v1/cases/c_1/label", b'{"label": NaN, "lease_id": "l"}', "label"),
    ],
)
def test_nan_and_infinity_where_json_has_none_are_422_echoing_them_as_text(ready, path, raw, field):
    # Python's JSON parser reads NaN and Infinity; echoed as numbers, the 422 was a 500
    error = rejected_raw(ready, path, raw)
    assert error["loc"][-1] == field or field in error["loc"]
    assert error["input"] in ("NaN", "Infinity", "-Infinity")


@pytest.mark.parametrize("setting", ["target_error", "audit_rate", "delta", "threshold"])
def test_a_setting_that_is_nan_is_called_not_finite(ready, setting):
    headers = {**ready.admin, "content-type": "application/json"}
    raw = b'{"' + setting.encode() + b'": NaN}'
    response = ready.client.patch("/v1/tasks/claims", content=raw, headers=headers)
    assert response.status_code == 422
    [error] = response.json()["detail"]
    assert error["loc"] == ["body", setting] and error["msg"] == "Input should be a finite number"


def rejected_raw(api, path, raw):
    """POST a raw JSON body as admin; assert a 422 with one error that stored nothing."""
    headers = {**api.admin, "content-type": "application/json"}
    before = snapshot(api)
    response = api.client.post(path, content=raw, headers=headers)
    assert response.status_code == 422, response.text
    assert snapshot(api) == before
    [error] = response.json()["detail"]
    return error


@pytest.mark.parametrize(
    ("path", "raw", "loc"),
    [
        (
            "/v1/tasks/claims/cases",
            b'{"features": {"amount": 1, "country": "fr", "note": "a\\ud800", "vip": true}}',
            ["body", "features", "note"],
        ),
        (
            "/v1/tasks/claims/cases",
            b'{"external_id": "\\udc00", "features": {}}',
            ["body", "external_id"],
        ),
        ("/v1/tasks", b'{"name": "t", "labels": ["a\\ud800", "b"]}', ["body", "labels", 0]),
        ("/v1/keys", b'{"name": "k\\uDBFF", "role": "service"}', ["body", "name"]),
        (
            "/v1/tasks/claims/cases",
            b'{"external_id": "e\\u0000", "features": {}}',
            ["body", "external_id"],
        ),
        (
            "/v1/tasks/claims/cases",
            b'{"features": {"amount": 1, "country": "f\\u0000r", "note": "", "vip": true}}',
            ["body", "features", "country"],
        ),
        ("/v1/keys", b'{"name": "\\u0000", "role": "service"}', ["body", "name"]),
        ("/v1/tasks", b'{"name": "t", "labels": ["a", "b\\u0000"]}', ["body", "labels", 1]),
        (
            "/v1/cases/c_1/label",
            b'{"label": "approve", "lease_id": "\\u0000"}',
            ["body", "lease_id"],
        ),
    ],
)
def test_a_string_no_column_can_hold_is_422_naming_where(ready, path, raw, loc):
    # valid JSON, but a lone surrogate fits no UTF-8 column, hash or answer and PostgreSQL
    # refuses a NUL in any text: both were 500s
    assert rejected_raw(ready, path, raw)["loc"] == loc


def test_a_nul_in_the_path_is_404_and_in_the_query_422_naming_the_parameter(ready):
    for path in ("/v1/cases/c_1%00", "/v1/tasks/cl%00aims", "/v1/tasks/claims%00/cases"):
        response = ready.client.get(path, headers=ready.admin)
        assert response.status_code == 404, (path, response.text)
    for query in ("actor=a%00", "task=claims&subject=%00x", "action%00=x"):
        response = ready.client.get(f"/v1/audit?{query}", headers=ready.admin)
        assert response.status_code == 422, (query, response.text)
        assert response.json()["detail"][0]["loc"][0] == "query"


def test_an_escaped_surrogate_pair_is_just_a_character(ready):
    raw = (
        b'{"features": {"amount": 1, "country": "\\ud83d\\ude00", "note": "\\\\ud800", '
        b'"vip": true}}'
    )
    headers = {**ready.as_("service"), "content-type": "application/json"}
    response = ready.client.post("/v1/tasks/claims/cases", content=raw, headers=headers)
    assert response.status_code == 201, response.text
    case = ready.client.get(f"/v1/cases/{response.json()['id']}", headers=ready.admin).json()
    assert case["features"]["country"] == "\U0001f600"
    assert case["features"]["note"] == "\\ud800"  # an escaped backslash: plain text


def test_oversized_body_is_413(ready):
    headers = {**ready.as_("service"), "content-type": "application/json"}
    huge = b'{"features": {"note": "' + b"x" * (5 * 1024 * 1024) + b'"}}'
    response = ready.client.post("/v1/tasks/claims/cases", content=huge, headers=headers)
    assert response.status_code == 413


def test_batch_over_1000_is_422_and_stores_nothing(ready):
    before = snapshot(ready)
    cases = [{"features": GOOD}] * 1001
    response = ready.client.post(
        "/v1/tasks/claims/cases/batch", json={"cases": cases}, headers=ready.as_("service")
    )
    assert response.status_code == 422 and "cases" in str(response.json()["detail"])
    assert snapshot(ready) == before


def test_one_bad_case_rejects_the_whole_batch_naming_its_index(ready):
    before = snapshot(ready)
    cases = [{"features": GOOD}, {"features": GOOD}, {"features": {**GOOD, "amount": "x"}}]
    response = ready.client.post(
        "/v1/tasks/claims/cases/batch", json={"cases": cases}, headers=ready.as_("service")
    )
    assert response.status_code == 422
    detail = response.json()["detail"]
    assert detail[0]["loc"] == ["body", "cases", 2, "features", "amount"]
    assert snapshot(ready) == before


def test_bad_label_requests(ready):
    claim = ready.claim("claims")
    headers = ready.as_("reviewer")
    url = f"/v1/cases/{claim['case']['id']}/label"
    assert (
        ready.client.post(
            url, json={"label": "maybe", "lease_id": claim["lease_id"]}, headers=headers
        ).status_code
        == 422
    )
    assert (
        ready.client.post(url, json={"lease_id": claim["lease_id"]}, headers=headers).status_code
        == 422
    )
    assert (
        ready.client.post(
            url,
            json={"label": "approve", "lease_id": claim["lease_id"], "comment": "x" * 5000},
            headers=headers,
        ).status_code
        == 422
    )
    assert (
        ready.client.post(
            "/v1/cases/c_nope/label", json={"label": "approve", "lease_id": "l"}, headers=headers
        ).status_code
        == 404
    )
    assert ready.label(claim, "approve").status_code == 200


def test_a_rejected_first_call_leaves_an_inferred_schema_open(api):
    api.create_task("open", features=None)
    bad = [{"features": {"amount": 1.0}}, {"features": {"amount": "lots"}}]
    response = api.client.post("/v1/tasks/open/cases/batch", json={"cases": bad}, headers=api.admin)
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "cases", 1, "features", "amount"]
    predicted = api.client.post(
        "/v1/tasks/open/predict", json={"features": {"size": 3}}, headers=api.admin
    )
    assert predicted.status_code == 200 and predicted.json()["suggestion"] is None
    task = api.client.get("/v1/tasks/open", headers=api.admin).json()
    assert task["features"] is None  # neither call fixed it: the next case still can
    assert api.send("open", {"note": "first real case"})["route"] == "assist"
    task = api.client.get("/v1/tasks/open", headers=api.admin).json()
    assert task["features"] == {"note": "category"}


def test_an_empty_first_case_names_the_features_once(api):
    api.create_task("open", features=None)
    for path, body, loc in [
        ("cases", {"features": {}}, ["body", "features"]),
        ("cases/batch", {"cases": [{"features": {}}]}, ["body", "cases", 0, "features"]),
    ]:
        response = api.client.post(f"/v1/tasks/open/{path}", json=body, headers=api.admin)
        assert response.status_code == 422
        detail = response.json()["detail"][0]
        assert detail["loc"] == loc and "non-empty object" in detail["msg"], detail


@pytest.mark.parametrize(
    "query",
    [
        "/v1/audit?before=99999999999999999999",
        "/v1/audit?before=9223372036854775808",
        "/v1/tasks/claims/curve?after=99999999999999999999",
        "/v1/tasks/claims/webhook/events?before=99999999999999999999",
        "/v1/tasks/claims/webhook/deliveries?before=99999999999999999999",
    ],
)
def test_a_page_cursor_beyond_any_id_is_422_naming_it(ready, query):
    # no 64-bit column holds it: the database driver raised (a 500)
    response = ready.client.get(query, headers=ready.admin)
    assert response.status_code == 422, response.text
    assert response.json()["detail"][0]["loc"][-1] in ("before", "after")


def test_audit_times_without_a_zone_are_utc_back_to_year_one(ready):
    for since in ("0001-01-01", "0001-01-01T00:00:00", "2000-01-01T00:00:00"):
        response = ready.client.get(
            f"/v1/audit?since={since}&until=9999-12-31", headers=ready.admin
        )
        assert response.status_code == 200, (since, response.text)
        assert response.json()["count"] > 0
