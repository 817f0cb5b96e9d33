"""The task state machine: the only place that decides whether a status may change.

    staged ──promote──▶ pending ──claim──▶ processing ──complete──▶ completed
      │                  │  ▲                 │  └──────fail─────▶ failed
      │                  │  └────requeue──────┘                      ▲
      │                  └───────────────expire──────────────────────┘ (no worker within the wait limit)
      └──cancel──▶ cancelled ◀──cancel──┘ (pending only)

Callers (the store) ask `transition(status, event)` for the next status inside the same transaction that
writes it, so an illegal change is refused before anything is written.
"""

from __future__ import annotations

from enum import StrEnum

from genmill.errors import IllegalTransition


class TaskStatus(StrEnum):
    PENDING = "pending"
    PROCESSING = "processing"
    COMPLETED = "completed"
    FAILED = "failed"
    STAGED = "staged"
    CANCELLED = "cancelled"

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL

    @property
    def is_active(self) -> bool:
        """Counts toward the account's concurrency limit (staged does not)."""
        return self in (TaskStatus.PENDING, TaskStatus.PROCESSING)


TERMINAL = frozenset({TaskStatus.COMPLETED, TaskStatus.FAILED, TaskStatus.CANCELLED})
LIVE = frozenset({TaskStatus.PENDING, TaskStatus.PROCESSING, TaskStatus.STAGED})


class TaskEvent(StrEnum):
    PROMOTE = "promote"  # a concurrency slot freed up for a staged task
    CLAIM = "claim"  # a worker took the task with a lease
    COMPLETE = "complete"
    FAIL = "fail"  # the backend failed, or the last attempt's lease expired
    REQUEUE = "requeue"  # the lease expired with attempts left
    CANCEL = "cancel"  # the client cancelled
    EXPIRE = "expire"  # a pending task waited past its entry's limit with no worker to run it


_TRANSITIONS: dict[tuple[TaskStatus, TaskEvent], TaskStatus] = {
    (TaskStatus.STAGED, TaskEvent.PROMOTE): TaskStatus.PENDING,
    (TaskStatus.STAGED, TaskEvent.CANCEL): TaskStatus.CANCELLED,
    (TaskStatus.PENDING, TaskEvent.CLAIM): TaskStatus.PROCESSING,
    (TaskStatus.PENDING, TaskEvent.CANCEL): TaskStatus.CANCELLED,
    (TaskStatus.PENDING, TaskEvent.EXPIRE): TaskStatus.FAILED,
    (TaskStatus.PROCESSING, TaskEvent.COMPLETE): TaskStatus.COMPLETED,
    (TaskStatus.PROCESSING, TaskEvent.FAIL): TaskStatus.FAILED,
    (TaskStatus.PROCESSING, TaskEvent.REQUEUE): TaskStatus.PENDING,
}


def transition(status: TaskStatus | str, event: TaskEvent) -> TaskStatus:
    """The status after `event`, or `IllegalTransition` when the machine does not allow it."""
    current = TaskStatus(status)
    nxt = _TRANSITIONS.get((current, event))
    if nxt is None:
        raise IllegalTransition(
            f"a {current.value} task cannot {event.value}",
            detail={"status": current.value, "event": event.value},
        )
    return nxt


def can(status: TaskStatus | str, event: TaskEvent) -> bool:
    return (TaskStatus(status), event) in _TRANSITIONS


def cancel_refusal(status: TaskStatus | str) -> str | None:
    """Why a task in `status` cannot be cancelled (API.md: only pending and staged), or None if it can."""
    current = TaskStatus(status)
    if can(current, TaskEvent.CANCEL):
        return None
    if current is TaskStatus.PROCESSING:
        return "the task is already processing; only pending and staged tasks can be cancelled"
    return f"the task is already {current.value}; only pending and staged tasks can be cancelled"
