"""FastAPI dependencies: the app's state, and who is calling with which rights."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, HTTPException, Request

from api.cache import TTLCache
from api.db import Database
from api.live import ModelStore
from api.observability import Instruments
from api.outbox import WebhookDispatcher
from api.security import Principal, hash_key, same_secret
from api.services.keys import BOOTSTRAP_ADMIN
from api.settings import Settings


@dataclass
class AppState:
    """Everything the routes need, built once in the lifespan."""

    settings: Settings
    db: Database
    store: ModelStore
    instruments: Instruments
    keys: TTLCache[str, Principal | None]  # key hash -> principal
    webhooks: WebhookDispatcher | None = None  # None: this process does not deliver

    def wake_webhooks(self) -> None:
        """Have the dispatcher look for due events now (else within its poll interval)."""
        if self.webhooks is not None:
            self.webhooks.wake()


def get_state(request: Request) -> AppState:
    return request.app.state.tierline  # type: ignore[no-any-return]


StateDep = Annotated[AppState, Depends(get_state)]


def current_principal(request: Request, state: StateDep) -> Principal:
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
    who = (
        BOOTSTRAP_ADMIN
        if admin_key and same_secret(presented, admin_key)
        else state.keys.get(hash_key(presented))
    )
    if who is None:
        raise HTTPException(
            401, "unknown or revoked API key", headers={"WWW-Authenticate": "Bearer"}
        )
    return who


CurrentKey = Annotated[Principal, Depends(current_principal)]


def require(permission: str):  # type: ignore[no-untyped-def]
    """A dependency that lets through only keys whose role grants ``permission``."""

    def check(who: CurrentKey) -> Principal:
        if not who.can(permission):
            raise HTTPException(403, f"role {who.role!r} may not do this ({permission})")
        return who

    return Depends(check)


Reviewer = Annotated[Principal, require("review")]
