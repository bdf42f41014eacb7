from typing import Literal

from fastapi import APIRouter
from fastapi.responses import StreamingResponse

from api.deps import StateDep, require
from api.fileformats import MEDIA_TYPES, encode
from api.services import exports as service

router = APIRouter(prefix="/v1/tasks", tags=["export"])


@router.get(
    "/{task}/export",
    dependencies=[require("data:export")],
    response_class=StreamingResponse,
    responses={
        200: {
            "description": "the file, streamed",
            "content": dict.fromkeys(MEDIA_TYPES.values(), {}),
        }
    },
)
def export(
    task: str,
    state: StateDep,
    what: Literal["labels", "cases"] = "labels",
    format: Literal["csv", "jsonl", "parquet"] = "jsonl",
) -> StreamingResponse:
    """The task's labels or cases as CSV, JSON Lines or Parquet, streamed in chunks."""
    started = service.start_export(state.db, task, what)
    filename = f"{started.task}-{what}.{format}"
    return StreamingResponse(
        encode(format, started.columns, started.chunks),
        media_type=MEDIA_TYPES[format],
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )
