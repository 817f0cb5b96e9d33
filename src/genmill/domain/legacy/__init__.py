"""PiAPI's legacy (pre-Unified) endpoints as pure mappings onto the unified task.

PiAPI says its old schemas are "not deprecated" (the Unified API Schema page), so clients written against
`/mj/v2/imagine`, `/api/face_swap/v1/async`, `/api/luma/v1/video` and `/api/kling/v1/video` keep working. Each
legacy create becomes exactly the task the unified `POST /api/v1/task` would create (`LegacyCreate`: model,
task_type, input, config), metered and stored the same way and visible through `/api/v1/task/{id}`; each legacy
fetch is the unified task (its `task_public` wire shape) redrawn in the legacy shape. One module per legacy family
holds both directions; docs/api.md ("Legacy endpoints") lists every shape and every choice made where none was
documented. Pure: no I/O, so the mappings are unit-tested on plain dicts.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from genmill.domain.timefmt import ZERO_TIME


@dataclass(frozen=True)
class LegacyCreate:
    """The unified create a legacy request stands for: what `TaskEngine.create_task` receives."""

    model: str
    task_type: str
    input: dict[str, Any]
    config: dict[str, Any]


def webhook_config(endpoint: str | None, secret: str | None) -> dict[str, Any]:
    """The legacy `webhook_endpoint` and `webhook_secret` as the unified `config` (public pool, the default)."""
    return {"service_mode": "", "webhook_config": {"endpoint": endpoint or "", "secret": secret or ""}}


def present(fields: Mapping[str, Any]) -> dict[str, Any]:
    """The fields a client actually sent: None means absent, so that the unified model's defaults apply."""
    return {name: value for name, value in fields.items() if value is not None}


def unix_time(wire_time: str) -> float:
    """A wire time (RFC 3339, `Z`) as unix seconds; PiAPI's zero time (a moment not reached yet) is 0."""
    if not wire_time or wire_time == ZERO_TIME:
        return 0.0
    return datetime.fromisoformat(wire_time.replace("Z", "+00:00")).timestamp()


def unix_seconds(wire_time: str) -> int:
    return int(unix_time(wire_time))


def elapsed_seconds(meta: Mapping[str, Any]) -> float:
    """Seconds between a task's start and end (0 until it has both): the legacy `process_time`."""
    started, ended = unix_time(meta.get("started_at", "")), unix_time(meta.get("ended_at", ""))
    return round(ended - started, 3) if started and ended else 0.0


def error_messages(task: Mapping[str, Any]) -> list[str]:
    """What went wrong, as the legacy `error_messages` list: the failure's message and the backend's own words."""
    error = task.get("error") or {}
    messages = [str(text) for text in (error.get("message"), error.get("raw_message")) if text]
    if task.get("status") == "cancelled":
        messages.append("the task was cancelled")
    return messages


VIDEO_STATUS = {
    "pending": "pending",
    "staged": "pending",
    "processing": "processing",
    "completed": "completed",
    "failed": "failed",
    "cancelled": "failed",
}
"""Unified status to the legacy Luma and Kling one (their legacy fetches spoke the unified words already)."""


def metadata(task: Mapping[str, Any]) -> dict[str, Any]:
    """The legacy video fetches' `metadata`: the task's times (wire times) and its frozen and consumed credits."""
    meta = task.get("meta") or {}
    usage = meta.get("usage") or {}
    return {
        "created_at": meta.get("created_at", ZERO_TIME),
        "started_at": meta.get("started_at", ZERO_TIME),
        "ended_at": meta.get("ended_at", ZERO_TIME),
        "quota_frozen": usage.get("frozen", 0),
        "quota_usage": usage.get("consume", 0),
    }


def legacy_field_message(message: str, renames: Mapping[str, str] | None = None) -> str:
    """A unified input error phrased for the legacy body: `input.prompt: …` reads `prompt: …`, a rule over several
    fields (`input: Value error, image_tail_url: …`) reads `image_tail_url: …`, and a unified field a legacy field
    was renamed to (`cfg_scale`) reads as the legacy name (`creativity`)."""
    parts = []
    for part in message.split("; "):
        name, sep, rest = part.partition(": ")
        if sep and name == "input":
            name, sep, rest = rest.removeprefix("Value error, ").partition(": ")
            name = "input." + name
        field = name.removeprefix("input.")
        if sep and field != name:
            part = f"{renamed(field, renames or {})}: {rest}"
        parts.append(part)
    return "; ".join(parts)


def renamed(field: str, renames: Mapping[str, str]) -> str:
    """`field` (a dotted unified path) under the legacy name of the first unified field it falls under."""
    for unified, legacy in renames.items():
        if field == unified or field.startswith(unified + "."):
            return legacy + field[len(unified) :]
    return field


__all__ = [
    "VIDEO_STATUS",
    "LegacyCreate",
    "elapsed_seconds",
    "error_messages",
    "legacy_field_message",
    "metadata",
    "present",
    "unix_seconds",
    "unix_time",
    "webhook_config",
]
