"""In-process cost of the store calls on the task path, one thread, no HTTP: where a request's database time goes.

    .venv/bin/python -m bench.store_calls [--tasks 1000] [--database-url URL]

On a fresh SQLite database (or the PostgreSQL URL given, which must be empty), times per call: `authenticate`
(the key lookup the API caches), `tasks.create` (credit freeze, task row, outbox event), `tasks.get`, and
`claim_next_task` + `complete` until the queue of `--tasks` (+50) pending echo tasks is empty. The baseline, in the
same run, is an empty write transaction (`BEGIN; SELECT 1; COMMIT`) on the same database.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable

from genmill.domain.records import NewTask
from genmill.store import Store
from genmill.store.migrate import upgrade

ECHO = ("genmill/echo", "echo")
WEBHOOKLESS = {"service_mode": "", "webhook_config": {"endpoint": "", "secret": ""}}


def per_call_ms(calls: int, fn: Callable[[int], object]) -> float:
    started = time.perf_counter()
    for i in range(calls):
        fn(i)
    return (time.perf_counter() - started) / calls * 1000


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tasks", type=int, default=1000)
    ap.add_argument("--database-url", default="")
    args = ap.parse_args()
    url = args.database_url or f"sqlite:///{tempfile.mkdtemp(prefix='genmill-store-calls-')}/store.db"
    upgrade(url)
    store = Store.from_url(url)
    account = store.accounts.create_account("bench", credits=10**12, max_concurrency=10**6)
    key, _ = store.accounts.create_key(account.account_id)

    def new(i: int) -> NewTask:
        return NewTask(
            account_id=account.account_id,
            model=ECHO[0],
            task_type=ECHO[1],
            family="echo",
            input={"payload": i},
            config=WEBHOOKLESS,
            price=10,
            service_mode="",
            retention_seconds=60,
        )

    def empty_write(_: int) -> None:
        with store.tasks.tx() as conn:
            conn.exec_driver_sql("SELECT 1")

    for i in range(50):  # warm the statement caches
        store.tasks.create(new(i))
    n = args.tasks
    baseline = per_call_ms(n, empty_write)
    auth = per_call_ms(n, lambda _: store.accounts.authenticate(key))
    ids: list[str] = []
    create = per_call_ms(n, lambda i: ids.append(store.tasks.create(new(i))[0].task_id))
    get = per_call_ms(n, lambda i: store.tasks.get(account.account_id, ids[i]))
    done = 0
    started = time.perf_counter()
    while (claim := store.leases.claim_next_task("bench", [ECHO], 60)) is not None:
        store.leases.complete(claim.task.task_id, claim.lease_id, {"echo": claim.task.input})
        done += 1
    claim_complete = (time.perf_counter() - started) / max(done, 1) * 1000
    store.close()
    print(f"{store.engine.dialect.name}, one thread, {n} calls each (ms per call; ratio to an empty write transaction)")
    for name, ms in (
        ("empty write transaction (baseline)", baseline),
        ("authenticate", auth),
        ("tasks.create", create),
        ("tasks.get", get),
        (f"claim_next_task + complete ({done} tasks)", claim_complete),
    ):
        print(f"  {name:42s} {ms:7.3f} ms  {ms / baseline:5.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
