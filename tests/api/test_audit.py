"""The audit trail: every state change is a row with actor and before/after, chained by
hash; tampering is detected and named; erasure redacts without breaking the chain."""

from __future__ import annotations

import random
import re

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool
from typer.testing import CliRunner

from api.cli import app as cli
from api.db import Database
from api.services.audit import verify
from api.settings import get_settings
from tests.utils.factories import claims_case

GOOD = {"amount": 120.5, "country": "fr", "note": "windscreen repair", "vip": False}


def trail(api, **params):
    response = api.client.get("/v1/audit", params=params, headers=api.admin)
    assert response.status_code == 200, response.text
    return response.json()


def check(database_url: str):
    db = Database(database_url)
    try:
        with db.read() as session:
            return verify(session)
    finally:
        db.dispose()


def raw(database_url: str, *statements: str) -> None:
    """Change the audit table behind the API's back, as an attacker with database access
    would: past the append-only guard (SQLite: drop its triggers; PostgreSQL: replica
    mode skips triggers)."""
    engine = create_engine(database_url, poolclass=NullPool)
    with engine.begin() as conn:
        if engine.dialect.name == "sqlite":
            conn.execute(text("DROP TRIGGER IF EXISTS audit_log_no_delete"))
            conn.execute(text("DROP TRIGGER IF EXISTS audit_log_no_update"))
        else:
            conn.execute(text("SET LOCAL session_replication_role = replica"))
        for statement in statements:
            conn.execute(text(statement))
    engine.dispose()


@pytest.fixture
def busy(api):
    """A task with keys, routed cases, a claim, a label, a release, a correction and a
    settings change: a bit of everything that the trail records."""
    api.create_task(min_labels=2)
    rng = random.Random(3)
    for _ in range(4):
        api.send("claims", claims_case(rng)[0])
    first = api.claim("claims")
    assert api.label(first, "approve").status_code == 200
    second = api.claim("claims")
    assert api.release(second).status_code == 204
    corrected = api.client.post(
        f"/v1/cases/{first['case']['id']}/correct",
        json={"label": "reject"},
        headers=api.as_("reviewer"),
    )
    assert corrected.status_code == 200
    patched = api.client.patch("/v1/tasks/claims", json={"audit_rate": 0.2}, headers=api.admin)
    assert patched.status_code == 200
    api.labelled = first["case"]["id"]
    return api


def test_every_state_change_is_recorded_with_actor_and_before_after(busy, database_url):
    rows = trail(busy, limit=1000)["data"]
    actions = [r["action"] for r in rows]
    for action in (
        "key.created",
        "task.created",
        "case.routed",
        "case.claimed",
        "case.labelled",
        "case.released",
        "case.corrected",
        "task.changed",
    ):
        assert action in actions, action
    assert actions.count("case.routed") == 4

    routed = next(r for r in rows if r["action"] == "case.routed")
    assert routed["actor"]["name"] == "test-service" and routed["actor"]["role"] == "service"
    after = routed["after"]
    assert {"route", "decision", "threshold", "reasons", "model_version", "features"} <= set(after)
    assert after["reasons"] and after["features"]["country"] in {"fr", "de", "es", "it"}

    labelled = next(r for r in rows if r["action"] == "case.labelled")
    assert labelled["actor"]["role"] == "reviewer" and labelled["after"]["label"] == "approve"
    corrected = next(r for r in rows if r["action"] == "case.corrected")
    assert corrected["before"]["label"] == "approve" and corrected["after"]["label"] == "reject"
    changed = next(r for r in rows if r["action"] == "task.changed")
    assert changed["before"] == {"audit_rate": 0.05} and changed["after"] == {"audit_rate": 0.2}
    assert changed["actor"]["role"] == "admin"

    result = check(database_url)
    assert result.ok, result.problems
    assert result.rows == len(rows)


def test_audit_pages_and_filters(busy):
    everything = trail(busy, limit=1000)["data"]
    ids = [r["id"] for r in everything]
    assert ids == sorted(ids, reverse=True)  # newest first

    page = trail(busy, limit=3)
    assert page["count"] == 3 and page["next_before"] == page["data"][-1]["id"]
    rest = trail(busy, limit=1000, before=page["next_before"])["data"]
    assert [r["id"] for r in page["data"] + rest] == ids

    routed = trail(busy, action="case.routed")["data"]
    assert len(routed) == 4 and {r["action"] for r in routed} == {"case.routed"}
    about = trail(busy, subject=busy.labelled)["data"]
    assert {r["action"] for r in about} >= {"case.routed", "case.claimed", "case.labelled"}
    assert all(r["subject"] == busy.labelled for r in about)
    by_reviewer = trail(busy, actor="test-reviewer")["data"]
    assert by_reviewer and all(r["actor"]["name"] == "test-reviewer" for r in by_reviewer)
    assert trail(busy, task="nope")["count"] == 0
    assert trail(busy, since="2999-01-01T00:00:00Z")["count"] == 0

    bad = busy.client.get("/v1/audit", params={"limit": 100_000}, headers=busy.admin)
    assert bad.status_code == 422 and "limit" in str(bad.json()["detail"])


def test_analyst_reads_the_trail_and_other_roles_do_not(busy):
    assert busy.client.get("/v1/audit", headers=busy.as_("analyst")).status_code == 200
    for role in ("service", "reviewer"):
        assert busy.client.get("/v1/audit", headers=busy.as_(role)).status_code == 403


def test_the_table_refuses_deletes_and_edits(busy, database_url):
    engine = create_engine(database_url, poolclass=NullPool)
    try:
        statements = [
            "DELETE FROM audit_log",
            "UPDATE audit_log SET action = 'nothing' WHERE id = 1",
            "UPDATE audit_log SET actor_name = 'someone else' WHERE id = 1",
            "UPDATE audit_log SET subject = 'another' WHERE id = 1",
        ]
        if engine.dialect.name == "postgresql":
            statements.append("TRUNCATE audit_log")
        for statement in statements:
            with pytest.raises(Exception, match="audit_log"), engine.begin() as conn:
                conn.execute(text(statement))
    finally:
        engine.dispose()
    assert check(database_url).ok


def test_an_edited_row_is_detected_and_named(busy, database_url):
    routed = trail(busy, action="case.routed")["data"][-1]
    raw(
        database_url,
        "UPDATE audit_log SET after = "
        + '\'{"route": "auto", "decision": "approve"}\' WHERE id = '
        + str(routed["id"]),
    )
    result = check(database_url)
    assert not result.ok
    assert [(p.row_id, p.kind) for p in result.problems][0] == (routed["id"], "edited")


def test_an_edited_actor_is_detected(busy, database_url):
    label = trail(busy, action="case.labelled")["data"][0]
    raw(database_url, f"UPDATE audit_log SET actor_name = 'someone else' WHERE id = {label['id']}")
    problems = check(database_url).problems
    assert problems and problems[0].row_id == label["id"] and problems[0].kind == "edited"


def test_a_deleted_row_is_detected_and_named(busy, database_url):
    rows = trail(busy, task="claims", limit=1000)["data"]
    victim, follower = rows[3], rows[2]  # a row and the next one in its chain
    assert victim["chain"] == follower["chain"] and follower["seq"] == victim["seq"] + 1
    raw(database_url, f"DELETE FROM audit_log WHERE id = {victim['id']}")
    problems = check(database_url).problems
    assert [(p.row_id, p.kind) for p in problems] == [(follower["id"], "deleted")]
    assert f"seq {victim['seq']}" in problems[0].message


def test_reordered_rows_are_detected(busy, database_url):
    rows = trail(busy, task="claims", limit=1000)["data"]
    a, b = rows[5], rows[4]
    assert a["chain"] == b["chain"]
    raw(  # swap the two rows' places in the log (their ids)
        database_url,
        f"UPDATE audit_log SET id = -1 WHERE id = {a['id']}",
        f"UPDATE audit_log SET id = {a['id']} WHERE id = {b['id']}",
        f"UPDATE audit_log SET id = {b['id']} WHERE id = -1",
    )
    problems = check(database_url).problems
    assert any(p.kind == "reordered" for p in problems)
    assert {p.row_id for p in problems} <= {a["id"], b["id"]}


def test_a_chain_computed_again_after_an_edit_shows_only_against_a_head_kept_elsewhere(
    busy, database_url
):
    """An outside probe edited a row and computed every hash after it again with the
    project's own functions: ``audit verify`` said ok. So it is with any plain hash chain;
    a head recorded before the edit (``--expect``) reveals it, and a chain cut short too."""
    from api.services.audit import row_hash

    before = check(database_url)
    chain = max(before.chains, key=lambda c: before.chains[c][0])
    length, head = before.chains[chain]
    engine = create_engine(database_url, poolclass=NullPool)
    with engine.connect() as conn:
        rows = [dict(r._mapping) for r in conn.execute(
            text("SELECT * FROM audit_log WHERE chain = :c ORDER BY seq"), {"c": chain}
        )]  # fmt: skip
    engine.dispose()
    forged, prev, statements = rows[2], rows[1]["hash"], []
    forged["subject"] = "someone-else"  # a hashed field outside the payload's digest
    for row in rows[2:]:
        row["prev_hash"], row["hash"] = prev, row_hash(row, prev)
        prev = row["hash"]
        statements.append(
            f"UPDATE audit_log SET subject = '{row['subject']}', prev_hash = '{row['prev_hash']}',"
            f" hash = '{row['hash']}' WHERE id = {row['id']}"
        )
    raw(database_url, *statements)
    assert check(database_url).ok  # the chain alone cannot tell
    db = Database(database_url)
    try:
        with db.read() as session:
            found = verify(session, expect=[(chain, length, head)]).problems
            cut = verify(session, expect=[(chain, length + 1, head)]).problems
    finally:
        db.dispose()
    assert [(p.seq, p.kind) for p in found] == [(length, "rewritten")]
    assert [(p.seq, p.kind) for p in cut] == [(length + 1, "deleted")]


def test_cli_verify_says_ok_then_names_the_tampered_row(busy, database_url, monkeypatch):
    monkeypatch.setenv("TIERLINE_DATABASE_URL", database_url)
    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(cli, ["audit", "verify"])
        assert result.exit_code == 0, result.output
        assert "audit trail ok" in result.output
        heads = re.findall(r"--expect (\S+)\)", result.output)
        assert heads
        again = CliRunner().invoke(cli, ["audit", "verify", *[f"--expect={h}" for h in heads]])
        assert again.exit_code == 0, again.output
        bad = CliRunner().invoke(cli, ["audit", "verify", "--expect", "1:2:abc"])
        assert bad.exit_code == 2 and "expected CHAIN:SEQ:HASH" in bad.output
        row = trail(busy, action="task.changed")["data"][0]
        raw(database_url, f"UPDATE audit_log SET at = at + 1 WHERE id = {row['id']}")
        result = CliRunner().invoke(cli, ["audit", "verify"])
        assert result.exit_code == 1
        assert f"TAMPERED row {row['id']}" in result.output and "edited" in result.output
    finally:
        get_settings.cache_clear()


def test_erasing_a_case_redacts_its_features_and_the_chain_still_verifies(busy, database_url):
    case_id = busy.labelled
    before = busy.client.get(f"/v1/cases/{case_id}", headers=busy.admin).json()
    assert before["features"]
    assert busy.client.delete(f"/v1/cases/{case_id}", headers=busy.admin).status_code == 204
    after = busy.client.get(f"/v1/cases/{case_id}", headers=busy.admin).json()
    assert after["features"] == {}
    assert after["label"] == before["label"] and after["decision"] == before["decision"]

    rows = trail(busy, subject=case_id)["data"]
    routed = next(r for r in rows if r["action"] == "case.routed")
    assert routed["redacted"] is True
    assert set(routed["after"]["features"]) == {"redacted", "sha256"}
    assert routed["after"]["reasons"] and routed["after"]["model_version"] is not None
    erased = next(r for r in rows if r["action"] == "case.erased")
    assert erased["actor"]["role"] == "admin" and "amount" in erased["after"]["fields"]
    assert str(before["features"]["amount"]) not in str(rows)

    result = check(database_url)
    assert result.ok, result.problems
    assert result.redacted == 1
    # a repeat is harmless, and records nothing new
    assert busy.client.delete(f"/v1/cases/{case_id}", headers=busy.admin).status_code == 204
    assert len(trail(busy, subject=case_id, action="case.erased")["data"]) == 1


def test_only_admins_erase_and_unknown_cases_are_404(busy):
    for role in ("service", "reviewer", "analyst"):
        response = busy.client.delete(f"/v1/cases/{busy.labelled}", headers=busy.as_(role))
        assert response.status_code == 403
    assert busy.client.delete("/v1/cases/c_nope", headers=busy.admin).status_code == 404


def test_redaction_cannot_hide_an_edit(busy, database_url):
    """Replacing features by a redaction marker with another digest breaks the chain."""
    routed = trail(busy, action="case.routed")["data"][0]
    fake = '{"redacted": true, "sha256": "' + "0" * 64 + '"}'
    after = dict(routed["after"])
    after.pop("features")
    import json

    body = json.dumps(after)[:-1] + ', "features": ' + fake + "}"
    raw(
        database_url,
        f"UPDATE audit_log SET after = '{body}', redacted = true WHERE id = {routed['id']}",
    )
    problems = check(database_url).problems
    assert problems and problems[0].row_id == routed["id"] and problems[0].kind == "edited"


def test_a_mode_change_is_recorded_before_the_answer_when_the_poll_applied_the_label(
    api, monkeypatch
):
    """On the leader, the model-sync poll may apply a label before the request that
    stored it; the label's answer still comes after its mode change is recorded."""
    api.create_task(min_labels=1)
    api.send("claims", GOOD)
    store = api.client.app.state.tierline.store

    def applied_by_the_poll(live, entry, features):  # folded; its progress not recorded
        store.catch_up(live)
        return False

    monkeypatch.setattr(store, "apply", applied_by_the_poll)
    assert api.label(api.claim("claims"), "approve").status_code == 200
    migrated = trail(api, action="task.migrated")["data"]
    assert [m["after"]["mode"] for m in migrated] == ["automated"]


def test_mode_migrations_and_key_changes_are_recorded(api):
    api.create_task(min_labels=1)  # fixed threshold: automated after one label
    api.send("claims", GOOD)
    assert api.label(api.claim("claims"), "approve").status_code == 200
    migrated = trail(api, action="task.migrated")["data"]
    assert migrated, "leaving cold start is a migration"
    assert migrated[0]["actor"]["role"] == "system"
    assert migrated[0]["before"]["mode"] == "assist"
    assert migrated[0]["after"]["mode"] == "automated" and migrated[0]["after"]["reason"]

    key_id = api.client.get("/v1/keys", headers=api.admin).json()["data"][0]["id"]
    assert api.client.delete(f"/v1/keys/{key_id}", headers=api.admin).status_code == 204
    revoked = trail(api, action="key.revoked")["data"]
    assert revoked[0]["subject"] == key_id
    assert revoked[0]["before"]["revoked"] is False and revoked[0]["after"]["revoked"] is True
    # keys are admin-only: an analyst reads the trail without the rows about keys
    seen = api.client.get("/v1/audit", params={"limit": 1000}, headers=api.as_("analyst"))
    actions = {row["action"] for row in seen.json()["data"]}
    assert "task.migrated" in actions and not any(a.startswith("key.") for a in actions)
    hook = api.client.put(
        "/v1/tasks/claims/webhook", json={"url": "http://127.0.0.1:9/x"}, headers=api.admin
    )
    assert hook.status_code == 200
    assert trail(api, action="webhook.set")["data"][0]["after"]["url"] == "http://127.0.0.1:9/x"
