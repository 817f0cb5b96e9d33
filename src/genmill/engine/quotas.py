"""Per-key request rates, per-account free-task rates and open streams, and the size of a task's input.

Everything here is in the memory of one server process: N replicas behind a balancer let a key make N times the
configured rate, and an account hold N times the streams (docs/deploy.md says so). That keeps every check off
the database, which is what a flood would otherwise hit first. The rules themselves are pure
(`genmill.domain.quotas`); this module only keeps the buckets and counters, safely across threads.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from genmill.domain.quotas import (
    Bucket,
    Rate,
    check_input_size,
    full_bucket,
    is_full,
    rate_limited,
    stored_json_bytes,
    streams_refused,
    take,
)

PRUNE_AT = 10_000
"""Buckets kept before the full ones (those nobody used lately) are forgotten."""

UNLIMITED = Rate(0, 0)

STREAM_RETRY_AFTER = 5
"""Seconds a client refused one more stream is told to wait: streams end with their task, not on a schedule."""


class RateLimiter:
    """One token bucket per key (an API key, an account) for one `Rate`; `check` raises `RateLimited` (429)."""

    def __init__(self, rate: Rate, what: str, per: str, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate
        self.what = what
        self.per = per
        self._clock = clock
        self._buckets: dict[str, Bucket] = {}
        self._lock = threading.Lock()

    def check(self, key: str) -> None:
        """Take one token for `key`, or raise `RateLimited` saying when to retry."""
        if self.rate.unlimited:
            return
        now = self._clock()
        with self._lock:
            bucket = self._buckets.get(key)
            if bucket is None:
                if len(self._buckets) >= PRUNE_AT:
                    self._prune(now)
                bucket = self._buckets[key] = full_bucket(self.rate, now)
            wait = take(bucket, self.rate, now)
        if wait > 0:
            raise rate_limited(self.what, self.rate, self.per, wait)

    def _prune(self, now: float) -> None:
        """Forget full buckets: a key that comes back gets a full one anyway. Only keys that were refused or
        used in the last burst/rate seconds stay, so memory follows the keys in use, not every key ever seen."""
        for key in [k for k, b in self._buckets.items() if is_full(b, self.rate, now)]:
            del self._buckets[key]


class StreamSlots:
    """How many event streams and `Prefer: wait` requests each account holds open on this process."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        """At most this many per account; 0 is no limit."""
        self._open: dict[str, int] = {}
        self._lock = threading.Lock()

    def open_count(self, account_id: str) -> int:
        with self._lock:
            return self._open.get(account_id, 0)

    def acquire(self, account_id: str) -> StreamSlot:
        """One slot for the account, or `RateLimited` (429) when it holds the limit already."""
        with self._lock:
            held = self._open.get(account_id, 0)
            if self.limit > 0 and held >= self.limit:
                raise streams_refused(held, self.limit, STREAM_RETRY_AFTER)
            self._open[account_id] = held + 1
        return StreamSlot(self, account_id)

    @contextmanager
    def hold(self, account_id: str) -> Iterator[StreamSlot]:
        slot = self.acquire(account_id)
        try:
            yield slot
        finally:
            slot.release()

    def _release(self, account_id: str) -> None:
        with self._lock:
            held = self._open.get(account_id, 0) - 1
            if held > 0:
                self._open[account_id] = held
            else:
                self._open.pop(account_id, None)


class StreamSlot:
    """A held slot; `release` gives it back once, however many times it is called."""

    def __init__(self, slots: StreamSlots, account_id: str) -> None:
        self._slots = slots
        self._account_id = account_id
        self._released = False

    def release(self) -> None:
        if not self._released:
            self._released = True
            self._slots._release(self._account_id)


@dataclass(frozen=True)
class QuotaSettings:
    """The limits, as the operator set them (`GENMILL_RATE_LIMIT_*`, `GENMILL_MAX_TASK_INPUT_BYTES`, ...)."""

    creates: Rate = UNLIMITED
    reads: Rate = UNLIMITED
    free_tasks: Rate = UNLIMITED
    max_task_input_bytes: int = 0
    max_streams_per_account: int = 0


class Quotas:
    """Every limit on use, for one server process: built once by the composition root, shared by the API
    (request rates, streams) and the task engine (input size, free tasks)."""

    def __init__(self, limits: QuotaSettings | None = None, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.limits = limits = limits or QuotaSettings()
        self.creates = RateLimiter(limits.creates, "task creates and uploads", "API key", clock=clock)
        self.reads = RateLimiter(limits.reads, "requests", "API key", clock=clock)
        self.free_tasks = RateLimiter(limits.free_tasks, "free tasks", "account", clock=clock)
        self.streams = StreamSlots(limits.max_streams_per_account)

    def admit_task(self, account_id: str, stored_input: Any, *, free: bool) -> None:
        """Refuse a task before anything is stored: an input over the size limit (413), or a free task past the
        account's free-task rate (429)."""
        check_input_size(stored_json_bytes(stored_input), self.limits.max_task_input_bytes)
        if free:
            self.free_tasks.check(account_id)
