"""Service errors; only the app turns them (and learner errors) into HTTP answers."""

from __future__ import annotations

import math
from typing import Any


class ServiceError(Exception):
    status_code = 400

    def __init__(self, detail: object, headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.headers = headers


class NotFound(ServiceError):
    status_code = 404


class Conflict(ServiceError):
    status_code = 409


class Forbidden(ServiceError):
    status_code = 403


class InvalidInput(ServiceError):
    """422 naming the field: ``loc`` is the path to it, as in FastAPI's own errors."""

    status_code = 422

    def __init__(self, loc: list[str | int], msg: str) -> None:
        super().__init__([{"loc": ["body", *loc], "msg": msg, "type": "value_error"}])


class Unavailable(ServiceError):
    status_code = 503

    def __init__(self, detail: object, retry_after: int = 1) -> None:
        super().__init__(detail, headers={"Retry-After": str(retry_after)})


_ERROR_BODY = {
    "application/json": {
        "schema": {
            "type": "object",
            "properties": {"detail": {"description": "a message, or a list of field errors"}},
            "required": ["detail"],
        }
    }
}
ERROR_RESPONSES: dict[int | str, dict] = {
    status: {"description": description, "content": _ERROR_BODY}
    for status, description in [
        (401, "no API key, or an unknown, revoked or expired one"),
        (403, "the key's role or task scope does not allow this"),
        (404, "unknown task, case, key or version"),
        (408, "the request body did not arrive in time"),
        (409, "conflict (exists already, lease not held, not the model leader)"),
        (413, "request body too large"),
        (422, "invalid input: the detail names the field and why"),
        (429, "rate limited: see Retry-After"),
        (503, "temporarily unavailable: see Retry-After"),
    ]
}
"""The error answers every route may give, for the OpenAPI schema (``{"detail": ...}``)."""


def json_safe(value: Any) -> Any:
    """``value`` with the numbers JSON cannot carry (``NaN``, ``Infinity``: Python's parser
    accepts them in a request body) as their JSON-ish text, so an error can echo them.

    >>> json_safe({"input": float("nan"), "loc": ["body", -float("inf"), 1.5]})
    {'input': 'NaN', 'loc': ['body', '-Infinity', 1.5]}
    """
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, dict):
        return {key: json_safe(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(item) for item in value]
    return value
