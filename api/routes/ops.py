import os
from typing import Annotated

from fastapi import APIRouter, HTTPException, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text

from api.deps import StateDep, require
from api.security import Principal

router = APIRouter(tags=["operations"])


# HEAD too: load balancers and uptime checks often probe with it (left out of the schema,
# where it would repeat the GET's operation id)
@router.get("/healthz")
@router.head("/healthz", include_in_schema=False)
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz")
@router.head("/readyz", include_in_schema=False)
def readyz(request: Request) -> Response:
    state = getattr(request.app.state, "tierline", None)
    if state is None or not getattr(request.app.state, "ready", False):
        return JSONResponse({"status": "starting"}, 503, headers={"Retry-After": "1"})
    try:
        with state.db.read() as session:
            session.exec(text("SELECT 1"))  # type: ignore[call-overload]
    except Exception:
        return JSONResponse({"status": "database unavailable"}, 503, headers={"Retry-After": "1"})
    return JSONResponse({"status": "ready", "leader": state.store.leader, "pid": os.getpid()})


@router.get("/metrics", include_in_schema=False)
def prometheus_metrics(
    state: StateDep, who: Annotated[Principal, require("metrics:read")]
) -> Response:
    """Prometheus text, for a key that may read every task's metrics (the series name the
    tasks, their automation and their bounds: not for anyone on the network)."""
    if who.tasks is not None:
        raise HTTPException(
            403,
            "the Prometheus metrics cover every task: a key scoped to tasks reads "
            "GET /v1/tasks/{task}/metrics",
        )
    return Response(generate_latest(state.instruments.registry), media_type=CONTENT_TYPE_LATEST)
