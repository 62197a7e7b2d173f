"""Every error the simulation server answers is ``{"error": {"code": str, "message": str}}``.

Bad input is always a 4xx: malformed JSON 400, missing/wrong token 401, unknown route, session or
scenario (and a session id that is not a UUID) 404, invalid fields 422. Maintenance and an
unreachable database are 503 with ``Retry-After``. A 500 means a bug.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from emrops import secrets
from emrops.db.queries import MaintenanceOn, NotFound
from emrops.errors import DatabaseError
from emrops.logs import get_logger
from emrops.sim import storage
from emrops.sim.models import ErrorBody

log = get_logger(__name__)

DEFAULT_RETRY_AFTER = 5

_STATUS_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "validation_error",
    429: "too_many_requests",
    503: "unavailable",
}

# OpenAPI: the error responses an API route may give (used by every router).
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorBody, "description": "Malformed JSON"},
    401: {"model": ErrorBody, "description": "Missing or wrong bearer token"},
    404: {"model": ErrorBody, "description": "Unknown session or scenario"},
    413: {"model": ErrorBody, "description": "Request body over the size limit (64 KiB default)"},
    422: {"model": ErrorBody, "description": "Invalid input"},
    503: {"model": ErrorBody, "description": "Maintenance mode, or the database is unavailable"},
}


class ApiError(Exception):
    """An error answered as JSON with a status, a code and optional headers."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}


def error_body(code: str, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": secrets.mask(message)}}


def error_response(
    status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse(error_body(code, message), status_code=status, headers=headers)


def unauthorized(message: str) -> ApiError:
    return ApiError(401, "unauthorized", message, {"WWW-Authenticate": "Bearer"})


def maintenance_error(message: str, retry_after: int = DEFAULT_RETRY_AFTER) -> ApiError:
    return ApiError(
        503, "maintenance", message or "down for maintenance", {"Retry-After": str(retry_after)}
    )


def _where(loc: Any) -> str:
    parts = [str(part) for part in loc if part != "body"] if loc else []
    return ".".join(parts) or "body"


def validation_response(exc: RequestValidationError) -> JSONResponse:
    errors = exc.errors()
    for err in errors:
        # json_invalid: a JSON body that does not parse; raw bytes/str at "body": a body sent
        # without a JSON content type, which FastAPI does not parse at all.
        raw_body = tuple(err.get("loc") or ()) == ("body",) and isinstance(
            err.get("input"), bytes | str
        )
        if err.get("type") == "json_invalid" or raw_body:
            return error_response(400, "malformed_json", "the request body is not valid JSON")
    for err in errors:
        loc = tuple(err.get("loc") or ())
        if loc[:1] == ("path",) and "session_id" in loc:
            # A session id that is not a UUID names no session.
            return error_response(404, "not_found", "session not found")
    first = errors[0] if errors else {}
    message = f"{_where(first.get('loc'))}: {first.get('msg', 'invalid value')}"
    if len(errors) > 1:
        message += f" (and {len(errors) - 1} more)"
    return error_response(422, "validation_error", message)


UNPARSABLE_BODY = "There was an error parsing the body"
UNPARSABLE_MESSAGE = (
    "the request body could not be parsed as JSON (nested too deeply, or a number too long)"
)


def install(app: FastAPI, retry_after: int = DEFAULT_RETRY_AFTER) -> None:
    """Register the handlers that give every error the same JSON shape."""

    async def on_api_error(_request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, ApiError)
        return error_response(exc.status, exc.code, exc.message, exc.headers)

    async def on_validation(_request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        return validation_response(exc)

    async def on_http(_request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        if exc.status_code == 400 and exc.detail == UNPARSABLE_BODY:
            # FastAPI's answer when the JSON parser raised something other than a decode error:
            # nesting beyond the recursion limit, an integer over 4300 digits
            return error_response(400, "malformed_json", UNPARSABLE_MESSAGE)
        code = _STATUS_CODES.get(exc.status_code, "http_error")
        message = str(exc.detail) if exc.detail else code.replace("_", " ")
        return error_response(exc.status_code, code, message, dict(exc.headers or {}))

    async def on_not_found(_request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, NotFound)
        return error_response(404, "not_found", f"{exc.kind} not found")

    async def on_maintenance(_request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, MaintenanceOn)
        err = maintenance_error(exc.message, retry_after)
        return error_response(err.status, err.code, err.message, err.headers)

    async def on_database(request: Request, exc: Exception) -> JSONResponse:
        cause = exc.__cause__
        log.warning("database error: %s", exc)
        if storage.is_storage_full(exc):
            sim = getattr(request.app.state, "sim", None)
            if sim is not None:
                sim.runtime.storage.note_full()
            return error_response(
                503,
                "storage_full",
                storage.STORAGE_FULL_MESSAGE,
                {"Retry-After": str(storage.STORAGE_FULL_RETRY_AFTER)},
            )
        if isinstance(cause, sa.exc.OperationalError | sa.exc.InterfaceError) or cause is None:
            return error_response(
                503,
                "database_unavailable",
                "the database is unavailable; retry shortly",
                {"Retry-After": str(retry_after)},
            )
        log.error("database error answered with 500", exc_info=exc)
        return error_response(500, "database_error", "the database refused the operation")

    async def on_unexpected(_request: Request, exc: Exception) -> JSONResponse:
        log.error("unexpected error", exc_info=exc)
        return error_response(500, "internal_error", "internal server error")

    app.add_exception_handler(ApiError, on_api_error)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(StarletteHTTPException, on_http)
    app.add_exception_handler(NotFound, on_not_found)
    app.add_exception_handler(MaintenanceOn, on_maintenance)
    app.add_exception_handler(DatabaseError, on_database)
    app.add_exception_handler(Exception, on_unexpected)
