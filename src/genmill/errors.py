"""One exception root for genmill; every error carries the HTTP status and envelope code it maps to.

Library errors (SQLAlchemy, httpx, pydantic) are translated into these at the edge so that handlers and the
worker only ever see genmill errors, and the API layer maps each to the PiAPI JSON envelope in one place.
"""

from __future__ import annotations

from typing import Any

from genmill.domain.failures import FailureCode, TaskFailure


class GenmillError(Exception):
    """Base of every error genmill raises on purpose."""

    status_code: int = 500
    retry_after: int | None = None
    """Seconds after which trying again can succeed; the API sends it as `Retry-After`."""

    def __init__(self, message: str, *, detail: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.detail = detail


class InvalidRequest(GenmillError):
    """The client sent something that breaks a documented rule (400)."""

    status_code = 400


class Unauthorized(GenmillError):
    status_code = 401


class InsufficientCredits(GenmillError):
    """The account cannot pay the task's price; nothing was written."""

    status_code = 402


class Forbidden(GenmillError):
    status_code = 403


class NotFound(GenmillError):
    status_code = 404


class Conflict(GenmillError):
    """A state change lost a race (stale lease, already terminal)."""

    status_code = 409


class Gone(GenmillError):
    """A stored object existed but has expired and was deleted."""

    status_code = 410


class PayloadTooLarge(GenmillError):
    status_code = 413


class TooManyTasks(GenmillError):
    """The account already has the maximum number of staged tasks."""

    status_code = 429


class RateLimited(GenmillError):
    """A per-key rate, an account's free-task rate or its open streams are used up; retry after `retry_after`."""

    status_code = 429
    retry_after: int

    def __init__(self, message: str, *, retry_after: int, detail: Any = None) -> None:
        super().__init__(message, detail=detail)
        self.retry_after = retry_after


class DatabaseUnavailable(GenmillError):
    """The database cannot answer now (down, restarting, unreachable, locked): a 503 with Retry-After. The
    transaction rolled back, so nothing was written; `reason` is the driver's words, for the log only."""

    status_code = 503
    retry_after_seconds = 5

    def __init__(self, reason: str) -> None:
        super().__init__("the database is unavailable; try again in a few seconds")
        self.reason = reason


class ModelNotServed(InvalidRequest):
    """The model is in the catalog but no worker of this deployment can run it (400: retrying won't help)."""


class IllegalTransition(GenmillError):
    """A task status change that the state machine does not allow."""

    status_code = 409


class FetchError(InvalidRequest):
    """An input URL or base64 payload could not be fetched or decoded safely."""


class FetchRefused(FetchError):
    """The URL is against policy (scheme, private address): trying again cannot help."""


class BackendError(GenmillError):
    """A backend could not do what the task asked; the task fails and its credits are released.

    `message` is for people; `raw_message` keeps the backend's own words; `code` is from the one table,
    `genmill.domain.failures.FailureCode` (or an upstream provider's own code, passed through).
    """

    def __init__(
        self, message: str, *, raw_message: str = "", code: int = FailureCode.BACKEND_FAILED, detail: Any = None
    ) -> None:
        super().__init__(message, detail=detail)
        self.raw_message = raw_message or message
        self.code = int(code)

    @property
    def failure(self) -> TaskFailure:
        """The task failure this error fails its task with."""
        return TaskFailure(self.code, self.message, self.raw_message, self.detail)


INPUT_ERROR_CODE = FailureCode.INPUT_REJECTED
"""The task error code of an input the backend cannot use (undecodable, too large, nothing to work on)."""


class InputRejected(BackendError):
    """The backend cannot use an input (an undecodable image, one over the size limit, a word it cannot segment,
    an image with nothing to cut out). Its message names the field and the rule; code 10001, credits released.

    Distinct from plain `BackendError` (10000), which is a genuine failure of the backend."""

    def __init__(self, message: str, *, raw_message: str = "", detail: Any = None) -> None:
        super().__init__(message, raw_message=raw_message, code=FailureCode.INPUT_REJECTED, detail=detail)


GPU_MEMORY_ERROR_CODE = FailureCode.OUT_OF_GPU_MEMORY
"""The task error code of a run that did not fit the device's memory, even after unloading the other models."""


class OutOfDeviceMemory(BackendError):
    """A model did not fit its device's memory even after the worker freed what it could and retried once.

    It has its own code so that clients (and operators reading task errors) can tell "the GPU is too small for
    this" from "these inputs are wrong"; the task's credits are released like for any backend failure.
    """

    def __init__(self, message: str, *, raw_message: str = "", detail: Any = None) -> None:
        super().__init__(message, raw_message=raw_message, code=FailureCode.OUT_OF_GPU_MEMORY, detail=detail)
