"""Claim throughput on PostgreSQL: how fast workers can lease and complete queued tasks.

    .venv/bin/python -m bench.claims [--tasks 600] [--threads 4]

Creates a fresh PostgreSQL database, queues `--tasks` genmill/echo tasks for three accounts, then `--threads`
worker threads each loop `claim_next_task` (SKIP LOCKED, fair across accounts) and `complete` until the queue is
empty, the store path every worker takes. The baseline, in the same run, is the same threads doing empty write
transactions (`BEGIN; SELECT 1; COMMIT`) on the same database: the round-trip ceiling of this machine.
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from collections.abc import Callable

from bench.common import postgres_database
from genmill.domain.records import NewTask
from genmill.store import Store
from genmill.store.migrate import upgrade

ECHO = ("genmill/echo", "echo")


def run_threads(threads: int, work: Callable[[], bool]) -> float:
    """Run `work` in `threads` threads until it returns False; returns the elapsed seconds."""

    def loop() -> None:
        while work():
            pass

    pool = [threading.Thread(target=loop) for _ in range(threads)]
    started = time.perf_counter()
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    return time.perf_counter() - started


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tasks", type=int, default=600)
    ap.add_argument("--threads", type=int, default=4)
    args = ap.parse_args()
    with postgres_database() as url:
        upgrade(url)
        store = Store.from_url(url)
        accounts = [store.accounts.create_account(f"a{i}", credits=10**9, max_concurrency=10**6) for i in range(3)]
        for i in range(args.tasks):
            store.tasks.create(
                NewTask(
                    account_id=accounts[i % 3].account_id,
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
        remaining = [args.tasks]
        lock = threading.Lock()

        def baseline() -> bool:
            with lock:
                if remaining[0] <= 0:
                    return False
                remaining[0] -= 1
            with store.tasks.tx() as conn:
                conn.exec_driver_sql("SELECT 1")
            return True

        base_seconds = run_threads(args.threads, baseline)

        def claim_and_complete() -> bool:
            claim = store.leases.claim_next_task("bench", [ECHO], 60)
            if claim is None:
                return False
            store.leases.complete(claim.task.task_id, claim.lease_id, {"echo": claim.task.input})
            return True

        seconds = run_threads(args.threads, claim_and_complete)
        store.close()
    base_rate = args.tasks / base_seconds
    rate = args.tasks / seconds
    print(f"PostgreSQL, {args.threads} threads, {args.tasks} tasks")
    print(f"empty write transactions (baseline): {base_rate:8.1f} /s")
    print(f"claim + complete:                    {rate:8.1f} tasks/s  ({rate / base_rate:.3f}x baseline)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
