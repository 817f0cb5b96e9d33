"""Batched claims and completions against real SQLite and PostgreSQL: one transaction for several tasks, the same
choices, ledger rows and events as one call per task."""

from __future__ import annotations

import sqlalchemy as sa
from tests.integration.test_store_tasks import CAPS, assert_reconciles, new_task

from genmill.domain.states import TaskStatus
from genmill.errors import Conflict
from genmill.store import Store
from genmill.store.leases import Completion
from genmill.store.tables import ledger, task_events


def test_claim_many_takes_the_tasks_successive_claims_would_in_their_order(store: Store) -> None:
    heavy = store.accounts.create_account("heavy", credits=10_000, max_concurrency=10)
    light = store.accounts.create_account("light", credits=10_000, max_concurrency=10)
    heavy_tasks = [store.tasks.create(new_task(heavy.account_id))[0].task_id for _ in range(4)]
    light_tasks = [store.tasks.create(new_task(light.account_id))[0].task_id for _ in range(3)]
    claims = store.leases.claim_many("w1", CAPS, 30, 5)
    # The order of test_when_every_account_is_busy_the_least_loaded_goes_first: each pick sees the loads the
    # earlier picks of the batch made.
    assert [c.task.task_id for c in claims] == [
        heavy_tasks[0],
        light_tasks[0],
        heavy_tasks[1],
        light_tasks[1],
        heavy_tasks[2],
    ]
    assert len({c.lease_id for c in claims}) == 5
    assert all(c.task.status is TaskStatus.PROCESSING and c.task.attempts == 1 for c in claims)
    rest = store.leases.claim_many("w2", CAPS, 30, 5)
    assert [c.task.task_id for c in rest] == [light_tasks[2], heavy_tasks[3]]
    assert store.leases.claim_many("w3", CAPS, 30, 5) == []
    assert store.leases.claim_many("w3", [], 30, 5) == []


def test_complete_many_bills_each_task_and_refuses_only_the_stale_lease(store: Store) -> None:
    a = store.accounts.create_account("a", credits=10_000, max_concurrency=10)
    b = store.accounts.create_account("b", credits=10_000, max_concurrency=10)
    for account in (a, b, a):
        store.tasks.create(new_task(account.account_id, 300))
    first, second, third = store.leases.claim_many("w1", CAPS, 30, 3)
    outcomes = store.leases.complete_many(
        [
            Completion(first.task.task_id, first.lease_id, {"image_url": "1"}, logs=["one"]),
            Completion(second.task.task_id, "not-the-lease", {"image_url": "2"}),
            Completion(third.task.task_id, third.lease_id, {"image_url": "3"}, usage_credits=120),
            Completion(first.task.task_id, first.lease_id, {"image_url": "again"}),
        ]
    )
    assert outcomes[0] == [] and outcomes[2] == []
    assert isinstance(outcomes[1], Conflict) and isinstance(outcomes[3], Conflict)
    done = store.tasks.get(first.task.account_id, first.task.task_id)
    assert done.status is TaskStatus.COMPLETED and done.output == {"image_url": "1"} and done.logs == ["one"]
    assert done.consumed_credits == 300
    metered = store.tasks.get(third.task.account_id, third.task.task_id)
    assert metered.status is TaskStatus.COMPLETED and metered.consumed_credits == 120
    untouched = store.tasks.get(second.task.account_id, second.task.task_id)
    assert untouched.status is TaskStatus.PROCESSING and untouched.lease_id == second.lease_id
    with store.engine.connect() as conn:
        entries = conn.execute(
            sa.select(ledger.c.task_id, ledger.c.kind, ledger.c.amount).where(ledger.c.task_id.is_not(None))
        ).all()
        completed_events = conn.execute(
            sa.select(task_events.c.task_id).where(task_events.c.status == TaskStatus.COMPLETED.value)
        ).all()
    assert sorted((k, n) for t, k, n in entries if t == third.task.task_id) == [
        ("consume", 120),
        ("freeze", 300),
        ("release", 180),
    ]
    assert sorted((k, n) for t, k, n in entries if t == second.task.task_id) == [("freeze", 300)]
    assert sorted(t for (t,) in completed_events) == sorted([first.task.task_id, third.task.task_id])
    assert_reconciles(store, a.account_id, 10_000)
    assert_reconciles(store, b.account_id, 10_000)
    assert store.leases.complete_many([]) == []


def test_complete_many_promotes_staged_tasks_as_complete_does(store: Store) -> None:
    acct = store.accounts.create_account("a", credits=10_000, max_concurrency=2)
    ids = [store.tasks.create(new_task(acct.account_id))[0].task_id for _ in range(4)]
    assert [store.tasks.get(acct.account_id, i).status for i in ids[2:]] == [TaskStatus.STAGED] * 2
    claims = store.leases.claim_many("w1", CAPS, 30, 5)
    assert [c.task.task_id for c in claims] == ids[:2]
    outcomes = store.leases.complete_many([Completion(c.task.task_id, c.lease_id, {"image_url": "u"}) for c in claims])
    assert outcomes == [[ids[2]], [ids[3]]]
    assert [store.tasks.get(acct.account_id, i).status for i in ids[2:]] == [TaskStatus.PENDING] * 2
    assert_reconciles(store, acct.account_id, 10_000)
