"""The task state machine allows exactly the documented transitions."""

from __future__ import annotations

import itertools

import pytest

from genmill.domain.states import TERMINAL, TaskEvent, TaskStatus, can, cancel_refusal, transition
from genmill.errors import IllegalTransition

ALLOWED = {
    (TaskStatus.STAGED, TaskEvent.PROMOTE): TaskStatus.PENDING,
    (TaskStatus.STAGED, TaskEvent.CANCEL): TaskStatus.CANCELLED,
    (TaskStatus.PENDING, TaskEvent.CLAIM): TaskStatus.PROCESSING,
    (TaskStatus.PENDING, TaskEvent.CANCEL): TaskStatus.CANCELLED,
    (TaskStatus.PENDING, TaskEvent.EXPIRE): TaskStatus.FAILED,
    (TaskStatus.PROCESSING, TaskEvent.COMPLETE): TaskStatus.COMPLETED,
    (TaskStatus.PROCESSING, TaskEvent.FAIL): TaskStatus.FAILED,
    (TaskStatus.PROCESSING, TaskEvent.REQUEUE): TaskStatus.PENDING,
}


@pytest.mark.parametrize(("status", "event"), list(itertools.product(TaskStatus, TaskEvent)))
def test_every_pair_is_either_allowed_or_refused(status: TaskStatus, event: TaskEvent) -> None:
    if (status, event) in ALLOWED:
        assert transition(status, event) is ALLOWED[(status, event)]
        assert can(status, event)
    else:
        with pytest.raises(IllegalTransition) as info:
            transition(status, event)
        assert status.value in info.value.message
        assert not can(status, event)


def test_terminal_states_have_no_way_out() -> None:
    for status, event in itertools.product(TERMINAL, TaskEvent):
        assert not can(status, event)


def test_statuses_are_lowercase_wire_names() -> None:
    assert {s.value for s in TaskStatus} == {
        "pending",
        "processing",
        "completed",
        "failed",
        "staged",
        "cancelled",
    }


def test_only_pending_and_processing_hold_a_concurrency_slot() -> None:
    assert {s for s in TaskStatus if s.is_active} == {TaskStatus.PENDING, TaskStatus.PROCESSING}


def test_cancel_refusal_explains_why() -> None:
    assert cancel_refusal("pending") is None
    assert cancel_refusal("staged") is None
    assert "processing" in (cancel_refusal("processing") or "")
    assert "completed" in (cancel_refusal("completed") or "")
