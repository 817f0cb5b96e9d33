"""Admission: whether a new task starts pending, waits staged, or is refused, and how many slots are free.

An account runs at most `max_concurrency` tasks at once (pending and processing count; staged does not). A task
created at the limit is staged, up to the deployment's staged limit; past that the create is refused (429). When
a slot frees, the oldest staged tasks are promoted into the free slots.

The store counts the rows and calls these in the create and promotion transactions, under the account lock.
"""

from __future__ import annotations

from genmill.domain.states import TaskStatus
from genmill.errors import TooManyTasks


def free_slots(max_concurrency: int, active: int) -> int:
    """Concurrency slots the account has free with `active` tasks pending or processing (never negative: lowering
    an account's limit below what it runs leaves it over, not in debt)."""
    return max(max_concurrency - active, 0)


def starts_pending(active: int, max_concurrency: int) -> bool:
    """Whether a new task goes straight to pending: the account has a slot free for it.

    When it does not, the store counts the account's staged tasks and asks `staged_admission`; most creates find
    a slot, and are spared that count.
    """
    return free_slots(max_concurrency, active) > 0


def staged_admission(staged: int, max_staged: int) -> TaskStatus:
    """The status of a new task that found no free slot: staged, or `TooManyTasks` when `staged` already fills
    the staged limit (nothing is written then: the store asks before it freezes or inserts)."""
    if staged >= max_staged:
        raise TooManyTasks(
            f"the account already has {staged} staged tasks (the limit is {max_staged}); wait for some to finish",
            detail={"staged_count": staged, "limit": max_staged},
        )
    return TaskStatus.STAGED
