"""The end of a task on PostgreSQL is the lock and one statement (`genmill.store.rows.finish_task`): counted here,
with the worker's last logs and detail, a usage-priced settlement, and the staged task a freed slot starts."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any, TypeVar

import sqlalchemy as sa
from tests.integration.test_store_tasks import assert_reconciles, new_task

from genmill.domain.states import TaskStatus
from genmill.store import Store
from genmill.store.tables import task_events

UPSCALE = [("Qubico/image-toolkit", "upscale")]
T = TypeVar("T")


def statements(store: Store, call: Callable[[], T]) -> tuple[T, int]:
    seen: Counter[str] = Counter()

    def count(*_: Any) -> None:
        seen["statements"] += 1

    sa.event.listen(store.engine, "before_cursor_execute", count)
    try:
        result = call()
    finally:
        sa.event.remove(store.engine, "before_cursor_execute", count)
    return result, seen["statements"]


def test_a_complete_with_logs_detail_and_usage_is_two_statements(pg_store: Store) -> None:
    account = pg_store.accounts.create_account("one", credits=1000)
    task, _ = pg_store.tasks.create(new_task(account.account_id, price=100))
    claim = pg_store.leases.claim_next_task("w1", UPSCALE, 30)
    assert claim is not None and claim.task.task_id == task.task_id

    promoted, count = statements(
        pg_store,
        lambda: pg_store.leases.complete(
            task.task_id,
            claim.lease_id,
            {"image_url": "x"},
            logs=["done"],
            detail={"steps": 4},
            usage_credits=30,
        ),
    )
    assert count == 2 and promoted == []
    done = pg_store.tasks.get(account.account_id, task.task_id)
    assert done.status is TaskStatus.COMPLETED
    assert done.logs[-1] == "done" and done.detail == {"steps": 4} and done.consumed_credits == 30
    assert pg_store.accounts.get(account.account_id).balances.available == 970
    assert_reconciles(pg_store, account.account_id, 1000)
    with pg_store.engine.connect() as conn:
        last = conn.execute(
            sa.select(task_events.c.snapshot)
            .where(task_events.c.task_id == task.task_id)
            .order_by(task_events.c.event_id.desc())
            .limit(1)
        ).scalar_one()
    assert last["status"] == "completed" and last["detail"] == {"steps": 4} and last["logs"][-1] == "done"


def test_a_freed_slot_still_starts_the_oldest_staged_task(pg_store: Store) -> None:
    account = pg_store.accounts.create_account("busy", credits=1000, max_concurrency=1)
    first, _ = pg_store.tasks.create(new_task(account.account_id))
    staged, _ = pg_store.tasks.create(new_task(account.account_id))
    assert staged.status is TaskStatus.STAGED
    claim = pg_store.leases.claim_next_task("w1", UPSCALE, 30)
    assert claim is not None

    promoted, count = statements(pg_store, lambda: pg_store.leases.fail(first.task_id, claim.lease_id, {"code": 1}))
    assert promoted == [staged.task_id]
    assert count > 2  # the promotion takes statements of its own, only when the probe found a staged task
    assert pg_store.tasks.get(account.account_id, staged.task_id).status is TaskStatus.PENDING
    assert_reconciles(pg_store, account.account_id, 1000)
