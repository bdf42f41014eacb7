"""Issue 6: several API processes over one PostgreSQL database.

- ``--workers N`` and separate processes share one model lineage (point 3);
- 16 reviewers on 3 processes: no case held twice, every case labelled once (point 4);
- ``kill -9`` of the leader and of a follower mid-load loses nothing (point 5);
- a database outage is answered with 503 and recovered from (point 6).

These start real server processes against a database of their own (PostgreSQL only).
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import create_engine, func, text
from sqlmodel import select

from api.db import Database
from api.live import ModelStore
from api.services.audit import verify as audit_verify
from api.settings import DEV_SECRET
from api.tables import AuditLog, Task
from tests.utils.databases import pg_cluster_running, start_pg_cluster, stop_pg_cluster
from tests.utils.factories import ADMIN_KEY, CLAIMS_FEATURES, auth, claims_case
from tests.utils.server import ServerProcess

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.timeout(600)]

TASK = "claims"


def probe_set(n: int = 20) -> list[dict]:
    rng = random.Random(99)
    return [claims_case(rng)[0] for _ in range(n)]


def server_env(database_url: str, **extra: str) -> dict[str, str]:
    return {
        "TIERLINE_DATABASE_URL": database_url,
        "TIERLINE_ADMIN_KEY": ADMIN_KEY,
        "TIERLINE_ENV": "dev",
        "TIERLINE_SNAPSHOT_EVERY": "50",
        "TIERLINE_WEBHOOK_DISPATCH": "false",
        **extra,
    }


class Cluster:
    """API processes on one database, stopped (or killed) at the end."""

    def __init__(self, database_url: str, workdir: Path, **env: str) -> None:
        self.database_url = database_url
        self.workdir = workdir
        self.env = server_env(database_url, **env)
        self.servers: list[ServerProcess] = []

    def start(self, n: int, args: tuple[str, ...] = ()) -> list[ServerProcess]:
        """Start ``n`` more processes, one after the other; returns them."""
        started = []
        for _ in range(n):
            log = self.workdir / f"server-{len(self.servers)}.log"
            started.append(ServerProcess(self.env, log=log, args=args).start())
            self.servers.append(started[-1])
        return started

    def alive(self) -> list[ServerProcess]:
        return [s for s in self.servers if s.process is not None and s.process.poll() is None]

    def leader(self, timeout: float = 10) -> ServerProcess:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            leaders = [s for s in self.alive() if s.readyz().get("leader")]
            if len(leaders) == 1:
                return leaders[0]
            time.sleep(0.05)
        raise AssertionError("no single leader among the live processes")

    def admin(self, server: ServerProcess | None = None) -> httpx.Client:
        server = server or self.alive()[0]
        return httpx.Client(base_url=server.url, headers=auth(ADMIN_KEY), timeout=30)

    def stop(self) -> None:
        for server in self.alive():
            server.stop()


@pytest.fixture
def cluster(fresh_database_url, tmp_path) -> Iterator[Callable[..., Cluster]]:
    """Makes clusters on databases of their own; stops their processes after the test."""
    made: list[Cluster] = []

    def make(**env: str) -> Cluster:
        made.append(Cluster(fresh_database_url(), tmp_path, **env))
        return made[-1]

    yield make
    for c in made:
        c.stop()


def create_task(admin: httpx.Client, **settings) -> None:
    body = {
        "name": TASK,
        "labels": ["approve", "reject"],
        "features": CLAIMS_FEATURES,
        "min_labels": 1_000_000,  # assist: every case waits for a person
        **settings,
    }
    admin.post("/v1/tasks", json=body).raise_for_status()


def send_cases(admin: httpx.Client, n: int, seed: int) -> dict[str, str]:
    """``n`` cases in batches; returns case id -> true label."""
    rng = random.Random(seed)
    truth: dict[str, str] = {}
    while len(truth) < n:
        pairs = [claims_case(rng) for _ in range(min(1000, n - len(truth)))]
        response = admin.post(
            f"/v1/tasks/{TASK}/cases/batch", json={"cases": [{"features": x} for x, _ in pairs]}
        )
        response.raise_for_status()
        for case, (_, y) in zip(response.json()["results"], pairs, strict=True):
            truth[case["id"]] = y
    return truth


def reviewer_keys(admin: httpx.Client, n: int) -> list[str]:
    return [
        admin.post("/v1/keys", json={"name": f"rev-{i}", "role": "reviewer"}).json()["key"]
        for i in range(n)
    ]


def served(server: ServerProcess, probes: int = 20) -> tuple[int, list[dict]]:
    """The model version a process serves and its probabilities on the probe set
    (asked again if a newer model arrived while the probes were being answered)."""
    with httpx.Client(base_url=server.url, headers=auth(ADMIN_KEY), timeout=30) as c:
        for _ in range(20):
            answers = [
                c.post(f"/v1/tasks/{TASK}/predict", json={"features": x}).json()
                for x in probe_set(probes)
            ]
            versions = {a["model_version"] for a in answers}
            if len(versions) == 1:
                return versions.pop(), [a["proba"] for a in answers]
    raise AssertionError(f"{server.url} keeps changing models: {versions}")


def converge(
    servers: list[ServerProcess], version: int, timeout: float = 10, probes: int = 20
) -> float:
    """Wait until every process serves ``version`` with identical probabilities; the wait."""
    start = time.monotonic()
    while True:
        seen = [served(s, probes) for s in servers]
        if all(v == version for v, _ in seen) and all(p == seen[0][1] for _, p in seen):
            return time.monotonic() - start
        if time.monotonic() - start > timeout:
            raise AssertionError(f"processes did not converge on version {version}: {seen}")
        time.sleep(0.05)


def label_rows(database_url: str) -> dict[str, int]:
    engine = create_engine(database_url)
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT case_id, count(*) FROM label GROUP BY case_id")).all()
    engine.dispose()
    return {case_id: n for case_id, n in rows}


def label_leases(database_url: str) -> list[tuple[str, str | None]]:
    """(case, lease) of every label in the log."""
    engine = create_engine(database_url)
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT case_id, lease_id FROM label ORDER BY id")).all()
    engine.dispose()
    return [(case_id, lease_id) for case_id, lease_id in rows]


def replay(database_url: str) -> tuple[int, list[dict]]:
    """Fold the whole label log from nothing, here in the test: the reference model."""
    db = Database(database_url)
    try:
        store = ModelStore(db, DEV_SECRET.encode())
        with db.read() as session:
            task = session.exec(select(Task).where(Task.name == TASK)).one()
        live = store.new_live(task)
        store.catch_up(live)
        return live.version, [live.model.predict_proba_one(x) for x in probe_set()]
    finally:
        db.dispose()


# --- point 3 --------------------------------------------------------------------------
def test_workers_share_one_model_lineage(cluster):
    """``tierline serve --workers 2``: one leader, and both workers serve the same model."""
    c = cluster()
    (server,) = c.start(1, args=("--workers", "2"))
    pids: dict[int, bool] = {}
    deadline = time.monotonic() + 30
    while len(pids) < 2 and time.monotonic() < deadline:  # new connections reach either worker
        body = httpx.get(f"{server.url}/readyz", headers={"Connection": "close"}).json()
        pids[body["pid"]] = body["leader"]
    assert len(pids) == 2 and sorted(pids.values()) == [False, True]

    with c.admin(server) as admin:
        create_task(admin, min_labels=10, threshold_policy="fixed", threshold=0.8)
        truth = send_cases(admin, 60, seed=1)
        [key] = reviewer_keys(admin, 1)
    labelled = 0
    while True:
        claim = httpx.post(
            f"{server.url}/v1/tasks/{TASK}/queue/claim",
            headers={**auth(key), "Connection": "close"},
        )
        if claim.status_code == 204:
            break
        case_id = claim.json()["case"]["id"]
        answer = httpx.post(
            f"{server.url}/v1/cases/{case_id}/label",
            json={"label": truth[case_id], "lease_id": claim.json()["lease_id"]},
            headers={**auth(key), "Connection": "close"},
        )
        assert answer.status_code == 200, answer.text
        labelled += 1
    assert labelled > 0
    # every worker (new connection each time) answers with the same version and scores
    deadline = time.monotonic() + 5
    while True:
        answers = [
            httpx.post(
                f"{server.url}/v1/tasks/{TASK}/predict",
                json={"features": probe_set(1)[0]},
                headers={**auth(ADMIN_KEY), "Connection": "close"},
            ).json()
            for _ in range(12)
        ]
        if {(a["model_version"], a["proba"]["approve"]) for a in answers} == {
            (labelled, answers[0]["proba"]["approve"])
        }:
            break
        assert time.monotonic() < deadline, answers
        time.sleep(0.1)
    assert server.stop() == 0


def test_followers_load_the_leaders_model_within_a_second(cluster):
    c = cluster()
    servers = c.start(3)
    leader = c.leader()
    followers = [s for s in servers if s is not leader]
    admin = c.admin(leader)
    create_task(admin, min_labels=10, threshold_policy="fixed", threshold=0.8)
    truth = send_cases(admin, 40, seed=2)
    [key] = reviewer_keys(admin, 1)
    waits = []
    with httpx.Client(base_url=followers[0].url, headers=auth(key), timeout=30) as rev:
        for _ in range(5):  # labels through a follower: the leader applies them
            claim = rev.post(f"/v1/tasks/{TASK}/queue/claim").json()
            case_id = claim["case"]["id"]
            answer = rev.post(
                f"/v1/cases/{case_id}/label",
                json={"label": truth[case_id], "lease_id": claim["lease_id"]},
            )
            assert answer.status_code == 200
            # the follower answers with the version it serves (the label is logged, not
            # yet applied there), never with a version it does not have
            assert answer.json()["model_version"] <= label_count(admin)
            acknowledged = time.monotonic()
            converge(servers, label_count(admin), probes=2)
            waits.append(time.monotonic() - acknowledged)
    admin.close()
    assert max(waits) < 1.0, waits
    print("label acknowledged -> every process serves it: " + ", ".join(f"{w:.2f}" for w in waits))


def label_count(admin: httpx.Client) -> int:
    return int(admin.get(f"/v1/tasks/{TASK}/metrics").json()["labels"])


# --- point 4 --------------------------------------------------------------------------
def test_sixteen_reviewers_on_three_processes_label_every_case_exactly_once(cluster):
    c = cluster()
    servers = c.start(3)
    n_cases, n_reviewers = 2000, 16
    with c.admin() as admin:
        create_task(admin)
        truth = send_cases(admin, n_cases, seed=4)
        keys = reviewer_keys(admin, n_reviewers)

    guard = threading.Lock()
    held: dict[str, tuple[int, bool]] = {}  # case -> (reviewer, giving it back now)
    double_claims: list[tuple[str, int, int]] = []
    labelled: dict[str, list[str]] = {}
    claims = releases = 0
    failures: list[str] = []

    def review(me: int) -> None:
        nonlocal claims, releases
        rng = random.Random(me)
        clients = [
            httpx.Client(base_url=s.url, headers=auth(keys[me]), timeout=30) for s in servers
        ]
        deadline = time.monotonic() + 400
        try:
            while time.monotonic() < deadline:
                with guard:
                    if len(labelled) >= n_cases:
                        return
                claim = rng.choice(clients).post(f"/v1/tasks/{TASK}/queue/claim")
                if claim.status_code == 204:
                    time.sleep(0.05)  # the rest is leased by others for now
                    continue
                if claim.status_code != 200:
                    failures.append(f"claim {claim.status_code} {claim.text}")
                    continue
                case_id, lease_id = claim.json()["case"]["id"], claim.json()["lease_id"]
                with guard:
                    claims += 1
                    other = held.get(case_id)
                    if other is not None and not other[1]:
                        double_claims.append((case_id, other[0], me))
                    held[case_id] = (me, False)
                give_back = rng.random() < 0.1
                with guard:
                    held[case_id] = (me, True)  # from now on another may get it
                if give_back:
                    answer = rng.choice(clients).post(
                        f"/v1/cases/{case_id}/release", json={"lease_id": lease_id}
                    )
                    ok = answer.status_code == 204
                else:
                    answer = rng.choice(clients).post(
                        f"/v1/cases/{case_id}/label",
                        json={"label": truth[case_id], "lease_id": lease_id},
                    )
                    ok = answer.status_code == 200
                if not ok:
                    failures.append(f"{answer.request.url.path} {answer.status_code} {answer.text}")
                with guard:
                    if held.get(case_id, (None,))[0] == me:
                        del held[case_id]
                    if ok and give_back:
                        releases += 1
                    elif ok:
                        labelled.setdefault(case_id, []).append(answer.json()["label"])
        finally:
            for client in clients:
                client.close()

    threads = [threading.Thread(target=review, args=(i,)) for i in range(n_reviewers)]
    started = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - started

    assert not failures, failures[:5]
    assert not double_claims, double_claims[:5]
    assert set(labelled) == set(truth)
    assert all(labels == [truth[c]] for c, labels in labelled.items())
    assert claims == n_cases + releases and releases > 0
    rows = label_rows(c.database_url)
    assert len(rows) == n_cases and set(rows.values()) == {1}  # one log entry per case
    with c.admin() as admin:
        metrics = admin.get(f"/v1/tasks/{TASK}/metrics").json()
    assert metrics["labels"] == n_cases and metrics["queue_depth"] == 0
    converge(servers, n_cases)  # applied labels = label count = model_version, everywhere
    # three processes extended the task's audit chain at once: one row per claim, label
    # and release, and the chain verifies (the advisory lock serialised them)
    db = Database(c.database_url)
    try:
        with db.read() as session:
            verified = audit_verify(session)
            actions = dict(
                session.exec(  # type: ignore[call-overload]
                    select(AuditLog.action, func.count()).group_by(AuditLog.action)
                ).all()
            )
    finally:
        db.dispose()
    assert verified.ok, verified.problems[:5]
    assert actions["case.claimed"] == claims and actions["case.labelled"] == n_cases
    assert actions["case.released"] == releases and actions["case.routed"] == n_cases
    print(f"{n_cases} cases, {claims} claims, {releases} releases in {elapsed:.1f} s")


# --- point 5 --------------------------------------------------------------------------
def test_kill_9_of_leader_and_follower_loses_nothing(cluster):
    c = cluster(TIERLINE_LEASE_SECONDS="3")
    servers = c.start(3)
    leader = c.leader()
    with c.admin(leader) as admin:
        create_task(admin)
        truth = send_cases(admin, 400, seed=5)
        keys = reviewer_keys(admin, 9)

    guard = threading.Lock()
    acknowledged_cases: list[str] = []
    acknowledged_labels: dict[str, str] = {}
    abandoned: dict[str, str] = {}  # case -> lease of a client whose process died
    stop = threading.Event()

    def send(seed: int) -> None:
        rng = random.Random(seed)
        while not stop.is_set():
            alive = c.alive()
            x, y = claims_case(rng)
            try:
                with httpx.Client(base_url=rng.choice(alive).url, timeout=10) as client:
                    r = client.post(
                        f"/v1/tasks/{TASK}/cases", json={"features": x}, headers=auth(ADMIN_KEY)
                    )
            except httpx.TransportError:
                continue
            if r.status_code == 201:
                with guard:
                    acknowledged_cases.append(r.json()["id"])
                    truth[r.json()["id"]] = y
            time.sleep(0.02)

    def review(me: int, server: ServerProcess) -> None:
        """A reviewer whose browser talks to one process; it gives up when that dies."""
        with httpx.Client(base_url=server.url, headers=auth(keys[me]), timeout=10) as client:
            while not stop.is_set():
                try:
                    claim = client.post(f"/v1/tasks/{TASK}/queue/claim")
                except httpx.TransportError:
                    return
                if claim.status_code != 200:
                    time.sleep(0.05)
                    continue
                case_id, lease_id = claim.json()["case"]["id"], claim.json()["lease_id"]
                with guard:
                    label = truth.get(case_id, "approve")  # (creation may be unacknowledged)
                try:
                    answer = client.post(
                        f"/v1/cases/{case_id}/label", json={"label": label, "lease_id": lease_id}
                    )
                except httpx.TransportError:
                    with guard:
                        abandoned[case_id] = lease_id
                    return
                if answer.status_code == 200:
                    with guard:
                        acknowledged_labels[case_id] = answer.json()["label"]

    threads = [threading.Thread(target=send, args=(i,)) for i in range(2)] + [
        threading.Thread(target=review, args=(i, servers[i % 3])) for i in range(9)
    ]
    for t in threads:
        t.start()

    def wait_for_labels(n: int) -> None:
        deadline = time.monotonic() + 120
        while len(acknowledged_labels) < n:
            assert time.monotonic() < deadline, "the load stalled"
            time.sleep(0.05)

    wait_for_labels(60)
    leader.kill()
    killed_at = time.monotonic()
    new_leader = c.leader(timeout=10)
    takeover = time.monotonic() - killed_at
    wait_for_labels(len(acknowledged_labels) + 60)
    follower = next(s for s in c.alive() if s is not new_leader)
    follower.kill()
    wait_for_labels(len(acknowledged_labels) + 40)
    stop.set()
    for t in threads:
        t.join()
    assert takeover < 5, takeover

    # the dead clients' leases expire and their cases return to the queue
    survivor = c.alive()
    assert survivor == [new_leader]
    time.sleep(3.5)
    with httpx.Client(base_url=new_leader.url, headers=auth(keys[0]), timeout=30) as rev:
        while (claim := rev.post(f"/v1/tasks/{TASK}/queue/claim")).status_code == 200:
            case_id = claim.json()["case"]["id"]
            answer = rev.post(
                f"/v1/cases/{case_id}/label",
                json={"label": truth.get(case_id, "approve"), "lease_id": claim.json()["lease_id"]},
            )
            assert answer.status_code == 200, answer.text
            acknowledged_labels[case_id] = answer.json()["label"]
    # every case the dead clients held was labelled in the end, under another lease
    # (unless the label had committed just before the process died)
    leases = dict(label_leases(c.database_url))
    assert abandoned and set(abandoned) <= set(leases)
    assert any(leases[case_id] != lease for case_id, lease in abandoned.items())

    with c.admin(new_leader) as admin:
        for case_id in acknowledged_cases:
            assert admin.get(f"/v1/cases/{case_id}").status_code == 200
        for case_id, label in acknowledged_labels.items():
            assert admin.get(f"/v1/cases/{case_id}").json()["label"] == label
        metrics = admin.get(f"/v1/tasks/{TASK}/metrics").json()
    rows = label_rows(c.database_url)
    assert set(rows.values()) == {1}
    # a label may have committed just before its process died, unacknowledged
    assert metrics["labels"] == len(rows) >= len(acknowledged_labels)
    assert set(acknowledged_labels) <= set(rows)
    assert metrics["queue_depth"] == 0

    # the leader's model is the fold of the label log; a replay from nothing agrees
    converge([new_leader], len(rows))
    version, probes = served(new_leader)
    assert (version, probes) == replay(c.database_url)
    print(f"takeover {takeover:.2f} s; {len(abandoned)} leases of dead clients came back")
    # and a process started now (from the snapshots) serves the same
    (late,) = c.start(1)
    converge([new_leader, late], len(rows))


# --- point 6 --------------------------------------------------------------------------
def test_database_outage_is_503_with_retry_after_then_recovers(cluster):
    c = cluster()
    servers = c.start(2)
    with c.admin() as admin:
        create_task(admin)
        truth = send_cases(admin, 300, seed=6)
        keys = reviewer_keys(admin, 3)

    guard = threading.Lock()
    outcomes: list[tuple[str, int, float, str | None]] = []  # path, status, seconds, Retry-After
    transport_errors: list[str] = []
    acknowledged_cases: list[str] = []
    acknowledged_labels: dict[str, str] = {}
    stop = threading.Event()

    def call(client: httpx.Client, path: str, **kwargs) -> httpx.Response | None:
        start = time.monotonic()
        try:
            r = client.post(path, **kwargs)
        except httpx.TransportError as exc:
            transport_errors.append(f"{path}: {exc!r}")
            return None
        with guard:
            kind = path.rsplit("/", 1)[-1]
            outcomes.append(
                (kind, r.status_code, time.monotonic() - start, r.headers.get("retry-after"))
            )
        return r

    def send(seed: int) -> None:
        rng = random.Random(seed)
        clients = [
            httpx.Client(base_url=s.url, headers=auth(ADMIN_KEY), timeout=20) for s in servers
        ]
        while not stop.is_set():
            x, y = claims_case(rng)
            r = call(rng.choice(clients), f"/v1/tasks/{TASK}/cases", json={"features": x})
            if r is not None and r.status_code == 201:
                with guard:
                    truth[r.json()["id"]] = y
                    acknowledged_cases.append(r.json()["id"])
            time.sleep(0.02)

    def review(me: int) -> None:
        rng = random.Random(me)
        clients = [
            httpx.Client(base_url=s.url, headers=auth(keys[me]), timeout=20) for s in servers
        ]
        while not stop.is_set():
            claim = call(rng.choice(clients), f"/v1/tasks/{TASK}/queue/claim")
            if claim is None or claim.status_code != 200:
                time.sleep(0.05)
                continue
            case_id, lease_id = claim.json()["case"]["id"], claim.json()["lease_id"]
            with guard:
                label = truth.get(case_id, "approve")
            while True:  # a label the API did not acknowledge is sent again (idempotent)
                answer = call(
                    rng.choice(clients),
                    f"/v1/cases/{case_id}/label",
                    json={"label": label, "lease_id": lease_id},
                )
                if answer is not None and answer.status_code == 200:
                    with guard:
                        acknowledged_labels[case_id] = label
                    break
                if answer is not None and answer.status_code == 409:
                    break
                time.sleep(0.2)

    threads = [threading.Thread(target=send, args=(0,))] + [
        threading.Thread(target=review, args=(i,)) for i in range(3)
    ]
    for t in threads:
        t.start()
    time.sleep(3)
    stop_pg_cluster()
    try:
        stopped_at = time.monotonic()
        time.sleep(10)
    finally:
        start_pg_cluster()
    assert pg_cluster_running()
    outage_end = len(outcomes)
    recovered = None
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with guard:
            recent = outcomes[outage_end:]
        if sum(1 for kind, status, *_ in recent if kind == "label" and status == 200) >= 5:
            recovered = time.monotonic() - stopped_at - 10
            break
        time.sleep(0.1)
    stop.set()
    for t in threads:
        t.join()

    assert recovered is not None, "the service did not recover within 30 s"
    assert not transport_errors, transport_errors[:5]
    statuses = {status for _, status, *_ in outcomes}
    assert 503 in statuses, "the outage was not seen"
    assert statuses <= {200, 201, 204, 409, 503}, statuses
    assert all(retry for _, status, _, retry in outcomes if status == 503)
    slowest = max(seconds for _, _, seconds, _ in outcomes)
    assert slowest < 5, slowest

    with c.admin() as admin:
        for case_id in acknowledged_cases:
            assert admin.get(f"/v1/cases/{case_id}").status_code == 200
        for case_id, label in acknowledged_labels.items():
            assert admin.get(f"/v1/cases/{case_id}").json()["label"] == label
        labels = label_count(admin)
    rows = label_rows(c.database_url)
    assert labels == len(rows) >= len(acknowledged_labels)
    converge(servers, labels, timeout=15)
    print(f"recovered {recovered:.1f} s after the database came back; slowest call {slowest:.2f} s")
