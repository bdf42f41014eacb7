"""FastAPI dependencies: the app's state, and who is calling with which rights."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.routing import APIRoute
from sqlmodel import col, select

from api.cache import TTLCache
from api.db import Database
from api.live import ModelStore
from api.observability import Instruments
from api.outbox import WebhookDispatcher
from api.ratelimit import RateLimiter
from api.security import Principal, hash_key, same_secret
from api.services import audit
from api.services.keys import BOOTSTRAP_ADMIN
from api.settings import Settings
from api.tables import Case, Task


@dataclass
class AppState:
    """Everything the routes need, built once in the lifespan."""

    settings: Settings
    db: Database
    store: ModelStore
    instruments: Instruments
    keys: TTLCache[str, Principal | None]  # key hash -> principal
    webhooks: WebhookDispatcher | None = None  # None: this process does not deliver
    limiter: RateLimiter | None = None  # per-key rate limits (made on first use when on)

    def rate_limiter(self) -> RateLimiter | None:
        """The per-key limiter, or ``None`` when ``rate_limit_per_second`` is 0 (off)."""
        if self.limiter is None and self.settings.rate_limit_per_second > 0:
            self.limiter = RateLimiter(
                self.settings.rate_limit_per_second, self.settings.rate_limit_burst
            )
        return self.limiter

    def wake_webhooks(self) -> None:
        """Have the dispatcher look for due events now (else within its poll interval)."""
        if self.webhooks is not None:
            self.webhooks.wake()


async def get_state(request: Request) -> AppState:
    # async (as the other dependencies here): a sync dependency costs a threadpool hop
    return request.app.state.tierline  # type: ignore[no-any-return]


StateDep = Annotated[AppState, Depends(get_state)]


async def current_principal(request: Request, state: StateDep) -> Principal:
    """The caller behind ``Authorization: Bearer <key>``; 401 when missing or unknown."""
    header = request.headers.get("authorization", "")
    scheme, _, presented = header.partition(" ")
    if scheme.lower() != "bearer" or not presented.strip():
        raise HTTPException(
            401,
            "missing API key: send Authorization: Bearer <key>",
            headers={"WWW-Authenticate": "Bearer"},
        )
    presented = presented.strip()
    admin_key = state.settings.admin_key
    if admin_key and same_secret(presented, admin_key):
        who: Principal | None = BOOTSTRAP_ADMIN
    else:
        key_hash = hash_key(presented)
        cached, who = state.keys.at_hand(key_hash)
        if not cached:  # a database read: off the event loop
            who = await run_in_threadpool(state.keys.get, key_hash)
    if who is None:
        raise HTTPException(
            401, "unknown or revoked API key", headers={"WWW-Authenticate": "Bearer"}
        )
    audit.act_as(who)
    limiter = state.rate_limiter()
    if limiter is not None and (wait := limiter.acquire(who.id)):
        raise HTTPException(
            429,
            f"rate limit: {limiter.rate:g} requests/s per key; retry later",
            headers={"Retry-After": limiter.retry_after(wait)},
        )
    return who


CurrentKey = Annotated[Principal, Depends(current_principal)]


def require(permission: str):  # type: ignore[no-untyped-def]
    """A dependency that lets through only keys whose role grants ``permission``."""

    async def check(request: Request, state: StateDep, who: CurrentKey) -> Principal:
        if not who.can(permission):
            raise HTTPException(403, f"role {who.role!r} may not do this ({permission})")
        if who.tasks is not None:  # a scoped key: only its tasks, and their cases
            task = request.path_params.get("task")
            if task is not None and not who.may_use(task):
                raise HTTPException(403, f"this key is not scoped to task {task!r}")
            case_id = request.path_params.get("case_id")
            if case_id is not None:
                owner = await run_in_threadpool(_task_of_case, state.db, case_id)
                if owner is None or not who.may_use(owner):  # as if it did not exist
                    raise HTTPException(404, f"case {case_id!r} not found")
        return who

    return Depends(check)


def _task_of_case(db: Database, case_id: str) -> str | None:
    """The name of the task a case belongs to (``None``: no such case)."""
    with db.read() as session:
        return session.exec(  # type: ignore[no-any-return]
            select(Task.name).join(Case, col(Case.task_id) == Task.id).where(Case.id == case_id)
        ).first()


Reviewer = Annotated[Principal, require("review")]


def unauthenticated_routes(app: FastAPI) -> list[str]:
    """The ``/v1`` routes that do not depend on :func:`current_principal` (should be none).

    ``create_app`` refuses to build an app with such a route: deny by default.
    """

    def authenticates(dependant: Any) -> bool:
        return dependant.call is current_principal or any(
            authenticates(d) for d in dependant.dependencies
        )

    def api_routes(routes: list[Any]) -> Iterator[APIRoute]:
        for route in routes:
            if isinstance(route, APIRoute):
                yield route
            included = getattr(route, "original_router", None)  # FastAPI >= 0.160: lazy
            if included is not None:
                yield from api_routes(included.routes)

    return [
        f"{sorted(route.methods or ())} {route.path}"
        for route in api_routes(app.routes)
        if route.path.startswith("/v1") and not authenticates(route.dependant)
    ]
