"""Per-account fairness of the webhook dispatcher, on SQLite and PostgreSQL: which delivery a free thread takes."""

from __future__ import annotations

from tests.support import task_with_hook

from genmill.net.fetch import GuardedFetcher, PostResult
from genmill.store import Store
from genmill.webhooks.dispatcher import WebhookDispatcher
from genmill.worker.wakeup import Wakeup


class RecordingSender(GuardedFetcher):
    """Answers every delivery with 200 at once and remembers which task each was for."""

    def __init__(self) -> None:
        super().__init__(max_bytes=1024, timeout=5)
        self.sent: list[str] = []

    def post(self, url: str, *, body: bytes, headers: dict[str, str], field: str) -> PostResult:
        self.sent.append(url.rsplit("/", 1)[-1])
        return PostResult(200, {})


def dispatcher(store: Store, *, per_account: int) -> tuple[WebhookDispatcher, RecordingSender]:
    sender = RecordingSender()
    return WebhookDispatcher(store.webhooks, sender, Wakeup(), concurrency=4, per_account=per_account), sender


def test_claims_leave_out_the_excluded_accounts(store: Store) -> None:
    a = store.accounts.create_account("a", credits=100).account_id
    b = store.accounts.create_account("b", credits=100).account_id
    task_with_hook(store, a, "a1")
    second = task_with_hook(store, b, "b1")
    claimed = store.webhooks.claim_due("d", limit=10, exclude_accounts={a})
    assert [(d.task_id, d.account_id) for d in claimed] == [(second, b)]
    assert store.webhooks.claim_due("d", limit=10, exclude_accounts={a}) == []  # B's is locked now
    assert [d.account_id for d in store.webhooks.claim_due("d", limit=10)] == [a]


def test_deferred_accounts_are_served_only_when_no_other_account_is_due(store: Store) -> None:
    a = store.accounts.create_account("a", credits=100).account_id
    b = store.accounts.create_account("b", credits=100).account_id
    task_with_hook(store, a, "a1")
    task_with_hook(store, b, "b1")
    first = store.webhooks.claim_due("d", limit=10, defer_accounts={a})
    assert [d.account_id for d in first] == [b]  # A's is older, but A is deferred
    second = store.webhooks.claim_due("d", limit=10, defer_accounts={a})
    assert [d.account_id for d in second] == [a]  # nobody else is due: A is served
    task_with_hook(store, a, "a2")
    assert store.webhooks.claim_due("d", limit=10, exclude_accounts={a}, defer_accounts={a}) == []


def test_an_account_with_nothing_in_flight_goes_before_a_busy_accounts_backlog(store: Store) -> None:
    a = store.accounts.create_account("a", credits=100).account_id
    b = store.accounts.create_account("b", credits=100).account_id
    for index in range(3):
        task_with_hook(store, a, f"a{index}")
    task_with_hook(store, b, "b0")  # due last
    hooks, sender = dispatcher(store, per_account=3)
    hooks.slots.take(a)  # one of A's deliveries is being sent by another thread
    assert hooks.run_once()
    assert sender.sent == ["b0"]
    hooks.slots.release(a)
    while hooks.run_once():
        pass
    assert sender.sent == ["b0", "a0", "a1", "a2"]


def test_an_account_at_its_limit_waits_while_others_are_served(store: Store) -> None:
    a = store.accounts.create_account("a", credits=100).account_id
    task_with_hook(store, a, "a0")
    hooks, sender = dispatcher(store, per_account=2)
    hooks.slots.take(a)
    hooks.slots.take(a)
    assert not hooks.run_once()  # A has two in flight here: its next delivery waits, though a thread is free
    assert sender.sent == []
    hooks.slots.release(a)
    assert hooks.run_once() and sender.sent == ["a0"]
    assert hooks.slots.in_flight(a) == 1  # the delivery that ended gave its slot back
