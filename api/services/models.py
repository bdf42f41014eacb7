"""Model versions of a task: list the kept snapshots, activate one (roll back online).

Activation makes a signed snapshot the head of the task's model lineage, as
``tierline model rollback`` does offline (:func:`api.lineage.rollback_model`): the
snapshot is copied with the newest label id of the log, so the labels in between stay
in the log but not in this lineage, and learning goes on from the restored model. A
snapshot whose signature fails is never unpickled.
"""

from __future__ import annotations

import time

from sqlalchemy import func
from sqlmodel import Session, col, select

from api.db import Database, lock_label_log
from api.errors import Conflict, NotFound
from api.live import LiveModel, ModelStore
from api.schemas import ModelSnapshotPublic, ModelsPublic, iso
from api.security import Principal, verify
from api.services import audit
from api.services.tasks import get_task, record_history, sync_task
from api.tables import Label, ModelSnapshot, Task


def list_models(session: Session, store: ModelStore, task_name: str) -> ModelsPublic:
    """The task's kept snapshots (the versions one can roll back to), newest version first,
    each with whether its HMAC checks out."""
    task = get_task(session, task_name)
    rows = session.exec(
        select(ModelSnapshot)
        .where(ModelSnapshot.task_id == task.id, col(ModelSnapshot.kept))
        .order_by(col(ModelSnapshot.version).desc(), col(ModelSnapshot.id).desc())
    ).all()
    data = [
        ModelSnapshotPublic(
            id=r.id,  # type: ignore[arg-type]
            version=r.version,
            last_label_id=r.last_label_id,
            family=r.family,
            created_at=iso(r.created_at),
            signed=verify(r.blob, r.signature, store.secret),
        )
        for r in rows
    ]
    live = store.get(task)
    active = live.version if live is not None else 0
    return ModelsPublic(task=task.name, active_version=active, data=data, count=len(data))


def activate(
    db: Database, store: ModelStore, task_name: str, version: int, who: Principal
) -> ModelsPublic:
    """Serve the task's model as it was at ``version`` (a kept, signed snapshot) from now on.

    Only the process that applies labels (the leader; on SQLite the one process) can do
    it; elsewhere it is a 409. The change is in the task's history and the audit trail.
    """
    if not store.leader:
        raise Conflict(
            "this process is not the model leader: retry (another process may lead), or "
            "stop the API processes and use `tierline model rollback`"
        )
    task = store.tasks.get(task_name)
    live = store.get(task)
    if live is None:
        raise NotFound(f"task {task_name!r} has no model yet")
    keep_head(store, live)
    with db.write() as session:
        task = get_task(session, task_name)
        restored = restore_snapshot(
            session, store, task, version, exact=True, actor=who,
            keep_label_id=live.last_label_id,
            before={"version": live.version, "last_label_id": live.last_label_id},
        )  # fmt: skip
        if restored is None:
            raise NotFound(
                f"task {task_name!r} has no signed snapshot of version {version} "
                f"(GET /v1/tasks/{task_name}/models lists them)"
            )
        fresh, _ = restored
    with live.lock:
        live.adopt(fresh)  # a challenger's race begun after the snapshot ends with it
    store.tasks.forget(task_name)
    with db.read() as session:
        return list_models(session, store, task_name)


def keep_head(store: ModelStore, live: LiveModel) -> None:
    """Keep the model as it stands before a rollback replaces it, unless a kept snapshot
    already holds it (most labels only publish a snapshot that the next one deletes), so
    that activating its version undoes the rollback. A model that learned nothing has
    nothing to keep."""
    if live.version == 0:
        return
    with store.db.read() as session:
        kept = session.exec(
            select(ModelSnapshot.id).where(
                ModelSnapshot.task_id == live.task_id,
                col(ModelSnapshot.kept),
                ModelSnapshot.version == live.version,
                ModelSnapshot.last_label_id == live.last_label_id,
            )
        ).first()
    if kept is None:
        store.save_snapshot(live)


def restore_snapshot(
    session: Session,
    store: ModelStore,
    task: Task,
    version: int,
    *,
    exact: bool,
    actor: Principal | None,
    keep_label_id: int = 0,
    before: dict | None = None,
) -> tuple[LiveModel, str] | None:
    """Make a signed snapshot the head of the task's lineage, in the caller's transaction.

    The snapshot of ``version`` (or, unless ``exact``, the newest at or below it) is
    copied into a new snapshot tagged with the newest label id in the log, so every
    process replays only labels logged after the rollback; the task's mode and threshold
    follow the restored governor, with a history entry and an audit row. Returns the
    restored live model and the reason, or ``None`` when no signed snapshot matches.
    """
    lock_label_log(session.connection(), task.id)  # type: ignore[arg-type]
    newest_label = session.exec(select(func.max(Label.id)).where(Label.task_id == task.id)).one()
    wanted = ModelSnapshot.version == version if exact else col(ModelSnapshot.version) <= version
    candidates = session.exec(
        select(ModelSnapshot)
        .where(ModelSnapshot.task_id == task.id, col(ModelSnapshot.kept), wanted)
        .order_by(col(ModelSnapshot.version).desc(), col(ModelSnapshot.id).desc())
    ).all()
    for chosen in candidates:  # the newest that is signed and loads
        fresh = store.load_snapshot(chosen)
        if fresh is not None:
            break
    else:
        return None
    fresh.last_label_id = max(newest_label or 0, keep_label_id)
    if fresh.last_label_id > chosen.last_label_id:  # a rebuild from the log skips them too
        fresh.skipped = [*fresh.skipped, [chosen.last_label_id, fresh.last_label_id]]
    session.add(
        ModelSnapshot(
            task_id=chosen.task_id,
            version=chosen.version,
            last_label_id=fresh.last_label_id,
            family=chosen.family,
            blob=chosen.blob,
            signature=chosen.signature,
            created_at=time.time(),
            skipped_labels=fresh.skipped,
        )
    )
    reason = f"model rolled back to version {chosen.version} by {(actor or audit.SYSTEM).name}"
    if fresh.last_label_id > chosen.last_label_id:
        reason += (
            f" (labels after #{chosen.last_label_id} up to #{fresh.last_label_id} are not in "
            "this lineage)"
        )
    record_history(session, task, reason)
    sync_task(session, task, fresh, reason)
    audit.record(
        session, actor, "model.activated", task=task, subject=task.name, before=before,
        after={"version": chosen.version, "snapshot_id": chosen.id,
               "last_label_id": fresh.last_label_id, "reason": reason},
    )  # fmt: skip
    return fresh, reason
