"""Service errors; only the app turns them (and learner errors) into HTTP answers."""

from __future__ import annotations


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
