"""Webhook deliveries on SQLite and PostgreSQL: written with the change, claimed once, in order per task."""

from __future__ import annotations

import threading

from tests.support import task_with_hook

from genmill.domain.timefmt import utcnow
from genmill.domain.webhooks import Decision, DeliveryState
from genmill.store import Store
from genmill.store.tables import webhook_deliveries

CAPS = [("Qubico/image-toolkit", "upscale")]


def test_deliveries_follow_each_change_in_order(store: Store) -> None:
    account = store.accounts.create_account("a", credits=100)
    task_id = task_with_hook(store, account.account_id)
    claim = store.leases.claim_next_task("w", CAPS, 30)
    assert claim is not None
    store.leases.complete(task_id, claim.lease_id, {"image_url": "u"})
    listed = store.webhooks.for_task(account.account_id, task_id)
    assert [item["row"].task_status for item in listed] == ["pending", "processing", "completed"]
    first = store.webhooks.claim_due("d1", limit=10)
    assert [d.snapshot["status"] for d in first] == ["pending"]  # later events wait behind the first
    assert store.webhooks.claim_due("d2", limit=10) == []  # the first is locked by d1
    store.webhooks.record_attempt(
        first[0].delivery_id,
        status_code=200,
        latency_ms=3,
        error=None,
        decision=Decision(DeliveryState.DELIVERED),
        at=utcnow(),
    )
    second = store.webhooks.claim_due("d2", limit=10)
    assert [d.snapshot["status"] for d in second] == ["processing"]
    assert second[0].task_secret == "s" and second[0].signing_secret.startswith("whsec_")


def test_concurrent_dispatchers_never_claim_the_same_delivery(store: Store) -> None:
    account = store.accounts.create_account("a", credits=1000)
    for _ in range(40):
        task_with_hook(store, account.account_id)
    claimed: list[str] = []
    lock = threading.Lock()

    def dispatcher(name: str) -> None:
        while True:
            got = store.webhooks.claim_due(name, limit=3)
            if not got:
                return
            with lock:
                claimed.extend(d.delivery_id for d in got)

    threads = [threading.Thread(target=dispatcher, args=(f"d{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(claimed) == 40 and len(set(claimed)) == 40


def test_promotion_from_staged_is_an_event(store: Store) -> None:
    account = store.accounts.create_account("a", credits=100, max_concurrency=1)
    first = task_with_hook(store, account.account_id)
    second = task_with_hook(store, account.account_id)
    store.tasks.cancel(account.account_id, first)
    statuses = [item["row"].task_status for item in store.webhooks.for_task(account.account_id, second)]
    assert statuses == ["staged", "pending"]


def test_pruning_removes_settled_deliveries_and_their_events(store: Store) -> None:
    from datetime import timedelta

    import pytest

    from genmill.errors import NotFound

    account = store.accounts.create_account("a", credits=100)
    task_id = task_with_hook(store, account.account_id)
    due = store.webhooks.claim_due("d", limit=1)
    store.webhooks.record_attempt(
        due[0].delivery_id,
        status_code=200,
        latency_ms=1,
        error=None,
        decision=Decision(DeliveryState.DELIVERED),
        at=utcnow(),
    )
    store.events.prune(utcnow() + timedelta(seconds=1))
    assert store.webhooks.for_task(account.account_id, task_id) == []
    assert store.events.events_after(task_id) == []
    with pytest.raises(NotFound):
        store.webhooks.replay(account.account_id, task_id, due[0].delivery_id)


def test_a_replay_starts_the_retry_schedule_afresh_and_keeps_the_history(store: Store) -> None:
    """docs/webhooks.md: a replayed `exhausted` delivery is retried on the whole schedule, not tried once."""
    from genmill.domain.webhooks import RETRY_SCHEDULE, decide

    account = store.accounts.create_account("a", credits=100)
    task_id = task_with_hook(store, account.account_id)
    delivery_id = ""
    for attempt in range(1, len(RETRY_SCHEDULE) + 2):
        due = store.webhooks.claim_due("d", limit=1)
        assert due and due[0].attempts == attempt - 1
        delivery_id = due[0].delivery_id
        decision = decide(503, attempt)
        store.webhooks.record_attempt(
            delivery_id, status_code=503, latency_ms=1, error="HTTP 503", decision=decision, at=utcnow()
        )
        if decision.state is DeliveryState.PENDING:
            with store.engine.begin() as conn:  # make the retry due now instead of hours from now
                conn.execute(
                    webhook_deliveries.update()
                    .where(webhook_deliveries.c.delivery_id == delivery_id)
                    .values(next_attempt_at=utcnow())
                )
    assert decision.state is DeliveryState.EXHAUSTED
    store.webhooks.replay(account.account_id, task_id, delivery_id)
    again = store.webhooks.claim_due("d", limit=1)
    assert [d.delivery_id for d in again] == [delivery_id] and again[0].attempts == 0
    assert decide(503, again[0].attempts + 1).state is DeliveryState.PENDING  # a failed replay is retried
    listed = store.webhooks.for_task(account.account_id, task_id)[0]
    assert listed["row"].attempts == 0 and len(listed["attempts"]) == len(RETRY_SCHEDULE) + 1
