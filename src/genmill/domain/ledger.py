"""Credit rules: how each task event moves an account's credits, as pure data.

An account's credits live in three buckets — available, frozen, used — whose sum is the total ever topped up.
Every movement is a `LedgerEntry` appended in the same transaction as the task change that causes it, so the
buckets can always be rebuilt from the ledger (`balances_from_ledger`) and checked against the account row.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

from genmill.errors import InsufficientCredits


class LedgerKind(StrEnum):
    TOPUP = "topup"  # operator adds credits: total and available grow
    FREEZE = "freeze"  # task created: available -> frozen
    CONSUME = "consume"  # task completed: frozen -> used
    RELEASE = "release"  # task failed or cancelled: frozen -> available


@dataclass(frozen=True)
class Balances:
    available: int = 0
    frozen: int = 0
    used: int = 0

    @property
    def total(self) -> int:
        return self.available + self.frozen + self.used


@dataclass(frozen=True)
class LedgerEntry:
    kind: LedgerKind
    amount: int
    task_id: str | None = None


def apply(balances: Balances, entry: LedgerEntry) -> Balances:
    """The balances after one entry; refuses anything that would make a bucket negative."""
    if entry.amount < 0:
        raise ValueError("ledger amounts are never negative")
    a, f, u = balances.available, balances.frozen, balances.used
    match entry.kind:
        case LedgerKind.TOPUP:
            a += entry.amount
        case LedgerKind.FREEZE:
            if entry.amount > a:
                raise InsufficientCredits(
                    f"not enough credits: the task costs {entry.amount} credits and {a} are available",
                    detail={"price": entry.amount, "available_credits": a},
                )
            a, f = a - entry.amount, f + entry.amount
        case LedgerKind.CONSUME:
            if entry.amount > f:
                raise ValueError("cannot consume more than is frozen")
            f, u = f - entry.amount, u + entry.amount
        case LedgerKind.RELEASE:
            if entry.amount > f:
                raise ValueError("cannot release more than is frozen")
            f, a = f - entry.amount, a + entry.amount
    return Balances(available=a, frozen=f, used=u)


def balances_from_ledger(entries: Iterable[LedgerEntry]) -> Balances:
    result = Balances()
    for entry in entries:
        result = apply(result, entry)
    return result
