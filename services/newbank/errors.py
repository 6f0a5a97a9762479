"""RFC 9457 problem+json errors: a stable ``type`` slug, ``title``, ``status`` and ``detail``.

A request that is wrong gets a 4xx and changes nothing; a 5xx means the platform is at fault. A
database or broker that is failing over gives 503 with ``Retry-After`` so clients retry with their key.
"""

from __future__ import annotations

import logging
from typing import Any

import asyncpg
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

log = logging.getLogger("newbank.errors")

PROBLEM_JSON = "application/problem+json"

_TITLES = {
    400: "Bad request",
    401: "Unauthorized",
    402: "Payment required",
    403: "Forbidden",
    404: "Not found",
    405: "Method not allowed",
    409: "Conflict",
    413: "Payload too large",
    415: "Unsupported media type",
    422: "Unprocessable content",
    429: "Too many requests",
    500: "Internal server error",
    503: "Service unavailable",
}
_DEFAULT_TYPES = {
    400: "bad-request",
    401: "unauthorized",
    403: "forbidden",
    404: "not-found",
    405: "method-not-allowed",
    409: "conflict",
    413: "payload-too-large",
    415: "unsupported-media-type",
    422: "validation-error",
    429: "rate-limited",
    500: "internal-error",
    503: "service-unavailable",
}


class ProblemError(Exception):
    """Raise anywhere below a router to answer with a problem+json body."""

    def __init__(
        self,
        status: int,
        type_: str,
        detail: str,
        *,
        title: str | None = None,
        errors: list[dict[str, Any]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.type = type_
        self.title = title or _TITLES.get(status, "Error")
        self.detail = detail
        self.errors = errors
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "type": self.type,
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
        }
        if self.errors is not None:
            body["errors"] = self.errors
        return body


def problem_response(problem: ProblemError) -> JSONResponse:
    return JSONResponse(problem.body(), status_code=problem.status, media_type=PROBLEM_JSON, headers=problem.headers)


def not_found(what: str) -> ProblemError:
    return ProblemError(404, "not-found", f"{what} not found")


def forbidden(detail: str = "this key may not act on this resource") -> ProblemError:
    return ProblemError(403, "forbidden", detail)


# asyncpg errors that mean "the database is not reachable right now" (failover, restart), not a bug.
TRANSIENT_DB_ERRORS: tuple[type[BaseException], ...] = (
    asyncpg.PostgresConnectionError,
    asyncpg.CannotConnectNowError,
    asyncpg.ReadOnlySQLTransactionError,
    asyncpg.AdminShutdownError,
    asyncpg.InterfaceError,
    asyncpg.exceptions.ConnectionDoesNotExistError,
    asyncpg.exceptions.TooManyConnectionsError,
    asyncpg.exceptions.QueryCanceledError,
    ConnectionError,
    OSError,
    TimeoutError,
)


def _validation_errors(exc: RequestValidationError) -> list[dict[str, Any]]:
    return [{"loc": [str(part) for part in err.get("loc", ())], "msg": str(err.get("msg", ""))} for err in exc.errors()]


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ProblemError)
    async def _problem(_: Request, exc: ProblemError) -> JSONResponse:
        return problem_response(exc)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = _validation_errors(exc)
        if any(e.get("type") == "json_invalid" for e in exc.errors()):
            return problem_response(ProblemError(400, "invalid-json", "the body is not valid JSON", errors=errors))
        return problem_response(ProblemError(422, "validation-error", "the request has invalid fields", errors=errors))

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        status = exc.status_code
        detail = exc.detail if isinstance(exc.detail, str) else _TITLES.get(status, "Error")
        return problem_response(
            ProblemError(status, _DEFAULT_TYPES.get(status, "error"), detail, headers=dict(exc.headers or {}))
        )

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        if isinstance(exc, TRANSIENT_DB_ERRORS):
            log.warning("database unavailable: %s", exc.__class__.__name__, extra={"path": request.url.path})
            return problem_response(
                ProblemError(
                    503,
                    "service-unavailable",
                    "the database is failing over; retry with the same Idempotency-Key",
                    headers={"Retry-After": "1"},
                )
            )
        log.exception("unhandled error", extra={"path": request.url.path})
        return problem_response(ProblemError(500, "internal-error", "the platform failed; it has been logged"))


class Problem(BaseModel):
    """RFC 9457 problem details, as every 4xx of the API answers (for the OpenAPI documents)."""

    type: str
    title: str
    status: int
    detail: str
    errors: list[dict[str, Any]] | None = None


_PROBLEM_SCHEMA = Problem.model_json_schema()

# Any route may answer these: no or bad key, bad JSON, an invalid field, a body over 64 KiB.
COMMON_PROBLEMS = (400, 401, 413, 422)


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI entries for the problem+json answers of a route, so clients and schema checks know them."""
    return {
        status: {"description": "problem details", "content": {PROBLEM_JSON: {"schema": _PROBLEM_SCHEMA}}}
        for status in statuses
    }
