"""Settlement: what ending a task does to its status and its frozen price.

A task's price is frozen when it is created. Completing it consumes the frozen credits (they become used);
failing or cancelling it releases them (they become available again). Either way the task then holds nothing
frozen, and if it held a concurrency slot (pending or processing) the slot is free for a staged task.

`end_task` in the store locks the account, executes the ledger entry and writes what this decides.
"""

from __future__ import annotations

from dataclasses import dataclass

from genmill.domain.ledger import LedgerEntry, LedgerKind
from genmill.domain.states import TaskEvent, TaskStatus, transition


@dataclass(frozen=True)
class Settlement:
    status: TaskStatus
    """The terminal status the task ends in."""
    entry: LedgerEntry | None
    """The ledger movement of its frozen credits (CONSUME or RELEASE); None when nothing was frozen."""
    consumed: int
    """Credits this settlement adds to the task's consumed total."""
    frees_slot: bool
    """Whether the task held a concurrency slot, so that staged tasks of the account may be promoted."""


def settle(status: TaskStatus | str, event: TaskEvent, frozen_credits: int, task_id: str) -> Settlement:
    """How a task in `status` holding `frozen_credits` ends on `event` (complete, fail or cancel).

    Raises `IllegalTransition` when the state machine refuses the event, before anything is written.
    """
    current = TaskStatus(status)
    ending = transition(current, event)
    if not ending.is_terminal:
        raise ValueError(f"{event.value} does not end a task; settlement is for complete, fail and cancel")
    entry = None
    consumed = 0
    if frozen_credits:
        if ending is TaskStatus.COMPLETED:
            entry = LedgerEntry(LedgerKind.CONSUME, frozen_credits, task_id)
            consumed = frozen_credits
        else:
            entry = LedgerEntry(LedgerKind.RELEASE, frozen_credits, task_id)
    return Settlement(ending, entry, consumed, current.is_active)
