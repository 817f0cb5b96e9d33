"""Clocks: the store's time is real UTC in service and stepped by hand in tests."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from genmill.domain.clock import SYSTEM_CLOCK, ManualClock


def test_the_system_clock_is_aware_utc_now() -> None:
    before = datetime.now(UTC)
    now = SYSTEM_CLOCK.now()
    assert now.tzinfo is not None and now.utcoffset() == timedelta(0)
    assert before <= now <= datetime.now(UTC)


def test_a_manual_clock_stands_still_until_advanced() -> None:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    clock = ManualClock(start)
    assert clock.now() == clock.now() == start
    assert clock.advance(1.5) == start + timedelta(seconds=1.5)
    assert clock.now() == start + timedelta(seconds=1.5)


def test_a_manual_clock_starts_at_the_real_time_and_never_goes_back() -> None:
    before = datetime.now(UTC)
    clock = ManualClock()
    assert before <= clock.now() <= datetime.now(UTC)
    with pytest.raises(ValueError):
        clock.advance(-1)
