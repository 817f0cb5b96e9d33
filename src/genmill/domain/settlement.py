"""Settlement: what ending a task does to its status and its frozen price.

A task's price is frozen when it is created. Completing it consumes the frozen credits (they become used);
failing or cancelling it releases them (they become available again). When the frozen price is a cap (per frame,
per second: the catalog entry's `usage_price`), completing consumes only what the output really used, at most the
frozen credits, and releases the rest in the same settlement, so nothing is consumed twice and nothing stays
frozen. Either way the task then holds nothing
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
    """The ledger movement of its frozen credits (CONSUME or RELEASE); None when nothing was frozen, or when a
    completed task used nothing of its cap (then `released` returns all of it)."""
    consumed: int
    """Credits this settlement adds to the task's consumed total."""
    frees_slot: bool
    """Whether the task held a concurrency slot, so that staged tasks of the account may be promoted."""
    released: LedgerEntry | None = None
    """On completion with a usage price below the frozen cap: the RELEASE of the rest."""

    @property
    def entries(self) -> tuple[LedgerEntry, ...]:
        """The ledger movements to write, in order (consume first, then the release of the rest)."""
        return tuple(e for e in (self.entry, self.released) if e is not None)


def settle(
    status: TaskStatus | str,
    event: TaskEvent,
    frozen_credits: int,
    task_id: str,
    *,
    usage_credits: int | None = None,
) -> Settlement:
    """How a task in `status` holding `frozen_credits` ends on `event` (complete, fail or cancel).

    `usage_credits` is what a completed task's output really used (its entry's `usage_price`), None where the
    frozen price is the price: completion then consumes `min(frozen, usage)` and releases the rest. A usage is
    never below zero; failing and cancelling ignore it (nothing is consumed).

    Raises `IllegalTransition` when the state machine refuses the event, before anything is written.
    """
    current = TaskStatus(status)
    ending = transition(current, event)
    if not ending.is_terminal:
        raise ValueError(f"{event.value} does not end a task; settlement is for complete, fail and cancel")
    if usage_credits is not None and usage_credits < 0:
        raise ValueError("a task's usage is never negative")
    if not frozen_credits:
        return Settlement(ending, None, 0, current.is_active)
    if ending is not TaskStatus.COMPLETED:
        return Settlement(ending, LedgerEntry(LedgerKind.RELEASE, frozen_credits, task_id), 0, current.is_active)
    consumed = frozen_credits if usage_credits is None else min(frozen_credits, usage_credits)
    rest = frozen_credits - consumed
    return Settlement(
        ending,
        LedgerEntry(LedgerKind.CONSUME, consumed, task_id) if consumed else None,
        consumed,
        current.is_active,
        released=LedgerEntry(LedgerKind.RELEASE, rest, task_id) if rest else None,
    )


def usage_charge(usage: int, list_price: int, price: int) -> int:
    """What a task priced `price` (its frozen credits at create) pays for `usage` credits at list price, where
    `list_price` is the list price it was priced from: the same share of its own price (a private pool pays
    `GENMILL_PRIVATE_PRICE_FACTOR` of the list price, and so of its usage), rounded up, never above `price`."""
    if usage < 0 or list_price < 0 or price < 0:
        raise ValueError("credits are never negative")
    if list_price == 0 or usage >= list_price:
        return price
    return min(price, -(-usage * price // list_price))
