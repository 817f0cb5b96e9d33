"""One exception hierarchy for everything the client raises, so a caller can catch `GenmillClientError` alone.

An answer the server refused becomes an `APIError` carrying the HTTP status, the envelope's `code` (PiAPI's code;
genmill repeats the HTTP status there) and its `message`, plus genmill's optional `detail` (`{"field", "rule"}` on
a 400). Each common status has its own subclass so callers can catch, say, `InsufficientCredits` by name.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from genmill.client.models import Task


class GenmillClientError(Exception):
    """Base of every error the client raises."""


class APIError(GenmillClientError):
    """The server answered with an error envelope (or an HTTP error status)."""

    def __init__(
        self, status: int, code: int, message: str, *, detail: Any = None, headers: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(f"HTTP {status}: {message}" if message else f"HTTP {status}")
        self.status = status
        self.code = code
        self.message = message
        self.detail = detail
        self.headers = dict(headers or {})

    @property
    def field(self) -> str | None:
        """The input field a 400 names (`input.scale`), when the server said which."""
        if isinstance(self.detail, dict) and isinstance(self.detail.get("field"), str):
            return str(self.detail["field"])
        return None


class BadRequest(APIError):
    """400: the request or its input broke a rule; `message` (and `field`) say which."""


class AuthenticationError(APIError):
    """401: no API key, or one the server does not know."""


class InsufficientCredits(APIError):
    """402: the account has not enough credits for the task."""


class PermissionDenied(APIError):
    """403: the account is disabled or may not do this."""


class NotFound(APIError):
    """404: no such task (or it belongs to another account), or no such file."""


class Conflict(APIError):
    """409: an `Idempotency-Key` was reused with another body."""


class Gone(APIError):
    """410: the file has expired."""


class PayloadTooLarge(APIError):
    """413: the body or the task's input is larger than the server accepts."""


class RateLimited(APIError):
    """429: a rate limit, the staged-task limit or the open-streams limit; `retry_after` in seconds if given."""

    @property
    def retry_after(self) -> float | None:
        value = self.headers.get("retry-after")
        try:
            return float(value) if value is not None else None
        except ValueError:
            return None


class ServerError(APIError):
    """5xx: the server failed (503: its database is unavailable; retry)."""


class ConnectionFailed(GenmillClientError):
    """The server could not be reached, or the connection broke, on every attempt."""


class ProtocolError(GenmillClientError):
    """The server answered something that is not the PiAPI wire (not JSON, no envelope, no task)."""


class TaskFailed(GenmillClientError):
    """`run()` saw the task end `failed` or `cancelled`; the task, with its `error`, is attached."""

    def __init__(self, task: Task) -> None:
        error = task.error.message or task.error.raw_message or "no message"
        super().__init__(f"task {task.task_id} {task.status.value}: {error} (code {task.error.code})")
        self.task = task


class WaitTimeout(GenmillClientError):
    """`wait()` or `run()` reached its timeout before the task ended; the last task seen is attached."""

    def __init__(self, task: Task, timeout: float) -> None:
        super().__init__(f"task {task.task_id} still {task.status.value} after {timeout:g} s")
        self.task = task
        self.timeout = timeout


class WebhookVerificationError(GenmillClientError):
    """A webhook delivery's secret or signature did not verify, or its timestamp is too old."""


STATUS_ERRORS: dict[int, type[APIError]] = {
    400: BadRequest,
    401: AuthenticationError,
    402: InsufficientCredits,
    403: PermissionDenied,
    404: NotFound,
    409: Conflict,
    410: Gone,
    413: PayloadTooLarge,
    429: RateLimited,
}


def error_for(
    status: int, code: int, message: str, detail: Any = None, headers: Mapping[str, str] | None = None
) -> APIError:
    """The exception class for an HTTP status (5xx: `ServerError`; others: `APIError`)."""
    cls = STATUS_ERRORS.get(status) or (ServerError if status >= 500 else APIError)
    return cls(status, code, message, detail=detail, headers=headers)
