"""Which accounts' deliveries this process's sender threads are busy with, so that no account takes them all.

A sender thread is held for as long as the receiver takes to answer, up to the whole `GENMILL_WEBHOOK_TIMEOUT`.
Without a limit, a few tasks pointing at a slow receiver hold every thread and every other account's deliveries
wait behind them. So each account may occupy at most `per_account` threads at once (by default all but one), and
a free thread serves accounts with nothing in flight before busy ones: another account's delivery goes out on the
next free thread however long one account's backlog is.

The count is per process on purpose: the scarce thing is this process's threads, and each replica keeps its own
threads free for others the same way. It needs no table scan and no lock across replicas.
"""

from __future__ import annotations

import threading
from collections import Counter


def default_per_account(concurrency: int) -> int:
    """All threads but one, so that one is always left for the other accounts (at least one)."""
    return max(1, concurrency - 1)


class AccountSlots:
    """Deliveries in flight per account in this process; thread-safe."""

    def __init__(self, per_account: int) -> None:
        if per_account < 1:
            raise ValueError("per_account must be at least 1")
        self.per_account = per_account
        self._in_flight: Counter[str] = Counter()
        self._lock = threading.Lock()

    def busy(self) -> frozenset[str]:
        """Accounts with at least one delivery in flight here."""
        with self._lock:
            return frozenset(self._in_flight)

    def full(self) -> frozenset[str]:
        """Accounts that may not start another delivery here until one of theirs ends."""
        with self._lock:
            return frozenset(account for account, n in self._in_flight.items() if n >= self.per_account)

    def take(self, account_id: str) -> None:
        with self._lock:
            self._in_flight[account_id] += 1

    def release(self, account_id: str) -> None:
        with self._lock:
            self._in_flight[account_id] -= 1
            if self._in_flight[account_id] <= 0:
                del self._in_flight[account_id]

    def in_flight(self, account_id: str) -> int:
        with self._lock:
            return self._in_flight[account_id]
