"""What `/openapi.json` says each route answers: the error envelope, the status codes, and how to authenticate.

FastAPI documents a 422 with its own `{"detail": [...]}` body on every route with parameters, but genmill never
answers 422 (a validation error is a 400 in the PiAPI envelope, `genmill.api.errors`), and it documented none of
the 400/401/402/404/409/413/429 it does answer. Each router and route now lists its error codes with `errors()`,
whose body is the one envelope (`ErrorEnvelope`); `install_openapi` drops the 422s from the generated document.
The security schemes come from the authentication dependencies themselves (`X-API-Key` in
`genmill.api.deps`, the worker token's bearer in `genmill.api.workers`), so the interactive docs' Authorize
button sends what the server checks.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel, Field

ERROR_DESCRIPTIONS: dict[int, str] = {
    400: "Invalid request: a parameter, header or body field breaks a rule (the message names it); nothing was done",
    401: "Missing or invalid credentials: the X-API-Key header, or a worker's bearer token on worker routes",
    402: "Not enough available credits for the task's price; nothing was created",
    403: "The account is disabled",
    404: "Not found: no such task (another account's task is not found either), delivery, file or worker",
    409: "Conflict: an Idempotency-Key reused with another body, or a worker's lease that is no longer current",
    410: "The file expired and was deleted",
    413: "The request body is larger than the server accepts",
    503: "The database is unavailable (down, restarting, unreachable); nothing was written. Retry-After says when",
    429: (
        "Too many: the key's rate limit, or the account's staged tasks, free tasks or open streams are at their"
        " limit; Retry-After says when to try again"
    ),
}
"""One description per status, shared by every route that answers it."""

AUTHENTICATED = (400, 401)
"""What every route behind a key or a worker token can answer, whatever it does."""
KEYED = (*AUTHENTICATED, 429)
"""What every route behind an API key can answer: each key has a rate limit (docs/api.md, "Rate limits")."""


class ErrorEnvelope(BaseModel):
    """Every error genmill answers: the PiAPI envelope with `data` null (never FastAPI's `{"detail": ...}`)."""

    code: int = Field(..., description="The HTTP status, repeated.", examples=[400])
    data: None = Field(None, description="Always null on errors.")
    message: str = Field(..., description="What went wrong, naming the field or rule.", examples=["input.scale: …"])
    detail: Any = Field(None, description="Some errors add an object (what a pool serves, a task's status, …).")


def errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    """The `responses=` of a router or route that answers `codes`, each with the error envelope as its body."""
    return {code: {"model": ErrorEnvelope, "description": ERROR_DESCRIPTIONS[code]} for code in codes}


def without_validation_errors(schema: dict[str, Any]) -> dict[str, Any]:
    """The document without the 422 responses FastAPI adds (genmill answers 400 instead) and their schemas, and
    with the 503 every route answers while the database is unavailable (each one reads or writes it)."""
    unavailable = {
        "description": ERROR_DESCRIPTIONS[503],
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorEnvelope"}}},
    }
    for operations in schema.get("paths", {}).values():
        for operation in operations.values():
            if isinstance(operation, dict):
                operation.get("responses", {}).pop("422", None)
                operation.setdefault("responses", {}).setdefault("503", unavailable)  # unless the route says
    schemas = schema.get("components", {}).get("schemas", {})
    for name in ("HTTPValidationError", "ValidationError"):
        schemas.pop(name, None)
    return schema


def install_openapi(app: FastAPI) -> None:
    """Serve `/openapi.json` as genmill answers: generated once, without FastAPI's 422s."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = without_validation_errors(
                get_openapi(
                    title=app.title,
                    version=app.version,
                    description=app.description,
                    routes=app.routes,
                    tags=app.openapi_tags,
                    servers=app.servers,
                )
            )
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
