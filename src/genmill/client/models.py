"""Typed views of PiAPI's answers: `Task`, `TaskStatus`, `TaskError`, `Account`.

Each keeps the answer it was read from in `raw`, so a field this client does not model (or a newer server adds)
is still at hand. Parsing is lenient where PiAPI and genmill differ harmlessly (status case, missing keys).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from genmill.client.errors import ProtocolError


class TaskStatus(StrEnum):
    PENDING = "pending"
    STAGED = "staged"
    PROCESSING = "processing"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @classmethod
    def parse(cls, value: Any) -> TaskStatus:
        """PiAPI has written statuses capitalised (`Completed`) and cancelled as `canceled`; both are accepted."""
        text = str(value).strip().lower()
        if text == "canceled":
            text = "cancelled"
        try:
            return cls(text)
        except ValueError:
            raise ProtocolError(f"unknown task status {value!r}") from None

    @property
    def is_terminal(self) -> bool:
        return self in (TaskStatus.COMPLETED, TaskStatus.FAILED, TaskStatus.CANCELLED)


@dataclass(frozen=True)
class TaskError:
    """The task's `error`: code 0 and empty messages while it has not failed."""

    code: int = 0
    message: str = ""
    raw_message: str = ""
    detail: Any = None


def _dict(value: Any) -> dict[str, Any]:
    return dict(value) if isinstance(value, dict) else {}


@dataclass(frozen=True)
class Task:
    """A task as `GET /api/v1/task/{id}` answers it. `files` holds what `run()` downloaded (else empty)."""

    task_id: str
    model: str
    task_type: str
    status: TaskStatus
    input: dict[str, Any]
    output: Any
    config: dict[str, Any]
    meta: dict[str, Any]
    detail: Any
    logs: tuple[str, ...]
    error: TaskError
    raw: dict[str, Any] = field(repr=False)
    files: tuple[Path, ...] = ()

    @classmethod
    def from_wire(cls, data: Any) -> Task:
        if not isinstance(data, dict) or not isinstance(data.get("task_id"), str):
            raise ProtocolError(f"expected a task, got {str(data)[:200]!r}")
        error = _dict(data.get("error"))
        code = error.get("code")
        return cls(
            task_id=data["task_id"],
            model=str(data.get("model", "")),
            task_type=str(data.get("task_type", "")),
            status=TaskStatus.parse(data.get("status", "")),
            input=_dict(data.get("input")),
            output=data.get("output"),
            config=_dict(data.get("config")),
            meta=_dict(data.get("meta")),
            detail=data.get("detail"),
            logs=tuple(str(line) for line in data.get("logs") or ()),
            error=TaskError(
                code=code if isinstance(code, int) else 0,
                message=str(error.get("message") or ""),
                raw_message=str(error.get("raw_message") or ""),
                detail=error.get("detail"),
            ),
            raw=data,
        )

    @property
    def is_terminal(self) -> bool:
        return self.status.is_terminal

    @property
    def progress(self) -> float | None:
        """`detail.progress` (0 to 100) when the backend reports it, else None."""
        if isinstance(self.detail, dict):
            value = self.detail.get("progress")
            if isinstance(value, int | float) and not isinstance(value, bool):
                return float(value)
        return None

    @property
    def output_urls(self) -> list[str]:
        """Every http(s) URL in `output`, in order, each once (PiAPI's outputs name files under varying keys:
        `image_url`, `image_urls`, `video_url`, `songs[].song_path`...)."""
        found: list[str] = []

        def walk(value: Any) -> None:
            if isinstance(value, str):
                if value.startswith(("http://", "https://")) and value not in found:
                    found.append(value)
            elif isinstance(value, dict):
                for item in value.values():
                    walk(item)
            elif isinstance(value, list):
                for item in value:
                    walk(item)

        walk(self.output)
        return found


@dataclass(frozen=True)
class Account:
    """`GET /account/info`: who the key belongs to and its credits (1 USD = 10,000,000 credits on genmill)."""

    account_id: str
    name: str
    available_credits: int
    frozen_credits: int
    used_credits: int
    total_credits: int
    equivalent_in_usd: float
    raw: dict[str, Any] = field(repr=False)

    @classmethod
    def from_wire(cls, data: Any) -> Account:
        if not isinstance(data, dict):
            raise ProtocolError(f"expected account info, got {str(data)[:200]!r}")
        credits = _dict(data.get("credit_pack_info"))

        def number(value: Any) -> int:
            return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0

        usd = data.get("equivalent_in_usd")
        return cls(
            account_id=str(data.get("account_id") or data.get("id") or ""),
            name=str(data.get("account_name") or data.get("name") or ""),
            available_credits=number(credits.get("available_credits")),
            frozen_credits=number(credits.get("frozen_credits")),
            used_credits=number(credits.get("used_credits")),
            total_credits=number(credits.get("total_credits")),
            equivalent_in_usd=float(usd) if isinstance(usd, int | float) else 0.0,
            raw=data,
        )


@dataclass(frozen=True)
class WebhookEvent:
    """A verified webhook delivery: the task as it was at the event, its attempt time and delivery id."""

    task: Task
    timestamp: int | None
    webhook_id: str | None
