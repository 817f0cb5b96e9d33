"""Settlement: completing consumes the frozen price, failing and cancelling release it, a held slot frees."""

from __future__ import annotations

import pytest

from genmill.domain.ledger import LedgerEntry, LedgerKind
from genmill.domain.settlement import Settlement, settle, usage_charge
from genmill.domain.states import TaskEvent, TaskStatus
from genmill.errors import IllegalTransition


def test_completion_consumes_the_frozen_price() -> None:
    assert settle(TaskStatus.PROCESSING, TaskEvent.COMPLETE, 300, "t") == Settlement(
        TaskStatus.COMPLETED, LedgerEntry(LedgerKind.CONSUME, 300, "t"), consumed=300, frees_slot=True
    )


def test_failure_releases_the_frozen_price() -> None:
    assert settle(TaskStatus.PROCESSING, TaskEvent.FAIL, 300, "t") == Settlement(
        TaskStatus.FAILED, LedgerEntry(LedgerKind.RELEASE, 300, "t"), consumed=0, frees_slot=True
    )


@pytest.mark.parametrize(("status", "frees_slot"), [(TaskStatus.PENDING, True), (TaskStatus.STAGED, False)])
def test_cancelling_releases_and_frees_a_slot_only_if_one_was_held(status: TaskStatus, frees_slot: bool) -> None:
    settlement = settle(status, TaskEvent.CANCEL, 120, "t")
    assert settlement.status is TaskStatus.CANCELLED
    assert settlement.entry == LedgerEntry(LedgerKind.RELEASE, 120, "t")
    assert settlement.consumed == 0
    assert settlement.frees_slot is frees_slot


def test_a_free_task_moves_no_credits() -> None:
    settlement = settle("processing", TaskEvent.COMPLETE, 0, "t")
    assert settlement.status is TaskStatus.COMPLETED
    assert settlement.entry is None and settlement.consumed == 0


def test_an_illegal_ending_is_refused_before_anything_is_decided() -> None:
    with pytest.raises(IllegalTransition):
        settle(TaskStatus.COMPLETED, TaskEvent.FAIL, 100, "t")
    with pytest.raises(IllegalTransition):
        settle(TaskStatus.PROCESSING, TaskEvent.CANCEL, 100, "t")


def test_events_that_do_not_end_a_task_are_not_settled() -> None:
    with pytest.raises(ValueError, match="does not end a task"):
        settle(TaskStatus.PROCESSING, TaskEvent.REQUEUE, 100, "t")


def test_completion_with_a_usage_consumes_it_and_releases_the_rest_of_the_cap() -> None:
    settlement = settle(TaskStatus.PROCESSING, TaskEvent.COMPLETE, 720_000, "t", usage_credits=36_000)
    assert settlement.status is TaskStatus.COMPLETED and settlement.consumed == 36_000
    assert settlement.entries == (
        LedgerEntry(LedgerKind.CONSUME, 36_000, "t"),
        LedgerEntry(LedgerKind.RELEASE, 684_000, "t"),
    )


def test_a_usage_never_consumes_more_than_was_frozen() -> None:
    settlement = settle(TaskStatus.PROCESSING, TaskEvent.COMPLETE, 300, "t", usage_credits=5_000)
    assert settlement.entries == (LedgerEntry(LedgerKind.CONSUME, 300, "t"),) and settlement.consumed == 300


def test_a_usage_of_nothing_releases_everything() -> None:
    settlement = settle(TaskStatus.PROCESSING, TaskEvent.COMPLETE, 300, "t", usage_credits=0)
    assert settlement.entries == (LedgerEntry(LedgerKind.RELEASE, 300, "t"),) and settlement.consumed == 0


def test_failing_and_cancelling_ignore_a_usage() -> None:
    failed = settle(TaskStatus.PROCESSING, TaskEvent.FAIL, 300, "t", usage_credits=100)
    assert failed.entries == (LedgerEntry(LedgerKind.RELEASE, 300, "t"),) and failed.consumed == 0


def test_a_negative_usage_is_refused() -> None:
    with pytest.raises(ValueError, match="never negative"):
        settle(TaskStatus.PROCESSING, TaskEvent.COMPLETE, 300, "t", usage_credits=-1)


def test_usage_is_charged_at_the_tasks_own_share_of_the_list_price() -> None:
    assert usage_charge(36_000, 720_000, 720_000) == 36_000  # public pool: the list price
    assert usage_charge(36_000, 720_000, 360_000) == 18_000  # a private pool at half the list price
    assert usage_charge(1, 3, 1) == 1  # rounded up
    assert usage_charge(36_000, 720_000, 0) == 0  # a free private pool pays nothing
    assert usage_charge(999_999, 720_000, 720_000) == 720_000  # never above the frozen price
    assert usage_charge(5, 0, 0) == 0
