"""The baseline: a bare FastAPI endpoint that parses a JSON body and answers JSON."""

from typing import Any

from fastapi import FastAPI

app = FastAPI()


@app.post("/bare")
def bare(body: dict[str, Any]) -> dict[str, Any]:
    return {"ok": True, "n": len(body)}


@app.post("/bare-async")
async def bare_async(body: dict[str, Any]) -> dict[str, Any]:
    """The same on the event loop (no threadpool hop): the framework's own ceiling."""
    return {"ok": True, "n": len(body)}
