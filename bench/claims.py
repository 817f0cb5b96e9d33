"""Claim throughput on PostgreSQL: how fast workers can lease and complete queued tasks.

    .venv/bin/python -m bench.claims [--tasks 600] [--threads 4] [--batch 1]

Creates a fresh PostgreSQL database, queues `--tasks` genmill/echo tasks for three accounts, then `--threads`
worker threads each loop `claim_next_task` (SKIP LOCKED, fair across accounts) and `complete` until the queue is
empty, the store path every worker takes; with `--batch N` above 1, `claim_many` and `complete_many` of up to N
tasks per transaction instead. The baseline, in the same run, is the same threads doing empty write transactions
(`BEGIN; SELECT 1; COMMIT`) on the same database: the round-trip ceiling of this machine. Such a transaction
writes no WAL, so its commit waits for no disk flush; the second line, durable one-row inserts, shows what a
commit that must reach the disk costs here (every claim and every complete is one).
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
from genmill.store.leases import Completion
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
    ap.add_argument("--batch", type=int, default=1)
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
        with store.tasks.tx() as conn:
            conn.exec_driver_sql("CREATE TABLE bench_durable (n integer)")
        remaining[0] = args.tasks

        def durable() -> bool:
            with lock:
                if remaining[0] <= 0:
                    return False
                remaining[0] -= 1
            with store.tasks.tx() as conn:
                conn.exec_driver_sql("INSERT INTO bench_durable VALUES (1)")
            return True

        durable_seconds = run_threads(args.threads, durable)

        def claim_and_complete() -> bool:
            if args.batch > 1:
                claims = store.leases.claim_many("bench", [ECHO], 60, args.batch)
                done = [Completion(c.task.task_id, c.lease_id, {"echo": c.task.input}) for c in claims]
                store.leases.complete_many(done)
                return bool(claims)
            claim = store.leases.claim_next_task("bench", [ECHO], 60)
            if claim is None:
                return False
            store.leases.complete(claim.task.task_id, claim.lease_id, {"echo": claim.task.input})
            return True

        seconds = run_threads(args.threads, claim_and_complete)
        store.close()
    base_rate = args.tasks / base_seconds
    durable_rate = args.tasks / durable_seconds
    rate = args.tasks / seconds
    how = f"claim_many + complete_many of up to {args.batch}" if args.batch > 1 else "claim + complete"
    print(f"PostgreSQL, {args.threads} threads, {args.tasks} tasks")
    print(f"empty write transactions (baseline): {base_rate:8.1f} /s")
    print(f"durable one-row insert transactions: {durable_rate:8.1f} /s  ({durable_rate / base_rate:.3f}x baseline)")
    print(f"{how + ':':36s} {rate:8.1f} tasks/s  ({rate / base_rate:.3f}x baseline)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
