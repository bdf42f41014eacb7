"""Model versions over HTTP: list the snapshots, activate one (roll back), audited; a
snapshot whose signature fails is never unpickled."""

from __future__ import annotations

import logging
import pickle
import random

from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

from api.main import create_app
from tests.utils.factories import Api, claims_case

PROBES = [claims_case(random.Random(7))[0] for _ in range(5)]


def served(api: Api) -> tuple[int, list[dict]]:
    answers = [
        api.client.post("/v1/tasks/claims/predict", json={"features": x}, headers=api.admin).json()
        for x in PROBES
    ]
    return answers[0]["model_version"], [a["proba"] for a in answers]


def taught(api: Api, n: int = 60) -> dict[int, tuple[int, list[dict]]]:
    """Label ``n`` cases one by one; returns what was served at each version."""
    api.create_task(min_labels=10, threshold=0.6)
    rng = random.Random(1)
    truth = {}
    for _ in range(n):
        x, y = claims_case(rng)
        truth[api.send("claims", x)["id"]] = y
    seen = {}
    while (claim := api.claim("claims")) is not None:
        assert api.label(claim, truth[claim["case"]["id"]]).status_code == 200
        version, probas = served(api)
        seen[version] = (version, probas)
    return seen


def test_models_are_listed_and_an_older_one_activated(api):  # snapshot_every=25
    seen = taught(api)
    models = api.client.get("/v1/tasks/claims/models", headers=api.as_("analyst"))
    assert models.status_code == 200, models.text
    body = models.json()
    assert body["active_version"] == 60
    versions = [m["version"] for m in body["data"]]
    assert {25, 50} <= set(versions) and versions == sorted(versions, reverse=True)
    assert all(m["signed"] for m in body["data"])

    assert (
        api.client.post(
            "/v1/tasks/claims/models/25/activate", headers=api.as_("analyst")
        ).status_code
        == 403
    )
    activated = api.client.post("/v1/tasks/claims/models/25/activate", headers=api.admin)
    assert activated.status_code == 200, activated.text
    assert activated.json()["active_version"] == 25
    assert served(api) == seen[25]
    store = api.client.app.state.tierline.store
    assert store.get(store.tasks.get("claims")).labelled == 25  # what the restored model learned

    history = api.client.get("/v1/tasks/claims/history", headers=api.admin).json()["data"]
    assert any("rolled back to version 25" in h["reason"] for h in history)
    trail = api.client.get(
        "/v1/audit", params={"action": "model.activated"}, headers=api.admin
    ).json()["data"]
    assert len(trail) == 1
    assert trail[0]["before"]["version"] == 60 and trail[0]["after"]["version"] == 25
    assert trail[0]["actor"]["role"] == "admin"

    api.teach("claims", 5, seed=9)  # learning goes on from the restored model
    version, _ = served(api)
    assert 25 < version < 60


def test_a_rollback_can_be_undone_the_head_it_replaced_is_kept(api):
    """A probe rolled back by mistake: the head of 60 labels had no kept snapshot (one
    every 25 labels), so nothing could bring it back."""
    seen = taught(api)
    before = [m["version"] for m in api.client.get("/v1/tasks/claims/models", headers=api.admin)
              .json()["data"]]  # fmt: skip
    assert 60 not in before
    api.client.post("/v1/tasks/claims/models/25/activate", headers=api.admin).raise_for_status()
    undone = api.client.post("/v1/tasks/claims/models/60/activate", headers=api.admin)
    assert undone.status_code == 200, undone.text
    assert undone.json()["active_version"] == 60 and served(api) == seen[60]


def test_activating_a_version_without_a_snapshot_is_404(api):
    taught(api, 30)
    response = api.client.post("/v1/tasks/claims/models/7/activate", headers=api.admin)
    assert response.status_code == 404 and "version 7" in response.json()["detail"]
    assert api.client.get("/v1/tasks/nope/models", headers=api.admin).status_code == 404


class Exploit:
    """Unpickling this creates a file: proof that someone unpickled it."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (open, (self.path, "w"))


def test_a_signed_snapshot_that_does_not_load_is_skipped_not_fatal(settings, caplog):
    """Signed with the secret yet not a snapshot of ours: the process still starts, from
    an older snapshot or the label log."""
    from api.security import sign

    with TestClient(create_app(settings)) as client:
        api = Api(client)
        seen = taught(api, 30)
    blob = pickle.dumps(12345)
    engine = create_engine(settings.database_url, poolclass=NullPool)
    with engine.begin() as conn:
        conn.execute(
            text("UPDATE model_snapshot SET blob = :blob, signature = :signature"),
            {"blob": blob, "signature": sign(blob, settings.signing_secret)},
        )
    engine.dispose()
    with caplog.at_level(logging.ERROR), TestClient(create_app(settings)) as client:
        assert served(Api(client)) == seen[30]
    assert "does not load" in caplog.text


def test_a_snapshot_with_a_bad_signature_is_never_unpickled(settings, tmp_path, caplog):
    with TestClient(create_app(settings)) as client:
        api = Api(client)
        seen = taught(api, 30)  # a kept snapshot at 25, and one at shutdown (30)
    proof = tmp_path / "unpickled"
    engine = create_engine(settings.database_url, poolclass=NullPool)
    with engine.begin() as conn:  # swap the payload of every snapshot, keep the signatures
        tampered = set(conn.execute(text("SELECT id FROM model_snapshot")).scalars())
        conn.execute(
            text("UPDATE model_snapshot SET blob = :blob"),
            {"blob": pickle.dumps(Exploit(str(proof)))},
        )
    engine.dispose()

    with caplog.at_level(logging.WARNING), TestClient(create_app(settings)) as client:
        api = Api(client)
        assert served(api) == seen[30]  # rebuilt from the label log instead
        models = client.get("/v1/tasks/claims/models", headers=api.admin).json()["data"]
        assert tampered and {m["id"] for m in models if not m["signed"]} == tampered
        refused = client.post("/v1/tasks/claims/models/25/activate", headers=api.admin)
        assert refused.status_code == 404
    assert not proof.exists()
    assert "bad signature" in caplog.text


def test_a_snapshot_published_for_other_processes_is_never_listed_nor_left_behind(api):
    """Snapshots published for the other processes (not kept) are replaced by the next
    one, also those an earlier run left: a probe's listing showed one version three times
    after a few restarts, and each restart left one behind for good."""
    from sqlmodel import col, select

    from api.tables import ModelSnapshot

    taught(api, 30)
    state = api.client.app.state.tierline
    store, db = state.store, state.db
    store.save_snapshot(store.get(store.tasks.get("claims")), keep=False)
    with db.read() as session:
        orphan_id = session.exec(
            select(ModelSnapshot.id).where(col(ModelSnapshot.kept).is_(False))
        ).one()
    task_id = store.tasks.get("claims").id
    store.forget(task_id)  # as after a restart: this run knows nothing it published before
    store.save_snapshot(store.get(store.tasks.get("claims")), keep=False)
    with db.read() as session:
        published = session.exec(
            select(ModelSnapshot.id).where(col(ModelSnapshot.kept).is_(False))
        ).all()
    assert len(published) == 1 and published[0] != orphan_id
    listed = api.client.get("/v1/tasks/claims/models", headers=api.admin).json()["data"]
    assert published[0] not in {m["id"] for m in listed}
    assert [m["version"] for m in listed] == [25]  # the kept one (snapshot_every=25)


def test_a_follower_takes_the_cold_start_count_with_a_newer_model(api):
    """A follower swaps in the leader's snapshots rather than folding labels: the count
    the cold start reads must come with the model (it stayed where the follower started)."""
    from api.live import ModelStore

    taught(api, 12)
    state = api.client.app.state.tierline
    task = state.store.tasks.get("claims")
    follower = ModelStore(state.db, state.store.secret)
    follower.leader = False
    behind = follower.get(task)
    assert behind is not None
    api.teach("claims", 20, seed=3)
    ahead = state.store.get(task)
    state.store.save_snapshot(ahead, keep=False)  # the leader publishes
    assert follower.refresh(behind)
    assert behind.version == ahead.version and behind.labelled == ahead.labelled > 12


PII = "zz-pii-john-doe-555-0199"


def _holds_pii(blob: bytes) -> bool:
    return PII.encode() in blob


def _with_a_personal_value(api: Api) -> str:
    """A taught task, one of whose labelled cases carries a category value and words no
    other case has (a person's name and number in ``country`` and ``note``)."""
    taught(api, 40)
    x, _ = claims_case(random.Random(11))
    case = api.send("claims", {**x, "country": PII, "note": f"call {PII}"})
    claim = api.claim("claims")
    assert claim["case"]["id"] == case["id"]
    assert api.label(claim, "approve").status_code == 200
    return case["id"]


def _snapshot_blobs(api: Api) -> list[bytes]:
    from sqlmodel import select

    from api.tables import ModelSnapshot

    with api.client.app.state.tierline.db.read() as session:
        return [bytes(b) for b in session.exec(select(ModelSnapshot.blob)).all()]


def test_an_erasure_rebuilds_the_model_without_the_values_only_that_case_carried(api):
    """An outside probe erased a case, yet its values stayed in the model's weights (one
    per category value and word) and in every snapshot written since it was learned."""
    case_id = _with_a_personal_value(api)
    state = api.client.app.state.tierline
    live = state.store.get(state.store.tasks.get("claims"))
    state.store.save_snapshot(live)  # a kept restart point that learned the value
    assert _holds_pii(live.model.to_bytes()) and any(map(_holds_pii, _snapshot_blobs(api)))
    version = live.version
    task_before = api.client.get("/v1/tasks/claims", headers=api.admin).json()

    assert api.client.delete(f"/v1/cases/{case_id}", headers=api.admin).status_code == 204
    live = state.store.get(state.store.tasks.get("claims"))
    assert not _holds_pii(live.model.to_bytes())
    assert not any(map(_holds_pii, _snapshot_blobs(api)))
    assert live.version == version  # every label still counted (the erased one on no values)
    task = api.client.get("/v1/tasks/claims", headers=api.admin).json()
    assert (task["mode"], task["model_version"]) == (task_before["mode"], version)
    state.store.forget(live.task_id)  # a restart loads the rebuilt model
    again = state.store.get(state.store.tasks.get("claims"))
    assert not _holds_pii(again.model.to_bytes()) and again.version == version


def _rolled_back_to_25_and_taught_3(api: Api) -> dict:
    """A task rolled back to version 25 that learned 3 labels since (version 28); the last
    case labelled."""
    seen = taught(api)  # snapshot_every=25: kept at 25 and 50
    activated = api.client.post("/v1/tasks/claims/models/25/activate", headers=api.admin)
    assert activated.json()["active_version"] == 25
    rng = random.Random(5)
    labelled = 0
    while labelled < 3:  # confident cases are decided: send until 3 came to a reviewer
        api.send("claims", claims_case(rng)[0])
        if (claim := api.claim("claims")) is not None:
            assert api.label(claim, "approve").status_code == 200
            labelled += 1
    assert served(api)[0] == 28 and served(api)[1] != seen[25][1]
    return claim["case"]


def test_an_erasure_after_a_rollback_rebuilds_the_rolled_back_lineage(api):
    """A probe rolled back to version 400, erased a case, and was served version 538: the
    rebuild had folded the labels the rollback left out."""
    case = _rolled_back_to_25_and_taught_3(api)
    erased = api.client.delete(f"/v1/cases/{case['id']}", headers=api.admin)
    assert erased.status_code == 204
    assert served(api)[0] == 28  # the lineage as rolled back: 25 labels, then 3 (not 63)
    store = api.client.app.state.tierline.store
    assert store.get(store.tasks.get("claims")).labelled == 28


def test_an_erasure_after_rolling_forward_rebuilds_that_lineage(api):
    """Back to the kept version 50 of the first lineage: its 50 labels are in it again, the
    3 of the rolled-back lineage are not (each lineage keeps its own left-out ranges)."""
    case = _rolled_back_to_25_and_taught_3(api)
    activated = api.client.post("/v1/tasks/claims/models/50/activate", headers=api.admin)
    assert activated.json()["active_version"] == 50
    erased = api.client.delete(f"/v1/cases/{case['id']}", headers=api.admin)
    assert erased.status_code == 204
    assert served(api)[0] == 50


def test_an_erasure_taken_by_a_follower_is_rebuilt_by_the_leader_and_followers_load_it(api):
    from api.lineage import ModelSync
    from api.live import ModelStore
    from api.services.keys import BOOTSTRAP_ADMIN
    from api.services.metrics import record_progress
    from api.services.privacy import erase_case

    case_id = _with_a_personal_value(api)
    state = api.client.app.state.tierline
    state.store.publish(state.store.get(state.store.tasks.get("claims")))
    follower = ModelStore(state.db, state.store.secret)
    follower.leader = False
    task = follower.tasks.get("claims")
    behind = follower.get(task)
    assert _holds_pii(behind.model.to_bytes())
    assert erase_case(state.db, follower, case_id, BOOTSTRAP_ADMIN)  # on the follower
    state.store.tasks.forget("claims")
    ModelSync(state.db, state.store, record_progress).lead()  # the leader's next poll
    leader_live = state.store.get(state.store.tasks.get("claims"))
    assert not _holds_pii(leader_live.model.to_bytes())
    ModelSync(state.db, follower, record_progress).follow()  # the follower's next poll
    assert not _holds_pii(behind.model.to_bytes())  # the same label, a newer snapshot
    assert behind.version == leader_live.version
