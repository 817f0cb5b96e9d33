"""In-process fan-out of committed task events: wakes workers, the webhook dispatcher, and clients waiting on a task.

The store announces events only after their transaction commits (`genmill.store.base.Queries.tx`). In embedded
mode this bus is the whole story; with several replicas on PostgreSQL, LISTEN/NOTIFY feeds the same bus.

Remote workers long-poll for work (`POST /workers/claim`). A task that becomes pending wakes one of them, the one
waiting longest among those that can run it (its model and task type, its pool), not all of them: with hundreds
of idle workers, waking every one would send hundreds of claims to the database for one task, all but one of
which find nothing. A woken worker that leaves without claiming (its request was cancelled) hands its wake-up to
the next one. An event that does not say what it needs (announced by an older replica) wakes every waiter.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import threading
from collections import OrderedDict
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from genmill.domain.records import EventRef
from genmill.worker.wakeup import Wakeup

PENDING = "pending"
RECENT_PENDING = 4096
"""Pending events remembered, so that one announced twice (by this process after its commit, and again by
PostgreSQL's NOTIFY) wakes one waiter, not two."""


@dataclass(eq=False)
class PendingWaiter:
    """One long-polling worker: what it runs, and the wake-up it was given and has not yet taken."""

    loop: asyncio.AbstractEventLoop
    capabilities: frozenset[tuple[str, str]]
    pool: str
    event: asyncio.Event = field(default_factory=asyncio.Event)
    woken_by: EventRef | None = None

    def runs(self, ref: EventRef) -> bool:
        return not ref.model or ((ref.model, ref.task_type) in self.capabilities and ref.pool == self.pool)

    def take(self) -> None:
        """Called before each claim: the wake-up is used by this claim, and nobody else needs to be woken."""
        self.event.clear()
        self.woken_by = None

    async def wait(self) -> None:
        await self.event.wait()


class EventBus:
    def __init__(self) -> None:
        self.workers = Wakeup()
        self.webhooks = Wakeup()
        self._lock = threading.Lock()
        self._watchers: dict[str, set[tuple[asyncio.AbstractEventLoop, asyncio.Event]]] = {}
        self._pending: OrderedDict[int, PendingWaiter] = OrderedDict()
        self._order = itertools.count()
        self._seen: OrderedDict[int, None] = OrderedDict()

    def publish(self, events: list[EventRef]) -> None:
        pending = [e for e in events if e.status == PENDING]
        if pending:
            self.workers.notify()
        if any(e.has_delivery for e in events):
            self.webhooks.notify()
        with self._lock:
            targets = [w for e in events for w in self._watchers.get(e.task_id, ())]
            woken = [w for ref in self._first_time(pending) for w in self._choose(ref)]
        for loop, event in targets:
            _set(loop, event)
        for waiter in woken:
            _set(waiter.loop, waiter.event)

    def _first_time(self, refs: Iterable[EventRef]) -> Iterator[EventRef]:
        for ref in refs:
            if ref.event_id:
                if ref.event_id in self._seen:
                    continue
                self._seen[ref.event_id] = None
                if len(self._seen) > RECENT_PENDING:
                    self._seen.popitem(last=False)
            yield ref

    def _choose(self, ref: EventRef) -> list[PendingWaiter]:
        """The waiters `ref` wakes (under the lock): the longest-waiting one that runs it and is not woken yet;
        every waiter when `ref` does not say what it needs."""
        chosen = []
        for waiter in self._pending.values():
            if waiter.woken_by is None and waiter.runs(ref):
                waiter.woken_by = ref
                chosen.append(waiter)
                if ref.model:
                    break
        return chosen

    @contextmanager
    def watch_pending(self, capabilities: Iterable[tuple[str, str]], pool: str) -> Iterator[PendingWaiter]:
        """Wait for work: `waiter.wait()` returns once a task this worker can run became pending (call
        `waiter.take()` before each claim). A wake-up not taken when the block ends goes to the next waiter."""
        waiter = PendingWaiter(asyncio.get_running_loop(), frozenset(capabilities), pool)
        key = next(self._order)
        with self._lock:
            self._pending[key] = waiter
        try:
            yield waiter
        finally:
            with self._lock:
                del self._pending[key]
                handed = [] if waiter.woken_by is None else self._choose(waiter.woken_by)
            for other in handed:
                _set(other.loop, other.event)

    def pending_waiters(self) -> int:
        """Long-polling workers waiting now (what a diagnosis or a test asks)."""
        with self._lock:
            return len(self._pending)

    @contextmanager
    def watch(self, task_id: str) -> Iterator[asyncio.Event]:
        """An asyncio.Event set whenever the task has a new committed event; clear it after each wake-up."""
        entry = (asyncio.get_running_loop(), asyncio.Event())
        with self._lock:
            self._watchers.setdefault(task_id, set()).add(entry)
        try:
            yield entry[1]
        finally:
            with self._lock:
                watchers = self._watchers.get(task_id)
                if watchers is not None:
                    watchers.discard(entry)
                    if not watchers:
                        del self._watchers[task_id]


def _set(loop: asyncio.AbstractEventLoop, event: asyncio.Event) -> None:
    with contextlib.suppress(RuntimeError):  # the waiting loop has closed
        loop.call_soon_threadsafe(event.set)
