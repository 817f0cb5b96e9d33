"""Why a task failed: the one code table and the one type every task failure is built from.

A failed task's `error` (API.md) is `{"code", "message", "raw_message", "detail"}`. It used to be spelled out as a
dict wherever a task could fail (the worker's error mapping, the lease sweep) and its codes were defined twice;
now each failure is a `TaskFailure` and `to_error()` is the only place the dict is written.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import Any


class FailureCode(IntEnum):
    """The task error codes genmill itself sets (an upstream provider's own code is passed through as it is)."""

    BACKEND_FAILED = 10000
    """A genuine failure of the backend (a crash, a tool that failed on an input it could read)."""
    INPUT_REJECTED = 10001
    """An input the backend cannot use (undecodable, too large, nothing to work on): the client's to fix."""
    WORKER_LOST = 10002
    """The worker stopped heartbeating on every attempt the task had."""
    OUT_OF_GPU_MEMORY = 10003
    """The run did not fit the device's memory, even after the worker unloaded its other models and retried."""
    NO_WORKER = 10004
    """The task waited past its entry's limit (GENMILL_MAX_PENDING_SECONDS) and no worker was there to run it."""


@dataclass(frozen=True)
class TaskFailure:
    """One task failure. `message` is for people; `raw_message` keeps the failing party's own words."""

    code: int
    message: str
    raw_message: str = ""
    """Empty means the same as `message`."""
    detail: Any = None

    def to_error(self) -> dict[str, Any]:
        """The task's stored and wire `error`; the code is a plain int, whatever kind of int it was given as."""
        return {
            "code": int(self.code),
            "message": self.message,
            "raw_message": self.raw_message or self.message,
            "detail": self.detail,
        }
