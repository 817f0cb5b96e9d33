"""The embedded mode's worker pool and reaper, run as daemon threads beside the ASGI server.

Model code runs in these threads, never on the event loop. The reaper requeues tasks whose lease expired (a
worker that died), fails queued tasks that waited past their limit with no worker, promotes staged tasks a crash
left behind, and deletes expired files.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from datetime import timedelta

from genmill.domain.timefmt import utcnow
from genmill.storage.files import FileService
from genmill.store import Store
from genmill.store.waits import WaitSweep
from genmill.worker.runtime import Worker
from genmill.worker.wakeup import Wakeup

log = logging.getLogger("genmill.worker")


class Reaper:
    def __init__(
        self,
        store: Store,
        files: FileService,
        *,
        retain_events: timedelta = timedelta(days=7),
        expire_waits: Callable[[], WaitSweep] | None = None,
        remember_workers: timedelta | None = None,
    ) -> None:
        """`expire_waits` fails queued tasks that waited too long for a worker (`ServedEntries.expire_waits`);
        registered workers are forgotten `remember_workers` after they were last seen (default: with the events),
        never sooner than the "served recently" window needs them."""
        self.store = store
        self.files = files
        self.retain_events = retain_events
        self.expire_waits = expire_waits
        self.remember_workers = remember_workers or retain_events

    def sweep(self) -> None:
        result = self.store.leases.sweep_expired_leases()
        waits = self.expire_waits() if self.expire_waits is not None else WaitSweep()
        deleted = self.files.reap()
        self.store.events.prune(utcnow() - self.retain_events)
        self.store.workers.forget_idle(self.remember_workers)
        if result.requeued or result.failed or deleted:
            log.info(
                "reaper: requeued %d, failed %d, promoted %d, deleted %d files",
                len(result.requeued),
                len(result.failed),
                len(result.promoted),
                len(deleted),
            )
        if waits.failed:
            log.warning(
                "reaper: %d queued tasks waited past their limit with no worker and failed (10004), promoted %d",
                len(waits.failed),
                len(waits.promoted),
            )


class WorkerPool:
    def __init__(self, workers: list[Worker], reaper: Reaper, wakeup: Wakeup, *, reaper_seconds: float) -> None:
        self.workers = workers
        self.wakeup = wakeup
        self.reaper = reaper
        self.reaper_seconds = reaper_seconds
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        for worker in self.workers:
            thread = threading.Thread(target=worker.run_forever, args=(self._stop,), name=worker.worker_id, daemon=True)
            thread.start()
            self._threads.append(thread)
        thread = threading.Thread(target=self._reap_forever, name="genmill-reaper", daemon=True)
        thread.start()
        self._threads.append(thread)

    def _reap_forever(self) -> None:
        while not self._stop.is_set():
            try:
                self.reaper.sweep()
            except Exception:
                log.exception("reaper sweep failed")
            self._stop.wait(self.reaper_seconds)

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self.wakeup.notify()
        for thread in self._threads:
            thread.join(timeout)


def worker_id(index: int) -> str:
    return f"local-{os.getpid()}-{index}"
