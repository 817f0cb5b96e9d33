"""`genmill.store.pg_create.decide`: the domain decides again on the facts PostgreSQL's create function saw, gives
the client the domain's refusal, and catches a function that decided otherwise."""

from __future__ import annotations

import pytest

from genmill.domain.ledger import Balances
from genmill.domain.records import NewTask
from genmill.domain.states import TaskStatus
from genmill.errors import Forbidden, InsufficientCredits, NotFound, TooManyTasks
from genmill.store.pg_create import Admission, AdmissionDisagreement, decide

NEW = NewTask(
    account_id="a1",
    model="genmill/echo",
    task_type="echo",
    family="echo",
    input={},
    config={},
    price=100,
    service_mode="",
    retention_seconds=60,
)


def facts(
    outcome: str,
    status: str | None = None,
    *,
    enabled: bool = True,
    active: int = 0,
    staged: int | None = None,
    available: int = 1000,
    event_id: int | None = None,
) -> Admission:
    return Admission(
        outcome=outcome,
        status=status,
        is_enabled=enabled,
        max_concurrency=2,
        active=active,
        staged=staged,
        balances=Balances(available=available),
        event_id=event_id,
    )


def test_an_admitted_task_gets_the_status_the_domain_gives() -> None:
    assert decide(facts("admitted", "pending", active=1, event_id=7), NEW, 5) is TaskStatus.PENDING
    assert decide(facts("admitted", "staged", active=2, staged=4, event_id=7), NEW, 5) is TaskStatus.STAGED


def test_a_replay_is_left_to_the_caller() -> None:
    assert decide(facts("replay"), NEW, 5) is None


def test_refusals_are_the_domains_own_errors() -> None:
    with pytest.raises(NotFound, match="account a1 not found"):
        decide(Admission("no_account", None, None, None, None, None, None, None), NEW, 5)
    with pytest.raises(Forbidden, match="disabled"):
        decide(facts("disabled", enabled=False), NEW, 5)
    with pytest.raises(TooManyTasks) as too_many:
        decide(facts("too_many", active=2, staged=5), NEW, 5)
    assert too_many.value.detail == {"staged_count": 5, "limit": 5}
    with pytest.raises(InsufficientCredits) as short:
        decide(facts("insufficient", active=0, available=99), NEW, 5)
    assert short.value.detail == {"price": 100, "available_credits": 99}


@pytest.mark.parametrize(
    "admission",
    [
        facts("admitted", "pending", active=2, staged=0, event_id=7),  # the domain stages it: no slot free
        facts("admitted", "staged", active=1, event_id=7),  # the domain gives it a slot
        facts("admitted", "pending", active=0, available=50, event_id=7),  # the price is more than is available
        facts("admitted", "pending", enabled=False, event_id=7),  # a disabled account creates nothing
        facts("admitted", "pending", active=0),  # admitted, but no event was written
        facts("insufficient", active=0, available=500),  # the domain has enough credits
        facts("too_many", active=2, staged=3),  # the domain has room among the staged
        facts("disabled"),  # enabled, by the facts
    ],
)
def test_a_function_that_decided_otherwise_is_caught(admission: Admission) -> None:
    with pytest.raises(AdmissionDisagreement, match="genmill db upgrade"):
        decide(admission, NEW, 5)
