"""In-process wake-ups: the embedded mode's stand-in for PostgreSQL LISTEN/NOTIFY.

Workers block on `wait()` instead of sleep-polling; the API notifies after it commits a new pending task, and
the worker notifies after a completion promotes staged tasks. A generation counter means a notify that lands
between a worker's empty claim and its wait is not lost.
"""

from __future__ import annotations

import threading


class Wakeup:
    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._generation = 0

    @property
    def generation(self) -> int:
        with self._cond:
            return self._generation

    def notify(self) -> None:
        with self._cond:
            self._generation += 1
            self._cond.notify_all()

    def wait(self, seen: int, timeout: float) -> bool:
        """Block until the generation moves past `seen` or `timeout` passes; True if woken."""
        with self._cond:
            return self._cond.wait_for(lambda: self._generation != seen, timeout=timeout)
