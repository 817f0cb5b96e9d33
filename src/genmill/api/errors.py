"""Map every error to the JSON envelope: genmill errors, the framework's 404/405/422, and crashes.

No HTML page and no FastAPI `{"detail": ...}` body ever reaches a client.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from genmill.api.envelope import error_response
from genmill.domain.validation import describe_validation_error
from genmill.errors import DatabaseUnavailable, GenmillError, InvalidRequest

log = logging.getLogger("genmill.api")

_HTTP_MESSAGES = {
    404: "not found",
    405: "method not allowed",
}


def validation_message(exc: RequestValidationError) -> str:
    errors = exc.errors()
    if any(e.get("type") == "json_invalid" for e in errors):
        return "Invalid request parameters: the body is not valid JSON"
    parts = []
    for err in errors:
        loc = [str(p) for p in err.get("loc", ())]
        if loc and loc[0] in ("body", "query", "path", "header"):
            loc = loc[1:]
        parts.append(f"{'.'.join(loc) or 'body'}: {err.get('msg', 'invalid')}")
    return "Invalid request parameters: " + "; ".join(parts)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(GenmillError)
    async def _genmill(_: Request, exc: GenmillError) -> JSONResponse:
        headers = None if exc.retry_after is None else {"Retry-After": str(exc.retry_after)}
        return error_response(exc.status_code, exc.message, detail=exc.detail, headers=headers)

    @app.exception_handler(DatabaseUnavailable)
    async def _database_unavailable(request: Request, exc: DatabaseUnavailable) -> JSONResponse:
        # One line, no traceback: an outage is an operational state, and a restart would otherwise flood the log.
        log.warning("%s %s: 503, database unavailable: %s", request.method, request.url.path, exc.reason)
        return error_response(503, exc.message, headers={"Retry-After": str(exc.retry_after_seconds)})

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        return error_response(400, validation_message(exc))

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        message = (
            exc.detail if isinstance(exc.detail, str) and exc.detail else _HTTP_MESSAGES.get(exc.status_code, "error")
        )
        if exc.status_code == 404 and message == "Not Found":
            message = "not found"
        return error_response(exc.status_code, message, headers=getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def _crash(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error")
        return error_response(500, "internal server error")


__all__ = ["InvalidRequest", "describe_validation_error", "install_error_handlers"]
