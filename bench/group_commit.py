"""Create throughput with and without group commit, on PostgreSQL, in one run.

    .venv/bin/python -m bench.group_commit [--creates 2000] [--threads 32] [--accounts 1]

Creates a fresh PostgreSQL database and `--accounts` accounts, then `--threads` threads each call
`store.tasks.create` until `--creates` tasks exist, first through a store without group commit, then through one
with it (`Store(group_commit=True)`), on the same database. One account is the worst case without grouping: its
creates queue on its row lock, each holding it through its own commit's disk flush.
"""

from __future__ import annotations

import argparse
import sys
import threading

from bench.claims import run_threads
from bench.common import postgres_database
from genmill.domain.records import NewTask
from genmill.store import Store
from genmill.store.migrate import upgrade


def measure(store: Store, account_ids: list[str], creates: int, threads: int) -> float:
    """Creates per second with `threads` threads sharing the work."""
    remaining = [creates]
    lock = threading.Lock()

    def create() -> bool:
        with lock:
            if remaining[0] <= 0:
                return False
            remaining[0] -= 1
            i = remaining[0]
        store.tasks.create(
            NewTask(
                account_id=account_ids[i % len(account_ids)],
                model="genmill/echo",
                task_type="echo",
                family="echo",
                input={"payload": i},
                config={},
                price=10,
                service_mode="",
                retention_seconds=60,
            )
        )
        return True

    return creates / run_threads(threads, create)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--creates", type=int, default=2000)
    ap.add_argument("--threads", type=int, default=32)
    ap.add_argument("--accounts", type=int, default=1)
    args = ap.parse_args()
    with postgres_database() as url:
        upgrade(url)
        plain = Store.from_url(url)
        grouped = Store(plain.engine, group_commit=True)
        ids = [
            plain.accounts.create_account(f"a{i}", credits=10**12, max_concurrency=10**7).account_id
            for i in range(args.accounts)
        ]
        measure(plain, ids, 100, args.threads)  # warm the pool and the statement caches
        alone = measure(plain, ids, args.creates, args.threads)
        together = measure(grouped, ids, args.creates, args.threads)
        assert grouped.tasks.group_commit is not None
        per_group = args.creates / max(grouped.tasks.group_commit.groups, 1)
        plain.close()
    print(f"PostgreSQL, {args.threads} threads, {args.creates} creates over {args.accounts} account(s)")
    print(f"one transaction per create (baseline): {alone:8.1f} creates/s")
    print(f"group commit:                          {together:8.1f} creates/s  ({together / alone:.2f}x)")
    print(f"creates per committed group:           {per_group:8.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
