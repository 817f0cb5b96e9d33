"""What this deployment can run right now, per pool: this process's backends and recently seen remote workers.

Creating a task asks this first, so that an entry nobody can run is refused (400, no credits frozen) instead of
waiting forever. The remote half is one registry query, cached for a second per pool: a burst of creates costs
one query, and a miss is asked again at once so that a worker that registered a moment ago counts.
"""

from __future__ import annotations

import time
from datetime import timedelta

from genmill.domain.catalog import CatalogEntry, TaskInput
from genmill.domain.serving import Entry, entries_served, runs_in_process
from genmill.domain.timefmt import utcnow
from genmill.store.workers import WorkerRegistry
from genmill.worker.backendset import BackendSet

REMOTE_CACHE_SECONDS = 1.0


class ServedEntries:
    def __init__(
        self,
        registry: WorkerRegistry,
        backends: BackendSet,
        *,
        runs_workers: bool,
        worker_seen_seconds: float,
    ) -> None:
        """`backends` are this process's; they run tasks only when `runs_workers` (in-process worker threads)."""
        self.registry = registry
        self.backends = backends
        self.runs_workers = runs_workers
        self.worker_seen_seconds = worker_seen_seconds
        self._remote: dict[str, tuple[float, set[Entry]]] = {}

    def entries(self, pool: str, *, fresh: bool = False) -> set[Entry]:
        """Entries some worker can run for `pool` (remote registrations read at most once a second unless
        `fresh`)."""
        now = time.monotonic()
        cached = self._remote.get(pool)
        if fresh or cached is None or now - cached[0] > REMOTE_CACHE_SECONDS:
            since = utcnow() - timedelta(seconds=self.worker_seen_seconds)
            cached = (now, self.registry.served(pool, since))
            self._remote[pool] = cached
        return entries_served(
            pool, in_process=self.backends.capabilities(), remote=cached[1], runs_workers=self.runs_workers
        )

    def serves(self, model: str, task_type: str, pool: str) -> bool:
        if (model, task_type) in self.entries(pool):
            return True
        # A miss is checked afresh: a worker that registered a moment ago counts at once.
        return (model, task_type) in self.entries(pool, fresh=True)

    def why_not(self, model: str, task_type: str) -> str:
        """Why this process's backends do not serve an entry ("stand-in not enabled: ..."), or ""."""
        return self.backends.why_not(model, task_type)

    def check_request(self, entry: CatalogEntry, inputs: TaskInput, pool: str) -> None:
        """Let this process's backend for the entry refuse inputs it cannot honour, when it is the one that will run
        the task (public pool, workers here); entries served only by remote workers are checked when they run."""
        if runs_in_process(pool, runs_workers=self.runs_workers):
            self.backends.check_request(entry, inputs)
