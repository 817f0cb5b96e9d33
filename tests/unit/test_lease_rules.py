"""Lease rules: only the current lease holds a processing task; an expired one requeues or fails the task."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from genmill.domain.failures import FailureCode, TaskFailure
from genmill.domain.leases import expire_lease, holds_lease, lease_ends_at
from genmill.domain.states import TaskEvent, TaskStatus
from genmill.errors import IllegalTransition


def test_a_lease_ends_its_length_after_it_was_taken() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    assert lease_ends_at(now, 30) == now + timedelta(seconds=30)
    assert lease_ends_at(now, 0.25) == now + timedelta(milliseconds=250)


def test_only_the_current_lease_of_a_processing_task_holds_it() -> None:
    assert holds_lease(TaskStatus.PROCESSING, "l1", "l1")
    assert holds_lease("processing", "l1", "l1")
    assert not holds_lease(TaskStatus.PROCESSING, "l2", "l1")  # requeued and claimed again
    assert not holds_lease(TaskStatus.PENDING, None, "l1")  # requeued
    assert not holds_lease(TaskStatus.COMPLETED, None, "l1")


def test_an_expired_lease_with_attempts_left_requeues() -> None:
    expiry = expire_lease(TaskStatus.PROCESSING, attempts=1, max_attempts=2, worker_id="w-1")
    assert expiry.event is TaskEvent.REQUEUE and expiry.status is TaskStatus.PENDING
    assert expiry.log_line == "lease expired on attempt 1 (worker w-1); requeued"
    assert expiry.failure is None


def test_an_expired_lease_on_the_last_attempt_fails_as_a_lost_worker() -> None:
    expiry = expire_lease(TaskStatus.PROCESSING, attempts=2, max_attempts=2, worker_id="w-2")
    assert expiry.event is TaskEvent.FAIL and expiry.status is TaskStatus.FAILED
    assert expiry.log_line == "lease expired on attempt 2; no attempts left, credits released"
    assert expiry.failure == TaskFailure(
        FailureCode.WORKER_LOST, "the worker stopped responding on each of 2 attempts", "lease expired (worker w-2)"
    )


def test_only_a_processing_task_has_a_lease_to_expire() -> None:
    with pytest.raises(IllegalTransition):
        expire_lease(TaskStatus.PENDING, attempts=1, max_attempts=3, worker_id=None)
