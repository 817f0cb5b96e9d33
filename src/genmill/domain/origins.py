"""Whether a derived operation (upscale, variation, extend, ...) may work on the earlier task its input names.

PiAPI's Midjourney upscale/variation/reroll, Kling extend_video/lip_sync, Luma extend_video and Udio's continue
take `origin_task_id`. The rule is decided here, without I/O: the engine reads the named task (of the creating
account only) and asks `origin_refusal` whether the new task may be created. Another account's task is refused in
the very words used for a task that does not exist, so an id reveals nothing about other accounts.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from genmill.domain.catalog import ORIGIN_WINDOW, PRIVATE_ORIGIN_WINDOW, DerivedFrom
from genmill.domain.records import Task
from genmill.domain.states import TaskStatus


@dataclass(frozen=True)
class OriginRefusal:
    """Why the origin cannot be used: the input field it names and the rule it breaks (a 400 at create)."""

    field: str
    rule: str

    @property
    def message(self) -> str:
        return f"{self.field}: {self.rule}"


def origin_window(*, private: bool) -> timedelta:
    """How long after its origin's creation a derived task is accepted: 3 hours, or 3 days on a private pool."""
    return PRIVATE_ORIGIN_WINDOW if private else ORIGIN_WINDOW


def _hours(span: timedelta) -> str:
    hours = span.total_seconds() / 3600
    return f"{hours:g} hours" if hours < 48 else f"{hours / 24:g} days"


def origin_refusal(
    derived: DerivedFrom, origin_id: str, origin: Task | None, *, now: datetime, private: bool
) -> OriginRefusal | None:
    """None when `origin` (the task `origin_id` names, read among the creating account's tasks only; None when
    there is none) may be worked on by a new task of an entry with `derived`; otherwise what the 400 says.

    The checks, in order: the task exists for this account; it is completed (its status is named otherwise); its
    model (and task type, when `derived.task_types` is given) is one the operation works on; it was created within
    the window (`ORIGIN_WINDOW`, or `PRIVATE_ORIGIN_WINDOW` when the new task runs on the account's private pool).
    """
    field = f"input.{derived.field}"
    if origin is None:
        return OriginRefusal(field, f"no task {origin_id} found for this account")
    if origin.status is not TaskStatus.COMPLETED:
        return OriginRefusal(
            field, f"task {origin_id} is {origin.status.value}; only a completed task can be worked on"
        )
    if origin.model not in derived.models:
        return OriginRefusal(
            field, f"task {origin_id} is of model {origin.model}; this operation works on {_listed(derived.models)}"
        )
    if derived.task_types and origin.task_type not in derived.task_types:
        return OriginRefusal(
            field,
            f"task {origin_id} is a {origin.task_type} task; this operation works on {_listed(derived.task_types)}",
        )
    window = origin_window(private=private)
    age = now - origin.created_at
    if age > window:
        where = "on the account's private pool" if private else "(3 days on the account's private pool)"
        return OriginRefusal(
            field,
            f"task {origin_id} was created {age.total_seconds() / 3600:.1f} hours ago; operations on an earlier "
            f"task are accepted within {_hours(window)} of its creation {where}",
        )
    return None


def _listed(names: tuple[str, ...]) -> str:
    return ", ".join(names) if len(names) < 2 else f"one of {', '.join(names)}"
