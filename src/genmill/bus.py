"""In-process fan-out of committed task events: wakes workers, the webhook dispatcher, and clients waiting on a task.

The store announces events only after their transaction commits (`genmill.store.base.Queries.tx`). In embedded
mode this bus is the whole story; with several replicas on PostgreSQL, LISTEN/NOTIFY feeds the same bus.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from genmill.domain.records import EventRef
from genmill.worker.wakeup import Wakeup

PENDING_WORK = "*pending*"
"""Watch this key to be woken whenever some task becomes pending (remote workers' long-polls)."""


class EventBus:
    def __init__(self) -> None:
        self.workers = Wakeup()
        self.webhooks = Wakeup()
        self._lock = threading.Lock()
        self._watchers: dict[str, set[tuple[asyncio.AbstractEventLoop, asyncio.Event]]] = {}

    def publish(self, events: list[EventRef]) -> None:
        if any(e.status == "pending" for e in events):
            self.workers.notify()
            events = [*events, EventRef(0, PENDING_WORK, "", "pending", "status", False)]
        if any(e.has_delivery for e in events):
            self.webhooks.notify()
        with self._lock:
            targets = [w for e in events for w in self._watchers.get(e.task_id, ())]
        for loop, event in targets:
            with contextlib.suppress(RuntimeError):  # the waiting loop has closed
                loop.call_soon_threadsafe(event.set)

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
