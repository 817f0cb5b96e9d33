"""Credit rules: freeze, consume, release and top-up keep the three buckets consistent."""

from __future__ import annotations

import random

import pytest

from genmill.domain.ledger import Balances, LedgerEntry, LedgerKind, apply, balances_from_ledger
from genmill.errors import InsufficientCredits


def test_freeze_then_consume_moves_price_to_used() -> None:
    b = apply(Balances(), LedgerEntry(LedgerKind.TOPUP, 1000))
    b = apply(b, LedgerEntry(LedgerKind.FREEZE, 300, "t"))
    assert b == Balances(available=700, frozen=300, used=0)
    b = apply(b, LedgerEntry(LedgerKind.CONSUME, 300, "t"))
    assert b == Balances(available=700, frozen=0, used=300)
    assert b.total == 1000


def test_release_returns_frozen_credits() -> None:
    b = Balances(available=700, frozen=300)
    assert apply(b, LedgerEntry(LedgerKind.RELEASE, 300, "t")) == Balances(available=1000)


def test_freeze_beyond_available_is_refused_with_numbers() -> None:
    with pytest.raises(InsufficientCredits) as info:
        apply(Balances(available=10), LedgerEntry(LedgerKind.FREEZE, 11, "t"))
    assert "11" in info.value.message and "10" in info.value.message


@pytest.mark.parametrize("kind", [LedgerKind.CONSUME, LedgerKind.RELEASE])
def test_cannot_move_more_than_is_frozen(kind: LedgerKind) -> None:
    with pytest.raises(ValueError):
        apply(Balances(available=100, frozen=5), LedgerEntry(kind, 6, "t"))


def test_negative_amounts_are_refused() -> None:
    with pytest.raises(ValueError):
        apply(Balances(), LedgerEntry(LedgerKind.TOPUP, -1))


def test_random_histories_always_reconcile() -> None:
    rng = random.Random(7)
    for _ in range(200):
        entries = [LedgerEntry(LedgerKind.TOPUP, rng.randint(0, 10_000))]
        b = apply(Balances(), entries[0])
        frozen_by_task: dict[int, int] = {}
        for step in range(50):
            if frozen_by_task and rng.random() < 0.5:
                task = rng.choice(list(frozen_by_task))
                kind = rng.choice([LedgerKind.CONSUME, LedgerKind.RELEASE])
                entry = LedgerEntry(kind, frozen_by_task.pop(task), str(task))
            else:
                price = rng.randint(0, 500)
                if price > b.available:
                    continue
                frozen_by_task[step] = price
                entry = LedgerEntry(LedgerKind.FREEZE, price, str(step))
            b = apply(b, entry)
            entries.append(entry)
            assert b.total == entries[0].amount
            assert b.frozen == sum(frozen_by_task.values())
        assert balances_from_ledger(entries) == b
