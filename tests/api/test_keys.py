from tests.utils.factories import ADMIN_KEY, auth


def test_create_key_shows_key_once_and_lists_without_it(api):
    created = api.client.post(
        "/v1/keys", json={"name": "svc-a", "role": "service"}, headers=api.admin
    )
    assert created.status_code == 201
    body = created.json()
    assert set(body) == {"id", "name", "role", "key"}
    assert body["key"].startswith("tl_")
    listed = api.client.get("/v1/keys", headers=api.admin).json()
    assert listed["count"] == 1
    row = listed["data"][0]
    assert {"id", "name", "role", "created_at", "revoked"} <= set(row)
    assert "key" not in row and body["key"] not in str(listed)


def test_keys_are_stored_as_hashes(api, settings):
    from sqlalchemy import create_engine, text

    key = api.key("service")
    engine = create_engine(settings.database_url)
    with engine.connect() as conn:
        stored = conn.execute(text("select key_hash from api_key")).fetchall()
    engine.dispose()
    assert stored and all(key not in row[0] for row in stored)
    assert all(len(row[0]) == 64 for row in stored)


def test_revoked_key_gets_401(api):
    created = api.client.post(
        "/v1/keys", json={"name": "r", "role": "reviewer"}, headers=api.admin
    ).json()
    assert api.client.get("/v1/me", headers=auth(created["key"])).status_code == 200
    assert api.client.delete(f"/v1/keys/{created['id']}", headers=api.admin).status_code == 204
    assert api.client.get("/v1/me", headers=auth(created["key"])).status_code == 401
    assert api.client.get("/v1/keys", headers=api.admin).json()["data"][0]["revoked"] is True


def test_revoke_unknown_key_is_404(api):
    assert api.client.delete("/v1/keys/k_nope", headers=api.admin).status_code == 404


def test_no_key_and_unknown_key_get_401(client):
    assert client.get("/v1/tasks").status_code == 401
    assert client.get("/v1/tasks", headers=auth("tl_wrong")).status_code == 401
    assert client.get("/v1/tasks", headers={"Authorization": "Basic abc"}).status_code == 401


def test_bootstrap_admin_key_is_admin(client):
    me = client.get("/v1/me", headers=auth(ADMIN_KEY)).json()
    assert me["role"] == "admin"


def test_create_key_rejects_unknown_role(api):
    response = api.client.post("/v1/keys", json={"name": "x", "role": "root"}, headers=api.admin)
    assert response.status_code == 422
    assert "role" in str(response.json()["detail"])
