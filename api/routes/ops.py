import os

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text

from api.deps import StateDep

router = APIRouter(tags=["operations"])


# HEAD too: load balancers and uptime checks often probe with it
@router.api_route("/healthz", methods=["GET", "HEAD"])
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.api_route("/readyz", methods=["GET", "HEAD"])
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
def prometheus_metrics(state: StateDep) -> Response:
    return Response(generate_latest(state.instruments.registry), media_type=CONTENT_TYPE_LATEST)
