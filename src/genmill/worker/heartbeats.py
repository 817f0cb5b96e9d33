"""One heartbeat thread per worker, renewing the lease of every task the worker is running.

A thread started and joined for each task cost more than a no-op task itself; the leases only need renewing
every `heartbeat_seconds`, so one long-lived thread keeps a schedule of the running claims instead. Each beat
also carries the logs and progress the backend buffered since the last one.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, Protocol

from genmill.domain.records import Claim
from genmill.errors import Conflict

log = logging.getLogger("genmill.worker")


class Beating(Protocol):
    """What a running task offers its heartbeat: its buffered logs and progress, and a flag for a lost lease."""

    lost: threading.Event

    def drain(self) -> tuple[list[str], dict[str, Any] | None]: ...


Beat = Callable[[Claim, list[str], dict[str, Any] | None], object]
"""Sends one heartbeat (the transport's `heartbeat` with the lease length bound); raises Conflict when the
lease is no longer this worker's."""


class Heartbeats:
    def __init__(self, beat: Beat, interval: float, *, name: str = "genmill-heartbeat") -> None:
        self._beat = beat
        self._interval = interval
        self._name = name
        self._cond = threading.Condition()
        self._due: dict[str, tuple[float, Claim, Beating]] = {}
        self._beating: str | None = None
        self._thread: threading.Thread | None = None
        self._closed = False

    @contextmanager
    def watch(self, claim: Claim, ctx: Beating, *, first_beat: float | None = None) -> Iterator[None]:
        """Keep `claim`'s lease alive while the block runs; the first beat comes after `first_beat` seconds (the
        interval when None), so that what a task says at its start (what runs it) shows while it runs.

        On leaving, waits for a beat of this claim that is in flight, so that no heartbeat (and none of the logs
        it drained) can land after the caller settles the task.
        """
        task_id = claim.task.task_id
        first = self._interval if first_beat is None else min(first_beat, self._interval)
        with self._cond:
            self._due[task_id] = (time.monotonic() + first, claim, ctx)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
                self._thread.start()
            self._cond.notify()
        try:
            yield
        finally:
            with self._cond:
                self._due.pop(task_id, None)
                while self._beating == task_id:
                    self._cond.wait()

    def close(self) -> None:
        """Stop the thread (after the beat in flight, if any)."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
            thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._closed:
                    now = time.monotonic()
                    due = [(at, task_id) for task_id, (at, _, _) in self._due.items()]
                    soonest = min(due, default=None)
                    if soonest is not None and soonest[0] <= now:
                        break
                    self._cond.wait(None if soonest is None else soonest[0] - now)
                if self._closed:
                    return
                task_id = soonest[1]  # type: ignore[index]  # set by the loop that just broke out
                _, claim, ctx = self._due[task_id]
                self._due[task_id] = (now + self._interval, claim, ctx)
                self._beating = task_id
            try:
                self._send(claim, ctx)
            finally:
                with self._cond:
                    self._beating = None
                    self._cond.notify_all()

    def _send(self, claim: Claim, ctx: Beating) -> None:
        logs, detail = ctx.drain()
        try:
            self._beat(claim, logs, detail)
        except Conflict:
            ctx.lost.set()
            with self._cond:
                self._due.pop(claim.task.task_id, None)
        except Exception:
            log.exception("task %s: heartbeat failed; will retry", claim.task.task_id)
