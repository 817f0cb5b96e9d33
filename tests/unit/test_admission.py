"""Admission: a new task starts pending while a slot is free, is staged up to the limit, and is refused past it."""

from __future__ import annotations

import pytest

from genmill.domain.admission import free_slots, staged_admission, starts_pending
from genmill.domain.states import TaskStatus
from genmill.errors import TooManyTasks


def test_a_task_starts_pending_only_below_the_concurrency_limit() -> None:
    assert starts_pending(active=0, max_concurrency=1)
    assert starts_pending(active=4, max_concurrency=5)
    assert not starts_pending(active=5, max_concurrency=5)
    assert not starts_pending(active=7, max_concurrency=5)  # the limit was lowered below what runs


def test_free_slots_never_go_below_zero() -> None:
    assert free_slots(5, 2) == 3
    assert free_slots(5, 5) == 0
    assert free_slots(2, 5) == 0


def test_a_task_without_a_slot_is_staged_below_the_staged_limit() -> None:
    assert staged_admission(0, 50) is TaskStatus.STAGED
    assert staged_admission(49, 50) is TaskStatus.STAGED


def test_a_full_staged_queue_refuses_with_its_numbers() -> None:
    with pytest.raises(TooManyTasks) as info:
        staged_admission(50, 50)
    assert info.value.status_code == 429
    assert info.value.message == ("the account already has 50 staged tasks (the limit is 50); wait for some to finish")
    assert info.value.detail == {"staged_count": 50, "limit": 50}
