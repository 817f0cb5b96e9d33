"""Round trips per store call on PostgreSQL: how many statements each step of a task sends, counted, not timed.

    .venv/bin/python -m bench.round_trips [--tasks 200]

Creates a fresh PostgreSQL database and counts, with SQLAlchemy's engine events, the statements (`execute`
calls) and transactions (`BEGIN`, `COMMIT`) of `tasks.create`, `leases.claim_next_task` and `leases.complete`
over `--tasks` echo tasks of one account, then of `claim_many` + `complete_many` in batches of 16. Each statement
is one round trip; a transaction adds two more (psycopg sends `BEGIN` on its own, then `COMMIT`), and the pool's
pre-ping one per checkout. Counts do not move with the machine's load, unlike times on a shared machine.
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa

from bench.common import postgres_database
from genmill.domain.records import NewTask
from genmill.store import Store
from genmill.store.migrate import upgrade

ECHO = ("genmill/echo", "echo")


def counted(engine: sa.Engine, calls: int, fn: Callable[[int], object]) -> tuple[float, float]:
    """Statements and transactions per call of `fn` over `calls` calls."""
    seen: Counter[str] = Counter()

    def on_execute(*_: Any) -> None:
        seen["statements"] += 1

    def on_begin(*_: Any) -> None:
        seen["transactions"] += 1

    sa.event.listen(engine, "before_cursor_execute", on_execute)
    sa.event.listen(engine, "begin", on_begin)
    try:
        for i in range(calls):
            fn(i)
    finally:
        sa.event.remove(engine, "before_cursor_execute", on_execute)
        sa.event.remove(engine, "begin", on_begin)
    return seen["statements"] / calls, seen["transactions"] / calls


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tasks", type=int, default=200)
    args = ap.parse_args()
    with postgres_database() as url:
        upgrade(url)
        store = Store.from_url(url)
        account = store.accounts.create_account("bench", credits=10**12, max_concurrency=10**6)

        def create(i: int) -> None:
            store.tasks.create(
                NewTask(
                    account_id=account.account_id,
                    model=ECHO[0],
                    task_type=ECHO[1],
                    family="echo",
                    input={"payload": i},
                    config={},
                    price=10,
                    service_mode="",
                    retention_seconds=60,
                )
            )

        rows = [("tasks.create", *counted(store.engine, args.tasks, create))]
        claims: list[Any] = []
        rows.append(
            (
                "leases.claim_next_task",
                *counted(
                    store.engine, args.tasks, lambda _: claims.append(store.leases.claim_next_task("b", [ECHO], 60))
                ),
            )
        )
        rows.append(
            (
                "leases.complete",
                *counted(
                    store.engine,
                    args.tasks,
                    lambda i: store.leases.complete(claims[i].task.task_id, claims[i].lease_id, {"echo": i}),
                ),
            )
        )
        leases = store.leases
        if hasattr(leases, "claim_many"):
            from genmill.store.leases import Completion

            for i in range(args.tasks):
                create(i)
            batch = 16

            def claim_and_complete_batch(_: int) -> None:
                got = leases.claim_many("b", [ECHO], 60, batch)
                leases.complete_many([Completion(c.task.task_id, c.lease_id, {"echo": 1}) for c in got])

            statements, transactions = counted(store.engine, args.tasks // batch, claim_and_complete_batch)
            rows.append((f"claim_many + complete_many ({batch}), per task", statements / batch, transactions / batch))
        store.close()
    print(f"PostgreSQL, {args.tasks} tasks: per call, statements and transactions (each adds BEGIN and COMMIT)")
    for name, statements, transactions in rows:
        print(f"  {name:48s} {statements:5.2f} statements  {transactions:5.2f} transactions")
    return 0


if __name__ == "__main__":
    sys.exit(main())
