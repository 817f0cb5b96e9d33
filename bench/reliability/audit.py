"""What a scenario left behind, read from the database after the servers went quiet.

The three figures every row of the table carries besides the 5xx count:

- **lost tasks**: acknowledged creates (the client got a 200 with a task id) whose row is missing or still not in
  a terminal status once the scenario waited for everything to settle;
- **double completions**: tasks with more than one CONSUME in the ledger, i.e. billed twice;
- **ledger difference**: per account, the stored buckets (available, frozen, used) against the same buckets
  rebuilt from the ledger alone (`AccountStore.ledger_balances`, the store's reconciliation), summed as absolute
  differences over every account. Credits still frozen on an account whose tasks are all terminal are counted
  apart (`frozen_left`): the ledger agrees with itself there, but the money is stuck.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field

import sqlalchemy as sa

from genmill.domain.ledger import LedgerKind
from genmill.domain.states import TERMINAL
from genmill.store import Store
from genmill.store.tables import ledger, tasks

LIVE = ("pending", "processing", "staged")


@dataclass
class Audit:
    acknowledged: int = 0
    lost: list[str] = field(default_factory=list)
    double_completions: list[str] = field(default_factory=list)
    ledger_difference: int = 0
    frozen_left: int = 0
    statuses: dict[str, int] = field(default_factory=dict)

    def problems(self) -> list[str]:
        found = []
        if self.lost:
            found.append(f"{len(self.lost)} acknowledged tasks lost or never settled ({', '.join(self.lost[:3])})")
        if self.double_completions:
            found.append(
                f"{len(self.double_completions)} tasks billed twice ({', '.join(self.double_completions[:3])})"
            )
        if self.ledger_difference:
            found.append(f"ledger and balances differ by {self.ledger_difference} credits")
        if self.frozen_left:
            found.append(f"{self.frozen_left} credits still frozen with no live task")
        return found


def wait_settled(database_url: str, task_ids: Iterable[str], timeout_s: float) -> int:
    """Wait until none of `task_ids` is live (pending, processing, staged); returns how many still are."""
    ids = list(task_ids)
    engine = sa.create_engine(database_url)
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            with engine.connect() as conn:
                live = 0
                for start in range(0, len(ids), 500):
                    live += conn.execute(
                        sa.select(sa.func.count())
                        .select_from(tasks)
                        .where(tasks.c.task_id.in_(ids[start : start + 500]), tasks.c.status.in_(LIVE))
                    ).scalar_one()
            if live == 0 or time.monotonic() >= deadline:
                return int(live)
            time.sleep(0.25)
    finally:
        engine.dispose()


def audit(database_url: str, acknowledged: Iterable[str], accounts: Iterable[str] | None = None) -> Audit:
    """Read the tasks, the ledger and the accounts once, and count what went wrong; with `accounts`, only their
    tasks, ledger entries and balances count (scenarios that share a server keep their figures apart)."""
    acked = list(dict.fromkeys(acknowledged))
    wanted = set(accounts) if accounts is not None else None
    store = Store.from_url(database_url)
    try:
        with store.engine.connect() as conn:
            rows = conn.execute(sa.select(tasks.c.task_id, tasks.c.account_id, tasks.c.status)).all()
            consumed_twice = conn.execute(
                sa.select(ledger.c.task_id, ledger.c.account_id)
                .where(ledger.c.kind == LedgerKind.CONSUME.value)
                .group_by(ledger.c.task_id, ledger.c.account_id)
                .having(sa.func.count() > 1)
            ).all()
        status_of = {row.task_id: row.status for row in rows}
        result = Audit(acknowledged=len(acked))
        for task_id in acked:
            status = status_of.get(task_id)
            if status is None or status not in TERMINAL:
                result.lost.append(f"{task_id}:{status or 'missing'}")
        live = set()
        for row in rows:
            if wanted is None or row.account_id in wanted:
                result.statuses[row.status] = result.statuses.get(row.status, 0) + 1
                if row.status in LIVE:
                    live.add(row.account_id)
        result.double_completions = [
            str(row.task_id) for row in consumed_twice if wanted is None or row.account_id in wanted
        ]
        for account in store.accounts.list_accounts():
            if wanted is not None and account.account_id not in wanted:
                continue
            rebuilt = store.accounts.ledger_balances(account.account_id)
            stored = account.balances
            result.ledger_difference += (
                abs(rebuilt.available - stored.available)
                + abs(rebuilt.frozen - stored.frozen)
                + abs(rebuilt.used - stored.used)
            )
            if account.account_id not in live:
                result.frozen_left += stored.frozen
        return result
    finally:
        store.close()
