"""The time the store writes and compares against: real UTC in service, stepped by hand in tests.

Every `now` a store query uses (created and ended times, lease expiries, webhook schedules) comes from the
`Clock` the `Store` was built with, as a bound parameter, never from the database's own `now()`; so SQLite and
PostgreSQL agree, and a test of lease expiry advances a `ManualClock` instead of sleeping past the lease.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from typing import Protocol

from genmill.domain.timefmt import utcnow


class Clock(Protocol):
    def now(self) -> datetime:
        """The current time, timezone-aware UTC."""
        ...


class SystemClock:
    """The real time."""

    def now(self) -> datetime:
        return utcnow()


SYSTEM_CLOCK = SystemClock()


class ManualClock:
    """A clock that stands still until told to move, for tests of anything that expires.

    It starts at the real time (so rows it stamps sort sensibly among others) unless given a start. Time only
    moves by `advance`, so rows written between two advances share one timestamp.
    """

    def __init__(self, start: datetime | None = None) -> None:
        self._now = start if start is not None else datetime.now(UTC)
        self._lock = threading.Lock()

    def now(self) -> datetime:
        with self._lock:
            return self._now

    def advance(self, seconds: float) -> datetime:
        """Move time forward (never back) by `seconds`; returns the new time."""
        if seconds < 0:
            raise ValueError("a clock does not go back")
        with self._lock:
            self._now += timedelta(seconds=seconds)
            return self._now
