"""`LeaseStore.claim_task`, on SQLite and PostgreSQL: the API process leases exactly the task it just created
(never another pending task of the same model), only while it is pending, and a lapsed lease on a task with one
attempt fails it and releases its credits."""

from __future__ import annotations

from tests.integration.test_store_tasks import assert_reconciles, new_task

from genmill.domain.clock import ManualClock
from genmill.domain.records import NewTask
from genmill.domain.states import TaskStatus
from genmill.store import Store


def one_attempt(account_id: str) -> NewTask:
    return NewTask(**{**new_task(account_id).__dict__, "max_attempts": 1})


def test_claim_task_leases_the_named_task_only_while_it_is_pending(store: Store) -> None:
    acct = store.accounts.create_account("a", credits=1000, max_concurrency=2)
    older, _ = store.tasks.create(one_attempt(acct.account_id))
    mine, _ = store.tasks.create(one_attempt(acct.account_id))
    claim = store.leases.claim_task(mine.task_id, "api:inline", 30)
    assert claim is not None and claim.task.task_id == mine.task_id
    assert claim.task.status is TaskStatus.PROCESSING and claim.task.worker_id == "api:inline"
    assert store.tasks.get(acct.account_id, older.task_id).status is TaskStatus.PENDING  # untouched
    assert store.leases.claim_task(mine.task_id, "api:inline", 30) is None  # already processing
    staged, _ = store.tasks.create(one_attempt(acct.account_id))  # the account's two slots are taken
    assert staged.status is TaskStatus.STAGED
    assert store.leases.claim_task(staged.task_id, "api:inline", 30) is None
    assert store.leases.claim_task("no-such-task", "api:inline", 30) is None
    store.leases.complete(mine.task_id, claim.lease_id, {"ok": True})
    assert_reconciles(store, acct.account_id, 1000)


def test_the_reaper_fails_a_lapsed_inline_task_and_releases_its_credits(store: Store) -> None:
    clock = ManualClock()
    store = Store(store.engine, clock=clock)  # the same database, on a clock this test steps
    acct = store.accounts.create_account("a", credits=1000)
    task, _ = store.tasks.create(one_attempt(acct.account_id))
    assert store.leases.claim_task(task.task_id, "api:inline", 30) is not None
    assert store.leases.sweep_expired_leases().failed == []  # the lease still runs
    clock.advance(31)
    assert store.leases.sweep_expired_leases().failed == [task.task_id]  # one attempt: failed, not requeued
    ended = store.tasks.get(acct.account_id, task.task_id)
    assert ended.status is TaskStatus.FAILED and ended.frozen_credits == 0
    balances = store.accounts.get(acct.account_id).balances
    assert (balances.available, balances.frozen, balances.used) == (1000, 0, 0)
    assert_reconciles(store, acct.account_id, 1000)
