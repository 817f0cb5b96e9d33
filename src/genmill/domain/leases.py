"""Lease rules: when a worker's lease is valid, when it ends, and what becomes of a task whose lease expired.

A worker holds a task by a lease it must renew (heartbeat) before `lease_expires_at`. A task whose lease ran out
is given to another worker while it has attempts left (requeued), and fails with its credits released when it
has none: a task that crashes every worker it touches must not go round forever.

The lease store (`genmill.store.leases`) finds the rows and executes these decisions in its transactions.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from genmill.domain.failures import FailureCode, TaskFailure
from genmill.domain.states import TaskEvent, TaskStatus, transition


def lease_ends_at(now: datetime, lease_seconds: float) -> datetime:
    """When a lease taken or renewed at `now` for `lease_seconds` runs out."""
    return now + timedelta(seconds=lease_seconds)


def holds_lease(status: TaskStatus | str, current_lease_id: str | None, presented_lease_id: str) -> bool:
    """Whether a worker presenting `presented_lease_id` still holds the task: it is processing under that lease.

    A worker whose lease expired (and whose task was requeued, claimed again or ended) is refused, so a task
    completes, and bills, exactly once.
    """
    return TaskStatus(status) is TaskStatus.PROCESSING and current_lease_id == presented_lease_id


@dataclass(frozen=True)
class LeaseExpiry:
    """What happens to a processing task whose lease expired."""

    event: TaskEvent
    """REQUEUE (attempts left) or FAIL (none left)."""
    status: TaskStatus
    """The status the task moves to."""
    log_line: str
    """The line appended to the task's logs, saying what happened and why."""
    failure: TaskFailure | None
    """The task's error when it fails; None when it is requeued."""


def expire_lease(status: TaskStatus | str, attempts: int, max_attempts: int, worker_id: str | None) -> LeaseExpiry:
    """The decision for a task in `status` whose lease, taken on attempt `attempts` of `max_attempts` by
    `worker_id`, expired. Raises `IllegalTransition` for a task that is not processing."""
    if attempts >= max_attempts:
        return LeaseExpiry(
            TaskEvent.FAIL,
            transition(status, TaskEvent.FAIL),
            f"lease expired on attempt {attempts}; no attempts left, credits released",
            TaskFailure(
                FailureCode.WORKER_LOST,
                f"the worker stopped responding on each of {attempts} attempts",
                f"lease expired (worker {worker_id})",
            ),
        )
    return LeaseExpiry(
        TaskEvent.REQUEUE,
        transition(status, TaskEvent.REQUEUE),
        f"lease expired on attempt {attempts} (worker {worker_id}); requeued",
        None,
    )
