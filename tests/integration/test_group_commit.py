"""Group commit of creates against real SQLite and PostgreSQL: creates queued while a group commits share the next
transaction, and each caller still gets its own task or its own error."""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Iterator
from datetime import timedelta

import pytest
import sqlalchemy as sa
from tests.integration.test_store_tasks import assert_reconciles, new_task

from genmill.domain.records import Idempotency, NewTask
from genmill.domain.states import TaskStatus
from genmill.errors import InsufficientCredits
from genmill.store import Store
from genmill.store.group_commit import Created, GroupCommit


@pytest.fixture
def grouped(store: Store) -> Iterator[Store]:
    """The same database, through a store whose creates are grouped."""
    other = Store(store.engine, group_commit=True)
    yield other


class HeldFirstGroup:
    """Holds the first group inside its transaction until `waiting` more creates have queued behind it, so that
    the next group is known to hold them all (no timing involved)."""

    def __init__(self, group: GroupCommit, waiting: int) -> None:
        self.group = group
        self.waiting = waiting
        self.real = group.create_in
        self.first = True
        group.create_in = self

    def __call__(self, conn: sa.Connection, new: NewTask, idempotency: Idempotency | None) -> Created:
        if self.first:
            self.first = False
            for _ in range(10_000):  # at most about 10 s, should a create never queue
                if self.group.queued() >= self.waiting:
                    break
                threading.Event().wait(0.001)
        if new.input.get("explode"):
            raise RuntimeError("this create breaks its transaction")
        return self.real(conn, new, idempotency)


def run_all(store: Store, news: list[NewTask], held: HeldFirstGroup) -> list[Created | BaseException]:
    results: list[Created | BaseException] = [RuntimeError("not run")] * len(news)

    def one(i: int) -> None:
        try:
            results[i] = store.tasks.create(news[i])
        except Exception as exc:
            results[i] = exc

    first = threading.Thread(target=one, args=(0,))
    first.start()
    while held.first:  # the first group has started: the rest queue behind it
        threading.Event().wait(0.001)
    rest = [threading.Thread(target=one, args=(i,)) for i in range(1, len(news))]
    for t in rest:
        t.start()
    for t in [first, *rest]:
        t.join()
    return results


def test_queued_creates_share_one_commit_and_a_refusal_stays_its_own(grouped: Store) -> None:
    rich = grouped.accounts.create_account("rich", credits=1_000, max_concurrency=10)
    poor = grouped.accounts.create_account("poor", credits=50)
    assert grouped.tasks.group_commit is not None
    held = HeldFirstGroup(grouped.tasks.group_commit, waiting=4)
    news = [new_task(rich.account_id), new_task(rich.account_id), new_task(poor.account_id)]
    news += [new_task(rich.account_id), new_task(rich.account_id)]
    results = run_all(grouped, news, held)
    assert grouped.tasks.group_commit.groups == 2  # the first alone, then the four queued behind it together
    assert isinstance(results[2], InsufficientCredits)
    created = [r for i, r in enumerate(results) if i != 2]
    assert all(isinstance(r, tuple) and r[1] is False for r in created)
    ids = {r[0].task_id for r in created if isinstance(r, tuple)}
    assert len(ids) == 4
    assert [t.status for t in grouped.tasks.active(rich.account_id)] == [TaskStatus.PENDING] * 4
    assert grouped.tasks.active(poor.account_id) == []
    assert_reconciles(grouped, rich.account_id, 1_000)
    assert_reconciles(grouped, poor.account_id, 50)


def test_a_create_that_breaks_the_group_fails_alone(grouped: Store) -> None:
    acct = grouped.accounts.create_account("a", credits=1_000, max_concurrency=10)
    assert grouped.tasks.group_commit is not None
    held = HeldFirstGroup(grouped.tasks.group_commit, waiting=2)
    broken = dataclasses.replace(new_task(acct.account_id), input={"explode": True})
    results = run_all(grouped, [new_task(acct.account_id), new_task(acct.account_id), broken], held)
    assert isinstance(results[2], RuntimeError)
    assert isinstance(results[0], tuple) and isinstance(results[1], tuple)
    assert len(grouped.tasks.active(acct.account_id)) == 2
    assert_reconciles(grouped, acct.account_id, 1_000)


def test_a_lone_create_commits_at_once_and_repeats_replay(grouped: Store) -> None:
    acct = grouped.accounts.create_account("a", credits=1_000)
    key = Idempotency(key="k1", request_hash="h1", ttl=timedelta(hours=1))
    task, replayed = grouped.tasks.create(new_task(acct.account_id), idempotency=key)
    again, replayed_again = grouped.tasks.create(new_task(acct.account_id), idempotency=key)
    assert (replayed, replayed_again) == (False, True) and again.task_id == task.task_id
    assert grouped.tasks.group_commit is not None and grouped.tasks.group_commit.groups == 2
    assert_reconciles(grouped, acct.account_id, 1_000)
