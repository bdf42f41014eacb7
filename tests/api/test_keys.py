import base64
import logging
import threading
import time
from contextlib import contextmanager

import pytest

from tests.utils.factories import ADMIN_KEY, auth


def test_create_key_shows_key_once_and_lists_without_it(api):
    created = api.client.post(
        "/v1/keys", json={"name": "svc-a", "role": "service"}, headers=api.admin
    )
    assert created.status_code == 201
    body = created.json()
    assert {"id", "name", "role", "key"} <= set(body)
    assert body["key"].startswith("tl_")
    listed = api.client.get("/v1/keys", headers=api.admin).json()
    assert listed["count"] == 1
    row = listed["data"][0]
    assert {"id", "name", "role", "created_at", "revoked"} <= set(row)
    assert "key" not in row and body["key"] not in str(listed)


def test_a_key_name_with_invisible_characters_is_refused(api):
    """Key names show as labelled_by and as the actor of audit rows: nothing may hide."""
    for name in ("evil\u202ename", "bell\u0007", "line\nbreak", "zero\u200bwidth"):
        response = api.client.post(
            "/v1/keys", json={"name": name, "role": "reviewer"}, headers=api.admin
        )
        assert response.status_code == 422, name
        assert response.json()["detail"][0]["loc"][-1] == "name"
        assert "invisible characters" in response.json()["detail"][0]["msg"]
    ok = api.client.post("/v1/keys", json={"name": "Ana María", "role": "reviewer"},
                         headers=api.admin)  # fmt: skip
    assert ok.status_code == 201


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("   ", "blank"),
        ("admin (TIERLINE_ADMIN_KEY)", "tierline's own actors"),
        ("tierline CLI (root)", "tierline's own actors"),
        ("Tierline", "tierline's own actors"),
        ("іmport", "tierline's own actors"),  # a Cyrillic "і"
    ],
)
def test_a_key_cannot_be_named_to_pass_for_a_built_in_actor(api, name, why):
    """An outside probe named keys like the bootstrap admin and the CLI: the audit trail
    would show them as those actors (only the actor ids differ)."""
    response = api.client.post("/v1/keys", json={"name": name, "role": "admin"}, headers=api.admin)
    assert response.status_code == 422, name
    assert response.json()["detail"][0]["loc"][-1] == "name" and why in response.text


def test_a_lead_sent_as_null_is_422_not_ignored(api):
    """``PATCH /v1/keys/{id} {"lead": null}`` answered 200 and changed nothing (a task
    setting sent as null is a 422 naming it)."""
    key_id = api.client.post(
        "/v1/keys", json={"name": "r", "role": "reviewer"}, headers=api.admin
    ).json()["id"]
    response = api.client.patch(f"/v1/keys/{key_id}", json={"lead": None}, headers=api.admin)
    assert response.status_code == 422 and response.json()["detail"][0]["loc"][-1] == "lead"
    assert not response.json()["detail"][0]["msg"].startswith("Value error")  # pydantic's


def test_a_grace_period_is_a_json_number(api):
    key_id = api.client.post(
        "/v1/keys", json={"name": "svc", "role": "service"}, headers=api.admin
    ).json()["id"]
    response = api.client.post(
        f"/v1/keys/{key_id}/rotate", json={"grace_seconds": "10"}, headers=api.admin
    )
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"][-1] == "grace_seconds"


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


# --- rotation, expiry, last use, secrecy ---------------------------------------------------
def test_keys_are_random_256_bit_secrets_with_a_prefix(api):
    keys = {api.key("service", f"svc-{i}") for i in range(5)}
    assert len(keys) == 5
    for key in keys:
        assert key.startswith("tl_")
        raw = base64.urlsafe_b64decode(key.removeprefix("tl_") + "=")
        assert len(raw) == 32  # 256 bits from the OS's CSPRNG (secrets.token_urlsafe)


def test_rotation_issues_a_new_key_and_the_old_one_stops_after_the_grace(api, monkeypatch):
    created = api.client.post(
        "/v1/keys", json={"name": "svc", "role": "service", "tasks": ["claims"]}, headers=api.admin
    ).json()
    rotated = api.client.post(
        f"/v1/keys/{created['id']}/rotate", json={"grace_seconds": 60}, headers=api.admin
    )
    assert rotated.status_code == 201, rotated.text
    new = rotated.json()
    assert new["replaces"] == created["id"] and new["key"] != created["key"]
    assert (new["name"], new["role"], new["tasks"]) == ("svc", "service", ["claims"])
    for key in (created["key"], new["key"]):  # both work during the grace period
        assert api.client.get("/v1/me", headers=auth(key)).status_code == 200

    listed = {k["id"]: k for k in api.client.get("/v1/keys", headers=api.admin).json()["data"]}
    assert listed[created["id"]]["rotated_to"] == new["id"]
    assert listed[created["id"]]["expires_at"] == new["old_key_expires_at"]
    twice = api.client.post(f"/v1/keys/{created['id']}/rotate", headers=api.admin)
    assert twice.status_code == 409 and new["id"] in twice.json()["detail"]  # one successor

    later = time.time() + 61
    monkeypatch.setattr("api.services.keys.time.time", lambda: later)
    api.client.app.state.tierline.keys.forget()
    assert api.client.get("/v1/me", headers=auth(created["key"])).status_code == 401
    assert api.client.get("/v1/me", headers=auth(new["key"])).status_code == 200

    again = api.client.post(f"/v1/keys/{created['id']}/rotate", headers=api.admin)
    assert again.status_code == 409  # expired: nothing to rotate
    lead = api.client.patch(f"/v1/keys/{created['id']}", json={"lead": True}, headers=api.admin)
    assert lead.status_code == 409  # nor to grant anything to
    actions = [
        r["action"]
        for r in api.client.get(
            "/v1/audit", params={"subject": created["id"]}, headers=api.admin
        ).json()["data"]
    ]
    assert actions == ["key.rotated", "key.created"]


def test_rotate_unknown_key_is_404(api):
    assert api.client.post("/v1/keys/k_nope/rotate", headers=api.admin).status_code == 404


def test_cli_rotates_a_key(api, settings, monkeypatch):
    from typer.testing import CliRunner

    from api.cli import app as cli
    from api.settings import get_settings

    created = api.client.post(
        "/v1/keys", json={"name": "svc", "role": "service"}, headers=api.admin
    ).json()
    monkeypatch.setenv("TIERLINE_DATABASE_URL", settings.database_url)
    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(cli, ["keys", "rotate", created["id"], "--grace", "0"])
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 0, result.output
    new_key = result.output.strip().rsplit(" ", 1)[-1]
    assert new_key.startswith("tl_") and f"replaces {created['id']}" in result.output
    api.client.app.state.tierline.keys.forget()
    assert api.client.get("/v1/me", headers=auth(new_key)).status_code == 200
    assert api.client.get("/v1/me", headers=auth(created["key"])).status_code == 401
    row = api.client.get("/v1/audit", params={"action": "key.rotated"}, headers=api.admin).json()[
        "data"
    ][0]
    assert row["actor"]["id"] == "cli"


def test_last_used_at_is_recorded(api):
    created = api.client.post(
        "/v1/keys", json={"name": "r", "role": "reviewer"}, headers=api.admin
    ).json()
    row = api.client.get("/v1/keys", headers=api.admin).json()["data"][0]
    assert row["last_used_at"] is None
    assert api.client.get("/v1/me", headers=auth(created["key"])).status_code == 200
    for _ in range(100):  # written in the background
        row = api.client.get("/v1/keys", headers=api.admin).json()["data"][0]
        if row["last_used_at"] is not None:
            break
        time.sleep(0.05)
    assert row["last_used_at"] is not None


def test_a_keys_last_use_is_written_off_the_request_path():
    """A read request waited out the database's busy timeout (10 s) behind a held SQLite
    lock, only to record the key's last use (an outside probe)."""
    from api.services.keys import note_use

    release, written = threading.Event(), threading.Event()

    class Nothing:
        def get(self, *args):
            return None

    @contextmanager
    def busy_database():
        release.wait(2)  # the database is held by another writer
        yield Nothing()
        written.set()

    note_use(busy_database, "k_busy_database")
    assert not written.is_set()  # the request goes on while the write waits
    release.set()
    assert written.wait(5)


def test_keys_are_never_logged(api, caplog):
    with caplog.at_level(logging.DEBUG):
        created = api.client.post(
            "/v1/keys", json={"name": "secretive", "role": "service"}, headers=api.admin
        ).json()
        api.client.get("/v1/me", headers=auth(created["key"]))
        api.client.get("/v1/me", headers=auth(created["key"] + "x"))  # a wrong one, too
        trail = api.client.get("/v1/audit", headers=api.admin).text
    assert created["key"] not in caplog.text and ADMIN_KEY not in caplog.text
    assert created["key"] not in trail


def test_a_key_revoked_on_another_process_stops_after_a_quiet_spell(settings, monkeypatch):
    """Each process caches keys for ``KEY_TTL_SECONDS``; once, the first request after a
    quiet spell was answered from the expired entry while it reloaded, so a revoked key
    still passed there."""
    from fastapi.testclient import TestClient

    from api import main
    from api.main import create_app

    monkeypatch.setattr(main, "KEY_TTL_SECONDS", 0.2)
    with TestClient(create_app(settings)) as one, TestClient(create_app(settings)) as two:
        admin = auth(ADMIN_KEY)
        created = one.post("/v1/keys", json={"name": "svc", "role": "service"}, headers=admin)
        key = auth(created.json()["key"])
        assert two.get("/v1/me", headers=key).status_code == 200  # cached by the other
        assert one.delete(f"/v1/keys/{created.json()['id']}", headers=admin).status_code == 204
        time.sleep(0.4)
        assert two.get("/v1/me", headers=key).status_code == 401


def test_a_scoped_admin_administers_its_tasks_and_cannot_widen_its_reach(api):
    api.create_task()
    scoped = api.client.post(
        "/v1/keys", json={"name": "sa", "role": "admin", "tasks": ["claims"]}, headers=api.admin
    ).json()
    sa = auth(scoped["key"])
    # its own task: settings change
    assert (
        api.client.patch("/v1/tasks/claims", json={"min_labels": 7}, headers=sa).status_code == 200
    )
    # keys reach past any scope: no minting an unscoped admin, no managing others' keys
    other = api.client.post("/v1/keys", json={"name": "r", "role": "reviewer"}, headers=api.admin)
    attempts = [
        api.client.post("/v1/keys", json={"name": "x", "role": "admin"}, headers=sa),
        api.client.get("/v1/keys", headers=sa),
        api.client.patch(f"/v1/keys/{other.json()['id']}", json={"lead": True}, headers=sa),
        api.client.post(f"/v1/keys/{other.json()['id']}/rotate", headers=sa),
        api.client.delete(f"/v1/keys/{other.json()['id']}", headers=sa),
    ]
    assert [r.status_code for r in attempts] == [403] * 5
    outside = {"name": "b1", "labels": ["a", "b"]}
    assert api.client.post("/v1/tasks", json=outside, headers=sa).status_code == 403
    assert api.client.post("/v1/tasks", json=outside, headers=api.admin).status_code == 201
    assert api.client.get("/v1/tasks/b1", headers=sa).status_code == 403


def test_key_patch_answers_the_whole_key_takes_json_booleans_and_refuses_revoked_keys(api):
    created = api.client.post(
        "/v1/keys", json={"name": "r", "role": "reviewer", "tasks": ["claims"]}, headers=api.admin
    ).json()
    url = f"/v1/keys/{created['id']}"
    patched = api.client.patch(url, json={"lead": True}, headers=api.admin)
    assert patched.status_code == 200
    assert patched.json()["lead"] is True and patched.json()["tasks"] == ["claims"]
    for loose in ("yes", 1, "off"):
        refused = api.client.patch(url, json={"lead": loose}, headers=api.admin)
        assert refused.status_code == 422 and "lead" in refused.text
        made = api.client.post(
            "/v1/keys", json={"name": "l", "role": "reviewer", "lead": loose}, headers=api.admin
        )
        assert made.status_code == 422 and "lead" in made.text
    api.client.delete(url, headers=api.admin)
    assert api.client.patch(url, json={"lead": False}, headers=api.admin).status_code == 409
