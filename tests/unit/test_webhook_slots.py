"""AccountSlots: how many deliveries of each account this process's senders hold, and who may start one."""

from __future__ import annotations

import pytest

from genmill.webhooks.slots import AccountSlots, default_per_account


@pytest.mark.parametrize(("concurrency", "expected"), [(1, 1), (2, 1), (4, 3), (16, 15)])
def test_one_thread_is_left_for_the_other_accounts(concurrency: int, expected: int) -> None:
    assert default_per_account(concurrency) == expected


def test_busy_and_full_follow_takes_and_releases() -> None:
    slots = AccountSlots(2)
    assert slots.busy() == frozenset() and slots.full() == frozenset()
    slots.take("a")
    slots.take("b")
    assert slots.busy() == {"a", "b"} and slots.full() == frozenset()
    slots.take("a")
    assert slots.full() == {"a"} and slots.in_flight("a") == 2
    slots.release("a")
    slots.release("b")
    assert slots.busy() == {"a"} and slots.full() == frozenset() and slots.in_flight("b") == 0


def test_a_limit_below_one_is_refused() -> None:
    with pytest.raises(ValueError):
        AccountSlots(0)
