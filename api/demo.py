"""``tierline demo``: the whole loop on a laptop, fed from river's shipped Phishing data.

Starts the API and the review UI as child processes, creates fresh demo keys and
the demo task, warms the task past its cold start with labelled history, then
feeds the rest of the stream at a gentle rate so that the review queue fills
while automated decisions come in. Ctrl-C (or SIGTERM) stops everything.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from itertools import islice

import httpx
from sqlmodel import col

from api import migrate
from api.cli import ui_command
from api.db import Database
from api.schemas import KeyCreate
from api.services.keys import create_key
from api.settings import get_settings
from api.tables import ApiKey
from learner import load_stream, schema_to_json

log = logging.getLogger("tierline.demo")
TASK = "demo-phishing"
WARM_START = 400  # labelled cases replayed first, so the task leaves its cold start
LABEL_NAMES = {"True": "phishing", "False": "legitimate"}  # river's labels, made readable


class Stop(Exception):
    pass


def _raise_stop(*_: object) -> None:
    raise Stop


def run_demo(*, api_port: int, ui_port: int, rate: float) -> None:
    logging.getLogger("httpx").setLevel(logging.WARNING)
    os.environ.setdefault("TIERLINE_ENV", "dev")
    get_settings.cache_clear()
    settings = get_settings()
    migrate.upgrade(settings.database_url)
    keys = _demo_keys(settings.database_url)
    api_url = f"http://127.0.0.1:{api_port}"
    env = {**os.environ, "TIERLINE_API_URL": api_url}
    # own sessions: Ctrl-C reaches only this process, which then stops the children in order
    serve = [sys.executable, "-m", "api.cli", "serve", "--port", str(api_port)]
    children = [
        subprocess.Popen(serve, env=env, start_new_session=True),
        subprocess.Popen(ui_command(ui_port), env=env, start_new_session=True),
    ]
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, _raise_stop)
    try:
        with httpx.Client(
            base_url=api_url, timeout=10, headers={"Authorization": f"Bearer {keys['admin']}"}
        ) as admin:
            _wait_ready(admin, children)
            stream = load_stream("phishing", seed=0)
            _ensure_task(admin, stream)
            rows = ((x, LABEL_NAMES.get(y, y)) for x, y in stream.rows)
            _warm_start(api_url, keys, islice(rows, WARM_START))
            _banner(api_url, ui_port, keys)
            _feed(api_url, keys["service"], rows, rate)
    except Stop:
        pass
    finally:
        print("\nstopping tierline demo ...", flush=True)
        for child in children:
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        for child in children:
            try:
                child.wait(timeout=15)
            except subprocess.TimeoutExpired:
                child.kill()
        print("stopped.", flush=True)


def _demo_keys(database_url: str) -> dict[str, str]:
    """Fresh keys for each role; earlier demo keys are revoked."""
    db = Database(database_url)
    keys = {}
    with db.write() as session:
        for old in session.query(ApiKey).filter(col(ApiKey.name).startswith("demo-")):
            old.revoked, old.revoked_at = True, time.time()
        for role in ("admin", "reviewer", "analyst", "service"):
            keys[role] = create_key(session, KeyCreate(name=f"demo-{role}", role=role)).key  # type: ignore[arg-type]
        keys["history"] = create_key(session, KeyCreate(name="demo-history", role="reviewer")).key
    db.dispose()
    return keys


def _wait_ready(client: httpx.Client, children: list[subprocess.Popen]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if any(child.poll() is not None for child in children):
            raise SystemExit("a demo process exited during start-up; see the log above")
        try:
            if client.get("/readyz").status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.3)
    raise SystemExit("the API did not become ready within 60 s")


def _ensure_task(admin: httpx.Client, stream) -> None:  # type: ignore[no-untyped-def]
    if admin.get(f"/v1/tasks/{TASK}").status_code == 200:
        return
    response = admin.post(
        "/v1/tasks",
        json={
            "name": TASK,
            "labels": [LABEL_NAMES.get(label, label) for label in stream.labels],
            "features": schema_to_json(stream.schema),
            "target_error": 0.05,
            "audit_rate": 0.05,
            "min_labels": 50,
            "threshold": 0.9,
        },
    )
    response.raise_for_status()


def _warm_start(api_url: str, keys: dict[str, str], rows) -> None:  # type: ignore[no-untyped-def]
    """Replay labelled history as a past reviewer would have: each case is sent, then
    labelled before the next arrives, so the recorded suggestions stay prequential."""
    service = httpx.Client(base_url=api_url, headers={"Authorization": f"Bearer {keys['service']}"})
    history = httpx.Client(base_url=api_url, headers={"Authorization": f"Bearer {keys['history']}"})
    with service, history:
        if history.get(f"/v1/tasks/{TASK}").json()["model_version"] >= WARM_START:
            return
        for x, y in rows:
            case = service.post(f"/v1/tasks/{TASK}/cases", json={"features": x}).json()
            if case["status"] == "decided" and not case["audit"]:
                continue  # automated, not audited: history has no label for it either
            response = history.post(f"/v1/tasks/{TASK}/queue/claim")
            if response.status_code != 200:
                continue
            claim = response.json()
            if claim["case"]["id"] != case["id"]:  # a case left from an earlier run
                history.post(
                    f"/v1/cases/{claim['case']['id']}/release", json={"lease_id": claim["lease_id"]}
                )
                continue
            history.post(
                f"/v1/cases/{case['id']}/label",
                json={"label": y, "lease_id": claim["lease_id"], "comment": "demo history"},
            )


def _feed(api_url: str, key: str, rows, rate: float) -> None:  # type: ignore[no-untyped-def]
    with httpx.Client(base_url=api_url, headers={"Authorization": f"Bearer {key}"}) as service:
        for sent, (x, _) in enumerate(rows, start=1):
            service.post(f"/v1/tasks/{TASK}/cases", json={"features": x})
            if sent % 50 == 0:
                log.info("demo fed %d cases", sent)
            time.sleep(1.0 / rate)
    log.info("demo data set exhausted; the API and UI keep running (Ctrl-C to stop)")
    while True:
        time.sleep(3600)


def _banner(api_url: str, ui_port: int, keys: dict[str, str]) -> None:
    print(
        f"""
================ tierline demo ================
Review UI : http://127.0.0.1:{ui_port}
API       : {api_url}   (docs: {api_url}/docs)
Task      : {TASK}  (river's Phishing data set, {WARM_START} labelled cases replayed)

Sign in to the review UI with one of these keys:
  reviewer : {keys["reviewer"]}
  analyst  : {keys["analyst"]}
  admin    : {keys["admin"]}
  service  : {keys["service"]}

Cases arrive continuously; uncertain ones wait for you in the review queue.
Press Ctrl-C to stop everything.
===============================================
""",
        flush=True,
    )
