"""The task path against real SQLite and PostgreSQL: credits, concurrency, staging, leases, reconciliation."""

from __future__ import annotations

import contextlib
import random
from datetime import timedelta

import pytest
import sqlalchemy as sa

from genmill.domain.clock import ManualClock
from genmill.domain.records import NewTask
from genmill.domain.states import TaskStatus
from genmill.errors import Conflict, InsufficientCredits, InvalidRequest, NotFound, TooManyTasks
from genmill.store import Store
from genmill.store.tables import ledger, tasks

CAPS = [("Qubico/image-toolkit", "upscale")]


def new_task(account_id: str, price: int = 100) -> NewTask:
    return NewTask(
        account_id=account_id,
        model="Qubico/image-toolkit",
        task_type="upscale",
        family="image-toolkit",
        input={"image": "x", "scale": 2},
        config={"service_mode": ""},
        price=price,
        service_mode="",
        retention_seconds=3600,
        max_attempts=2,
    )


def assert_reconciles(store: Store, account_id: str, total: int) -> None:
    account = store.accounts.get(account_id)
    assert account.balances == store.accounts.ledger_balances(account_id)
    assert account.balances.total == total
    with store.engine.connect() as conn:
        frozen = conn.execute(
            sa.select(sa.func.coalesce(sa.func.sum(tasks.c.frozen_credits), 0)).where(tasks.c.account_id == account_id)
        ).scalar_one()
        used = conn.execute(
            sa.select(sa.func.coalesce(sa.func.sum(tasks.c.consumed_credits), 0)).where(
                tasks.c.account_id == account_id
            )
        ).scalar_one()
    assert account.balances.frozen == frozen
    assert account.balances.used == used


def test_create_freezes_price_and_complete_consumes_it(store: Store) -> None:
    acct = store.accounts.create_account("a", credits=1000)
    task = store.tasks.create(new_task(acct.account_id, 300))[0]
    assert task.status is TaskStatus.PENDING and task.frozen_credits == 300
    assert store.accounts.get(acct.account_id).balances.available == 700
    claim = store.leases.claim_next_task("w1", CAPS, 30)
    assert claim is not None and claim.task.task_id == task.task_id
    assert claim.task.status is TaskStatus.PROCESSING and claim.task.attempts == 1
    assert claim.task.started_at is not None
    store.leases.complete(task.task_id, claim.lease_id, {"image_url": "u"}, logs=["done"])
    done = store.tasks.get(acct.account_id, task.task_id)
    assert done.status is TaskStatus.COMPLETED and done.consumed_credits == 300 and done.frozen_credits == 0
    assert done.output == {"image_url": "u"} and done.logs == ["done"] and done.ended_at is not None
    assert store.accounts.get(acct.account_id).balances.used == 300
    assert_reconciles(store, acct.account_id, 1000)


def test_not_enough_credits_writes_nothing(store: Store) -> None:
    acct = store.accounts.create_account("a", credits=50)
    with pytest.raises(InsufficientCredits):
        store.tasks.create(new_task(acct.account_id, 51))[0]
    with store.engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(tasks)).scalar_one() == 0
        assert conn.execute(sa.select(sa.func.count()).select_from(ledger)).scalar_one() == 1  # the top-up
    assert store.accounts.get(acct.account_id).balances.available == 50


def test_failure_releases_credits(store: Store) -> None:
    acct = store.accounts.create_account("a", credits=1000)
    task = store.tasks.create(new_task(acct.account_id, 400))[0]
    claim = store.leases.claim_next_task("w1", CAPS, 30)
    assert claim is not None
    store.leases.fail(task.task_id, claim.lease_id, {"code": 1, "message": "m", "raw_message": "r", "detail": None})
    failed = store.tasks.get(acct.account_id, task.task_id)
    assert failed.status is TaskStatus.FAILED and failed.consumed_credits == 0 and failed.error is not None
    assert failed.error["code"] == 1
    assert store.accounts.get(acct.account_id).balances.available == 1000
    assert_reconciles(store, acct.account_id, 1000)


def test_stale_lease_cannot_complete_twice(store: Store) -> None:
    acct = store.accounts.create_account("a", credits=1000)
    task = store.tasks.create(new_task(acct.account_id))[0]
    claim = store.leases.claim_next_task("w1", CAPS, 30)
    assert claim is not None
    store.leases.complete(task.task_id, claim.lease_id, {"image_url": "u"})
    with pytest.raises(Conflict):
        store.leases.complete(task.task_id, claim.lease_id, {"image_url": "u"})
    with pytest.raises(Conflict):
        store.leases.heartbeat(task.task_id, "not-the-lease", 30)
    assert store.accounts.get(acct.account_id).balances.used == 100


def test_concurrency_limit_stages_and_promotes_in_order(store: Store) -> None:
    acct = store.accounts.create_account("a", credits=10_000, max_concurrency=2)
    made = [store.tasks.create(new_task(acct.account_id))[0] for _ in range(5)]
    assert [t.status for t in made] == [TaskStatus.PENDING] * 2 + [TaskStatus.STAGED] * 3
    claim = store.leases.claim_next_task("w1", CAPS, 30)
    assert claim is not None and claim.task.task_id == made[0].task_id
    promoted = store.leases.complete(claim.task.task_id, claim.lease_id, {})
    assert promoted == [made[2].task_id]
    store.tasks.cancel(acct.account_id, made[1].task_id)
    assert store.tasks.get(acct.account_id, made[3].task_id).status is TaskStatus.PENDING
    assert store.tasks.get(acct.account_id, made[4].task_id).status is TaskStatus.STAGED
    assert_reconciles(store, acct.account_id, 10_000)


def test_staged_limit_is_enforced(store: Store) -> None:
    store.tasks.max_staged = 2
    acct = store.accounts.create_account("a", credits=10_000, max_concurrency=1)
    for _ in range(3):
        store.tasks.create(new_task(acct.account_id))[0]
    with pytest.raises(TooManyTasks):
        store.tasks.create(new_task(acct.account_id))[0]
    assert store.accounts.get(acct.account_id).balances.frozen == 300


def test_cancel_rules_and_isolation(store: Store) -> None:
    a = store.accounts.create_account("a", credits=1000)
    b = store.accounts.create_account("b", credits=1000)
    task = store.tasks.create(new_task(a.account_id))[0]
    with pytest.raises(NotFound):
        store.tasks.get(b.account_id, task.task_id)
    with pytest.raises(NotFound):
        store.tasks.cancel(b.account_id, task.task_id)
    claim = store.leases.claim_next_task("w", CAPS, 30)
    assert claim is not None
    with pytest.raises(InvalidRequest, match="processing"):
        store.tasks.cancel(a.account_id, task.task_id)


def test_cancel_many_filters_by_time_and_family(store: Store) -> None:
    acct = store.accounts.create_account("a", credits=10_000, max_concurrency=1)
    made = [store.tasks.create(new_task(acct.account_id))[0] for _ in range(3)]
    from genmill.domain.timefmt import utcnow

    assert store.tasks.cancel_many(acct.account_id, created_before=utcnow(), model="flux") == []
    ids = store.tasks.cancel_many(acct.account_id, created_before=utcnow(), model="image-toolkit")
    assert sorted(ids) == sorted(t.task_id for t in made)
    assert store.accounts.get(acct.account_id).balances.available == 10_000
    assert_reconciles(store, acct.account_id, 10_000)


def test_expired_lease_is_requeued_then_failed_with_refund(store: Store) -> None:
    clock = ManualClock()
    store = Store(store.engine, clock=clock)  # the same database, on a clock this test steps
    acct = store.accounts.create_account("a", credits=1000)
    task = store.tasks.create(new_task(acct.account_id, 250))[0]  # max_attempts=2
    first = store.leases.claim_next_task("dead-1", CAPS, 0.05)
    assert first is not None
    assert store.leases.sweep_expired_leases().requeued == []  # the lease still runs
    clock.advance(0.1)
    sweep = store.leases.sweep_expired_leases()
    assert sweep.requeued == [task.task_id]
    requeued = store.tasks.get(acct.account_id, task.task_id)
    assert requeued.status is TaskStatus.PENDING and "requeued" in requeued.logs[-1]
    second = store.leases.claim_next_task("dead-2", CAPS, 0.05)
    assert second is not None and second.task.attempts == 2
    with pytest.raises(Conflict):  # the first worker came back too late
        store.leases.complete(task.task_id, first.lease_id, {})
    clock.advance(0.1)
    sweep = store.leases.sweep_expired_leases()
    assert sweep.failed == [task.task_id]
    failed = store.tasks.get(acct.account_id, task.task_id)
    assert failed.status is TaskStatus.FAILED and failed.error is not None and failed.error["code"] != 0
    assert store.accounts.get(acct.account_id).balances.available == 1000
    assert_reconciles(store, acct.account_id, 1000)


def test_a_heartbeat_renews_the_lease_from_the_stores_clock(store: Store) -> None:
    clock = ManualClock()
    store = Store(store.engine, clock=clock)
    acct = store.accounts.create_account("a", credits=1000)
    task = store.tasks.create(new_task(acct.account_id))[0]
    claim = store.leases.claim_next_task("w", CAPS, 10)
    assert claim is not None and claim.lease_expires_at == clock.now() + timedelta(seconds=10)
    clock.advance(8)
    assert store.leases.heartbeat(task.task_id, claim.lease_id, 10) == clock.now() + timedelta(seconds=10)
    clock.advance(8)  # past the first lease, inside the renewed one
    assert store.leases.sweep_expired_leases().requeued == []
    clock.advance(3)
    assert store.leases.sweep_expired_leases().requeued == [task.task_id]


def test_claim_only_takes_what_the_worker_can_run(store: Store) -> None:
    acct = store.accounts.create_account("a", credits=1000)
    store.tasks.create(new_task(acct.account_id))[0]
    assert store.leases.claim_next_task("w", [("Qubico/tts", "zero-shot")], 30) is None
    assert store.leases.claim_next_task("w", [], 30) is None
    assert store.leases.claim_next_task("w", CAPS, 30) is not None


def test_random_mix_reconciles(store: Store) -> None:
    rng = random.Random(42)
    total = 50_000
    acct = store.accounts.create_account("a", credits=total, max_concurrency=3)
    live: list[str] = []
    for _ in range(80):
        action = rng.random()
        if action < 0.45:
            with contextlib.suppress(InsufficientCredits, TooManyTasks):
                live.append(store.tasks.create(new_task(acct.account_id, rng.randint(0, 3000)))[0].task_id)
        elif action < 0.6 and live:
            with contextlib.suppress(InvalidRequest):
                store.tasks.cancel(acct.account_id, rng.choice(live))
        else:
            claim = store.leases.claim_next_task("w", CAPS, 30)
            if claim is not None:
                if rng.random() < 0.7:
                    store.leases.complete(claim.task.task_id, claim.lease_id, {"image_url": "u"})
                else:
                    store.leases.fail(claim.task.task_id, claim.lease_id, {"code": 1, "message": "x"})
        assert_reconciles(store, acct.account_id, total)
    page = store.tasks.history(acct.account_id, page=1, page_size=100)
    assert page.total == len(live)


def test_claims_are_fair_across_accounts(store: Store) -> None:
    busy = store.accounts.create_account("busy", credits=10_000, max_concurrency=10)
    quiet = store.accounts.create_account("quiet", credits=10_000)
    busy_tasks = [store.tasks.create(new_task(busy.account_id))[0].task_id for _ in range(5)]
    quiet_task = store.tasks.create(new_task(quiet.account_id))[0].task_id
    first = store.leases.claim_next_task("w1", CAPS, 30)
    second = store.leases.claim_next_task("w2", CAPS, 30)
    assert first is not None and second is not None
    assert first.task.task_id == busy_tasks[0]  # the oldest task overall
    assert second.task.task_id == quiet_task  # then the account with nothing processing, ahead of older tasks


def test_when_every_account_is_busy_the_least_loaded_goes_first(store: Store) -> None:
    heavy = store.accounts.create_account("heavy", credits=10_000, max_concurrency=10)
    light = store.accounts.create_account("light", credits=10_000, max_concurrency=10)
    heavy_tasks = [store.tasks.create(new_task(heavy.account_id))[0].task_id for _ in range(4)]
    light_tasks = [store.tasks.create(new_task(light.account_id))[0].task_id for _ in range(3)]
    claims = [store.leases.claim_next_task(f"w{i}", CAPS, 30) for i in range(7)]
    order = [c.task.task_id for c in claims if c is not None]
    # heavy's oldest first (nobody busy); then light (0 processing) twice until it leads 2:1, and so on: the
    # account with fewer processing tasks always goes next, each account's own tasks oldest first.
    assert order == [
        heavy_tasks[0],
        light_tasks[0],
        heavy_tasks[1],
        light_tasks[1],
        heavy_tasks[2],
        light_tasks[2],
        heavy_tasks[3],
    ]
    assert store.leases.claim_next_task("w7", CAPS, 30) is None


def test_private_pool_tasks_are_claimed_only_from_that_pool(store: Store) -> None:
    acct = store.accounts.create_account("a", credits=1000)
    private = NewTask(**{**new_task(acct.account_id).__dict__, "pool": acct.account_id})
    task = store.tasks.create(private)[0]
    assert store.leases.claim_next_task("public", CAPS, 30) is None
    claim = store.leases.claim_next_task("own", CAPS, 30, pool=acct.account_id)
    assert claim is not None and claim.task.task_id == task.task_id and claim.task.pool == acct.account_id


def test_sqlite_reads_do_not_wait_for_writers(sqlite_store: Store) -> None:
    import threading

    acct = sqlite_store.accounts.create_account("a", credits=1000)
    task = sqlite_store.tasks.create(new_task(acct.account_id))[0]
    holding, release = threading.Event(), threading.Event()

    def writer() -> None:
        with sqlite_store.tasks.tx() as conn:  # BEGIN IMMEDIATE: holds SQLite's write lock
            conn.execute(sa.update(tasks).where(tasks.c.task_id == task.task_id).values(priority=1))
            holding.set()
            release.wait(30)

    thread = threading.Thread(target=writer)
    thread.start()
    assert holding.wait(10)
    read: list[object] = []
    reader = threading.Thread(target=lambda: read.append(sqlite_store.tasks.get(acct.account_id, task.task_id)))
    reader.start()
    reader.join(5)
    finished_while_writer_held_the_lock = not reader.is_alive()
    release.set()
    thread.join(10)
    reader.join(10)
    assert finished_while_writer_held_the_lock and read
