"""The audit trail: every state change as an append-only row, chained by hash.

One chain per task (``chain`` = the task's id) plus chain ``0`` for everything else
(keys, tasks not yet created). A row's ``hash`` is the SHA-256 of its own fields,
the ``digest`` of its payload and ``prev_hash``, the hash of the row before it in its
chain, so editing, deleting or reordering a row breaks the chain from that row on
(:func:`verify`). The digest covers a *view* of the payload in which redactable
fields (a case's ``features``) appear as their own SHA-256: erasing them on request
(:func:`redact`) leaves the marker ``{"redacted": true, "sha256": ...}`` and the
chain still verifies.

Serialisation: the chain head is read and extended in the writer's transaction. SQLite
writers are serialised already (:mod:`api.db`); on PostgreSQL a transaction-scoped
advisory lock per chain is taken before the head is read, and is taken after the
transaction's other writes (callers record last), so it is held only until commit and
never ahead of a row lock (no deadlock with the label log lock or the task row).
Chains per task keep tasks from queueing behind one another.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import event, text, update
from sqlmodel import Session, col, select

from api.db import advisory_xact_lock, insert_rows
from api.schemas import AuditActor, AuditEntry, AuditPage, iso
from api.security import Principal
from api.tables import AuditLog

GENESIS = "0" * 64
HEAD = text("SELECT seq, hash FROM audit_log WHERE chain = :chain ORDER BY seq DESC LIMIT 1")
GLOBAL_CHAIN = 0
AUDIT_LOCK_NAMESPACE = 0x7461  # "ta": apart from the label log's and the leader's locks
REDACTABLE = ("features",)
SYSTEM = Principal(id="system", name="tierline", role="system")
_acting: ContextVar[Principal | None] = ContextVar("tierline_acting", default=None)


def act_as(who: Principal | None) -> None:
    """Name the caller of this request (or command) for code that records on its behalf
    far from the route (set by the authentication dependency)."""
    _acting.set(who)


def acting() -> Principal | None:
    """The caller named by :func:`act_as` in this context, if any."""
    return _acting.get()


_CANONICAL = orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS


def canonical(value: Any) -> bytes:
    """The one serialisation that is hashed: sorted keys, no spaces, UTF-8.

    >>> canonical({"b": 1, "a": [1.5, None]})
    b'{"a":[1.5,null],"b":1}'
    """
    return orjson.dumps(value, option=_CANONICAL, default=str)


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _is_marker(value: Any) -> bool:
    return isinstance(value, dict) and len(value) == 2 and value.keys() == _MARKER_KEYS


_MARKER_KEYS = frozenset({"redacted", "sha256"})


def _view(payload: dict | None) -> dict | None:
    """The payload as the digest sees it: redactable fields replaced by their SHA-256."""
    if payload is None:
        return None
    view = dict(payload)
    for name in REDACTABLE:
        if name in view:
            value = view[name]
            seal = value["sha256"] if _is_marker(value) else sha256(canonical(value))
            view[name] = {"sha256": seal}
    return view


def digest_of(before: dict | None, after: dict | None) -> str:
    """SHA-256 of the payload's view: unchanged when a redactable field is erased.

    >>> full = digest_of(None, {"features": {"amount": 3}, "route": "auto"})
    >>> marker = {"redacted": True, "sha256": sha256(canonical({"amount": 3}))}
    >>> digest_of(None, {"features": marker, "route": "auto"}) == full
    True
    """
    return sha256(canonical({"before": _view(before), "after": _view(after)}))


def row_hash(row: Any, prev_hash: str) -> str:
    """The hash chaining a row (a dict, or anything with the columns as attributes) to
    the one before it."""
    if isinstance(row, dict):  # the write path: item lookups, no per-field calls
        values = [row[name] for name in HASHED_FIELDS]
    else:
        values = [getattr(row, name) for name in HASHED_FIELDS]
    values[2] = repr(float(values[2]))  # "at": the float's exact text
    return sha256(canonical([prev_hash, *values]))


HASHED_FIELDS = (  # the chain covers these columns (and the previous row's hash), in order
    "chain",
    "seq",
    "at",
    "actor_id",
    "actor_name",
    "actor_role",
    "action",
    "task",
    "subject",
    "digest",
)


# --- writing ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Entry:
    """One state change to record (``digest``: computed ahead, outside any lock)."""

    action: str
    subject: str | None = None
    before: dict | None = None
    after: dict | None = None
    digest: str | None = None


def routed_entry(case: dict, routing: dict) -> Entry:
    """The audit entry of a routed case: the decision, why, under which model and
    threshold, and the features it was made on (redactable)."""
    after = {
        "external_id": case["external_id"],
        "status": case["status"],
        "decision": case["decision"],
        "route": routing["route"],
        "suggestion": routing["suggestion"],
        "confidence": routing["confidence"],
        "threshold": routing["threshold"],
        "audit": routing["audit"],
        "reasons": routing["reasons"],
        "model_version": routing["model_version"],
        "features": case["features"],
    }
    return Entry("case.routed", case["id"], None, after, digest_of(None, after))


def record(
    session: Session,
    actor: Principal | None,
    action: str,
    *,
    task: Any = None,
    subject: str | None = None,
    before: dict | None = None,
    after: dict | None = None,
) -> None:
    """Append one audit row in the caller's transaction (call it after the other writes).

    ``task`` is the task row (or anything with ``id`` and ``name``), or ``None`` for
    changes outside a task (keys).
    """
    record_many(session, actor, task, [Entry(action, subject, before, after)])


def record_many(
    session: Session, actor: Principal | None, task: Any, entries: Sequence[Entry]
) -> None:
    """Append several rows to one chain with one head read and one multi-row INSERT."""
    if not entries:
        return
    actor = actor or SYSTEM
    chain = int(task.id) if task is not None else GLOBAL_CHAIN
    seq, prev = _head(session, chain)
    now = time.time()
    rows = []
    for i, entry in enumerate(entries):
        seq += 1
        row = {
            "chain": chain,
            "seq": seq,
            "at": now + i * 1e-6,
            "actor_id": actor.id[:32],
            "actor_name": actor.name[:128],
            "actor_role": actor.role[:16],
            "action": entry.action,
            "task": task.name if task is not None else None,
            "subject": entry.subject,
            "before": entry.before,
            "after": entry.after,
            "redacted": False,
            "digest": entry.digest or digest_of(entry.before, entry.after),
        }
        row["prev_hash"] = prev
        row["hash"] = prev = row_hash(row, prev)
        rows.append(row)
    insert_rows(session, AuditLog.__table__, rows)  # type: ignore[attr-defined]
    session.info.setdefault("audit_heads", {})[chain] = (seq, prev)


def _head(session: Session, chain: int) -> tuple[int, str]:
    """The chain's last (seq, hash), read under the chain's lock (held until commit)."""
    heads: dict[int, tuple[int, str]] = session.info.setdefault("audit_heads", {})
    if chain in heads:
        return heads[chain]
    session.flush()  # the transaction's pending row locks come before the chain's lock
    connection = session.connection()
    advisory_xact_lock(connection, AUDIT_LOCK_NAMESPACE, chain)
    last = connection.execute(HEAD, {"chain": chain}).first()
    head = (0, GENESIS) if last is None else (int(last[0]), str(last[1]))
    heads[chain] = head
    return head


@event.listens_for(Session, "after_commit")
@event.listens_for(Session, "after_rollback")
def _forget_heads(session: Session) -> None:
    """A chain head read in a transaction is only good (and locked) until it ends."""
    session.info.pop("audit_heads", None)


def redact(session: Session, subject: str, fields: Sequence[str] = REDACTABLE) -> int:
    """Erase redactable fields from every audit row about ``subject``; returns rows changed.

    Each erased value is replaced by ``{"redacted": true, "sha256": <its digest>}``, so the
    chain still verifies.
    """
    rows = session.exec(select(AuditLog).where(AuditLog.subject == subject)).all()
    changed = 0
    for row in rows:
        values: dict[str, Any] = {}
        for side in ("before", "after"):
            payload = getattr(row, side)
            if not payload or not any(f in payload and not _is_marker(payload[f]) for f in fields):
                continue
            payload = dict(payload)
            for name in fields:
                if name in payload and not _is_marker(payload[name]):
                    payload[name] = {"redacted": True, "sha256": sha256(canonical(payload[name]))}
            values[side] = payload
        if values:
            session.execute(
                update(AuditLog).where(col(AuditLog.id) == row.id).values(**values, redacted=True)
            )
            changed += 1
    return changed


# --- verifying ----------------------------------------------------------------------------
@dataclass(frozen=True)
class Problem:
    """One break in a chain: the row where it shows, and what it means."""

    chain: int
    row_id: int | None
    seq: int | None
    kind: str  # edited | deleted | reordered | rewritten
    message: str

    def __str__(self) -> str:
        place = f"chain {self.chain}, seq {self.seq}"
        where = f"row {self.row_id} ({place})" if self.row_id is not None else place
        return f"{where}: {self.kind}: {self.message}"


@dataclass
class Verification:
    rows: int
    chains: dict[int, tuple[int, str]]  # chain -> (length, head hash)
    redacted: int
    problems: list[Problem]

    @property
    def ok(self) -> bool:
        return not self.problems


def verify(
    session: Session, chunk: int = 5000, expect: Sequence[tuple[int, int, str]] = ()
) -> Verification:
    """Walk every chain in ``seq`` order and check each row's digest, hash and link.

    An edited row fails its own digest or hash (or its successor's link); a deleted row
    leaves a gap in ``seq``; reordered rows have ids out of ``seq`` order (the log's
    order is its ids). The chain is plain SHA-256: whoever can write the database can edit
    a row and compute the hashes after it again, and can delete the newest rows. Both show
    only against a head recorded earlier, outside the database: ``expect`` holds such
    heads, ``(chain, seq, hash)``, and each must still be the hash of that row. The result
    gives each chain's length and head hash to keep for that.
    """
    chains = session.exec(select(AuditLog.chain).distinct()).all()
    result = Verification(rows=0, chains={}, redacted=0, problems=[])
    for chain in sorted(chains):
        result.chains[chain] = _verify_chain(session, chain, chunk, result)
    for chain, seq, recorded in expect:
        row = session.execute(
            select(AuditLog.id, AuditLog.hash).where(AuditLog.chain == chain, AuditLog.seq == seq)
        ).first()
        if row is None:
            result.problems.append(
                Problem(chain, None, seq, "deleted", "a head recorded earlier is gone")
            )
        elif row.hash != recorded:
            result.problems.append(
                Problem(
                    chain, row.id, seq, "rewritten",
                    f"its hash is {row.hash[:12]}…, recorded earlier as {recorded[:12]}…: "
                    "the chain was computed again up to here",
                )  # fmt: skip
            )
    return result


def _rows(session: Session, chain: int, chunk: int) -> Iterator[Any]:
    """The chain's rows in ``seq`` order, read in chunks (plain rows: no ORM objects)."""
    table = AuditLog.__table__  # type: ignore[attr-defined]
    last_seq = 0
    while True:
        rows = session.execute(
            table.select()
            .where(table.c.chain == chain, table.c.seq > last_seq)
            .order_by(table.c.seq)
            .limit(chunk)
        ).all()
        yield from rows
        if len(rows) < chunk:
            return
        last_seq = rows[-1].seq


def _verify_chain(
    session: Session, chain: int, chunk: int, result: Verification
) -> tuple[int, str]:
    prev_seq, prev_hash, prev_id = 0, GENESIS, 0
    problems = result.problems
    for row in _rows(session, chain, chunk):
        result.rows += 1
        result.redacted += row.redacted

        def problem(kind: str, message: str, row: Any = row) -> None:
            problems.append(Problem(chain, row.id, row.seq, kind, message))

        if digest_of(row.before, row.after) != row.digest:
            problem("edited", "its before/after payload does not match its digest")
        if row_hash(row, row.prev_hash) != row.hash:
            problem("edited", "its fields do not match its hash")
        if row.seq > prev_seq + 1:
            missing = f"seq {prev_seq + 1}" + (
                f"..{row.seq - 1}" if row.seq - 1 > prev_seq + 1 else ""
            )
            problem("deleted", f"{missing} missing before it")
        elif row.prev_hash != prev_hash:
            problem("edited", f"prev_hash does not match the hash of seq {prev_seq}")
        if row.id is not None and row.id < prev_id:
            problem("reordered", f"its id comes before that of seq {prev_seq} (row {prev_id})")
        prev_seq, prev_hash, prev_id = row.seq, row.hash, row.id or prev_id
    return prev_seq, prev_hash


# --- reading ------------------------------------------------------------------------------
MAX_PAGE = 1000


def list_audit(
    session: Session,
    *,
    task: str | None = None,
    action: str | None = None,
    actor: str | None = None,
    subject: str | None = None,
    since: float | None = None,
    until: float | None = None,
    before: int | None = None,
    limit: int = 100,
    tasks_in_scope: frozenset[str] | None = None,
    with_keys: bool = True,
) -> AuditPage:
    """A page of the audit trail, newest first; ``before`` pages on (a row id).
    ``with_keys=False`` leaves out the rows about keys (for callers who may not read keys).
    """
    query = select(AuditLog)
    if not with_keys:
        query = query.where(~col(AuditLog.action).startswith("key."))
    if task is not None:
        query = query.where(AuditLog.task == task)
    if tasks_in_scope is not None:
        query = query.where(col(AuditLog.task).in_(sorted(tasks_in_scope)))
    if action is not None:
        query = query.where(AuditLog.action == action)
    if actor is not None:
        query = query.where((AuditLog.actor_id == actor) | (AuditLog.actor_name == actor))
    if subject is not None:
        query = query.where(AuditLog.subject == subject)
    if since is not None:
        query = query.where(col(AuditLog.at) >= since)
    if until is not None:
        query = query.where(col(AuditLog.at) < until)
    if before is not None:
        query = query.where(col(AuditLog.id) < before)
    rows = session.exec(query.order_by(col(AuditLog.id).desc()).limit(limit)).all()
    data = [
        AuditEntry(
            id=r.id,  # type: ignore[arg-type]
            at=iso(r.at),
            actor=AuditActor(id=r.actor_id, name=r.actor_name, role=r.actor_role),
            action=r.action,
            task=r.task,
            subject=r.subject,
            before=r.before,
            after=r.after,
            redacted=r.redacted,
            chain=r.chain,
            seq=r.seq,
            prev_hash=r.prev_hash,
            hash=r.hash,
        )
        for r in rows
    ]
    next_before = data[-1].id if len(data) == limit else None
    return AuditPage(data=data, count=len(data), next_before=next_before)
