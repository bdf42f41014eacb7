"""The FastAPI application: wiring, lifespan and error handling.

Run with ``tierline serve`` (or ``uvicorn --factory api.main:create_app``).
"""

from __future__ import annotations

import gc
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException as StarletteHTTPException

from api import migrate
from api.cache import TTLCache
from api.db import Database, safe_url
from api.deps import AppState, unauthenticated_routes
from api.errors import ERROR_RESPONSES, ServiceError, json_safe
from api.lineage import ModelSync
from api.live import ModelStore
from api.observability import BodyLimitMiddleware, Instruments, MetricsMiddleware
from api.outbox import WebhookDispatcher
from api.routes import audit as audit_routes
from api.routes import (
    cases,
    export,
    feedback,
    keys,
    metrics,
    models,
    ops,
    quality,
    review,
    tasks,
    webhooks,
)
from api.security import Principal
from api.services.keys import note_use, principal_of
from api.services.metrics import record_progress
from api.settings import Settings, get_settings
from learner import LearnerError

log = logging.getLogger("tierline")
KEY_TTL_SECONDS = 2.0  # a key revoked by another process stops working within this


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the app; the database is migrated and the models loaded in the lifespan."""
    settings = settings or get_settings()
    instruments = Instruments()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        secret = settings.signing_secret  # refuses to start without a secret outside dev
        migrate.upgrade(settings.database_url)
        db = database(settings)
        store = ModelStore(db, secret, snapshot_every=settings.snapshot_every)
        sync = None
        sqlite_lock = None
        if db.shares_models:  # several processes may serve this database: one model lineage
            sync = ModelSync(db, store, record_progress, interval=settings.sync_seconds)
            sync.start()
        else:  # the one process on an SQLite file says so (`tierline model rollback` asks)
            sqlite_lock = db.leader_lock()
            if not sqlite_lock.try_acquire():
                log.warning("another process serves %s: run one", safe_url(settings.database_url))
        store.load_all()
        instruments.watch_tasks(db, store)
        keys = TTLCache(KEY_TTL_SECONDS, partial(_principal_of, db))
        dispatcher = _webhook_dispatcher(settings, db, settings.webhook_signing_secret)
        app.state.tierline = AppState(settings, db, store, instruments, keys, dispatcher)
        app.state.ready = True
        # what start-up built (modules, models) lives as long as the process: keep it out
        # of the collector's full passes, which otherwise stall every request for ~100 ms
        gc.collect()
        gc.freeze()
        log.info("tierline ready on %s", safe_url(settings.database_url))
        try:
            yield
        finally:
            app.state.ready = False
            if dispatcher is not None:
                dispatcher.stop()
            if sync is not None:
                sync.stop()
            try:
                store.snapshot_all()
            finally:
                if sync is not None:
                    sync.release()
                if sqlite_lock is not None:
                    sqlite_lock.dispose()
                db.dispose()

    app = FastAPI(
        title="tierline",
        version="1",
        summary="Human-in-the-loop decisions with certified automation",
        lifespan=lifespan,
    )
    for module in (keys, tasks, cases, review, metrics, ops, webhooks, feedback, export, quality):
        app.include_router(module.router, responses=ERROR_RESPONSES)
    for module in (audit_routes, models):  # security and governance
        app.include_router(module.router, responses=ERROR_RESPONSES)
    if missing := unauthenticated_routes(app):  # deny by default
        raise RuntimeError(f"routes without authentication: {missing}")

    @app.exception_handler(ServiceError)
    async def service_error(_: Request, exc: ServiceError) -> JSONResponse:
        return JSONResponse({"detail": exc.detail}, exc.status_code, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_: Request, exc: RequestValidationError) -> JSONResponse:
        # FastAPI's own answer, except that a NaN or Infinity the client sent (Python's
        # JSON parser reads them) is echoed as text: as a number it made the answer a 500
        # and the reason a validator gives reads as given, without pydantic's "Value error, "
        errors = [
            {**e, "msg": e["msg"].removeprefix("Value error, ")} if "msg" in e else e
            for e in exc.errors()
        ]
        return JSONResponse({"detail": json_safe(jsonable_encoder(errors))}, 422)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        if exc.status_code == 400:  # FastAPI could not parse the body
            msg = (
                "not valid UTF-8 JSON, nested too deeply, or holding an integer of over "
                "4,300 digits: cannot be read"
            )
            detail = [{"loc": ["body"], "msg": msg, "type": "json_invalid"}]
            return JSONResponse({"detail": detail}, 422)
        return await http_exception_handler(request, exc)

    @app.exception_handler(LearnerError)
    async def learner_error(_: Request, exc: LearnerError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, 422)

    @app.exception_handler(OperationalError)
    @app.exception_handler(InterfaceError)
    @app.exception_handler(PoolTimeout)
    async def database_unavailable(_: Request, exc: Exception) -> JSONResponse:
        log.warning("database unavailable: %s", str(exc).strip().splitlines()[0][:300])
        return JSONResponse(
            {"detail": "database temporarily unavailable"}, 503, headers={"Retry-After": "1"}
        )

    app.add_middleware(
        BodyLimitMiddleware,
        max_bytes=settings.max_body_bytes,
        timeout=settings.body_timeout_seconds,
    )
    app.add_middleware(MetricsMiddleware, instruments=instruments)
    return app


def _webhook_dispatcher(
    settings: Settings, db: Database, secret: bytes
) -> WebhookDispatcher | None:
    """The background thread that delivers webhook events from the outbox (started)."""
    if not settings.webhook_dispatch:
        return None
    dispatcher = WebhookDispatcher(
        db,
        secret,
        backoff_seconds=settings.webhook_backoff_seconds,
        max_backoff_seconds=settings.webhook_max_backoff_seconds,
        retry_seconds=settings.webhook_retry_seconds,
        timeout_seconds=settings.webhook_timeout_seconds,
        poll_seconds=settings.webhook_poll_seconds,
        workers=settings.webhook_workers,
    )
    dispatcher.start()
    return dispatcher


def database(settings: Settings) -> Database:
    """The database with the settings' timeouts and pool size."""
    return Database(
        settings.database_url,
        busy_timeout_ms=settings.busy_timeout_ms,
        connect_timeout_s=settings.db_connect_timeout_seconds,
        statement_timeout_ms=settings.db_statement_timeout_ms,
        lock_timeout_ms=settings.db_lock_timeout_ms,
        pool_size=settings.db_pool_size,
        pool_timeout_s=settings.db_pool_timeout_seconds,
    )


def _principal_of(db: Database, key_hash: str) -> Principal | None:
    with db.read() as session:
        who = principal_of(session, key_hash)
    if who is not None:
        note_use(db.write, who.id)  # in the background
    return who
