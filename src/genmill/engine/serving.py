"""What this deployment runs, per pool: right now, recently, or on the operator's word; and the queued tasks' sweep.

Creating a task asks `accepts` first: an entry some worker serves now, one a worker served recently (it is
probably restarting: a rolling deploy), or one the operator declared is accepted and its task waits `pending`;
any other is refused (400, no credits frozen) instead of waiting for a worker that will never come. The remote
half is one registry query (when each entry's workers were last seen), cached for a second per pool: a burst of
creates costs one query, and a refusal is asked again at once so that a worker that registered a moment ago
counts. The rules are `genmill.domain.serving` and `genmill.domain.waiting`.
"""

from __future__ import annotations

import time
from datetime import datetime, timedelta

from genmill.domain.catalog import CatalogEntry, TaskInput
from genmill.domain.records import PUBLIC_POOL
from genmill.domain.serving import Entry, entries_served, runs_in_process
from genmill.domain.waiting import QueuePolicy, accepts
from genmill.store.waits import PendingWaits, WaitSweep
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
        served_recently_seconds: float = 3600.0,
        policy: QueuePolicy | None = None,
        waits: PendingWaits | None = None,
    ) -> None:
        """`backends` are this process's; they run tasks only when `runs_workers` (in-process worker threads).

        A remote worker serves its entries now for `worker_seen_seconds` after it was last seen, and recently for
        `served_recently_seconds`; `policy` says which entries queue anyway and how long their tasks wait;
        `waits` is the store that fails the tasks that waited too long."""
        self.registry = registry
        self.backends = backends
        self.runs_workers = runs_workers
        self.worker_seen = timedelta(seconds=worker_seen_seconds)
        self.served_recently = timedelta(seconds=served_recently_seconds)
        self.policy = policy or QueuePolicy()
        self.waits = waits
        self._remote: dict[str, tuple[float, dict[Entry, datetime]]] = {}

    def _last_seen(self, pool: str, *, fresh: bool) -> dict[Entry, datetime]:
        """When a remote worker of `pool` offering each entry was last seen (read at most once a second unless
        `fresh`)."""
        now = time.monotonic()
        cached = self._remote.get(pool)
        if fresh or cached is None or now - cached[0] > REMOTE_CACHE_SECONDS:
            seen = {(m, t): at for (_, m, t), at in self.registry.last_served(pool).items()}
            cached = (now, seen)
            self._remote[pool] = cached
        return cached[1]

    def _remote_within(self, pool: str, window: timedelta, *, fresh: bool = False) -> set[Entry]:
        since = self.registry.clock.now() - window
        return {entry for entry, seen in self._last_seen(pool, fresh=fresh).items() if seen >= since}

    def _in_process(self, pool: str) -> set[Entry]:
        return set(self.backends.capabilities()) if runs_in_process(pool, runs_workers=self.runs_workers) else set()

    def entries(self, pool: str, *, fresh: bool = False) -> set[Entry]:
        """Entries some worker can run for `pool` right now: this process's backends (where they run the pool's
        tasks) and remote workers seen within `worker_seen_seconds`."""
        remote = self._remote_within(pool, self.worker_seen, fresh=fresh)
        return entries_served(
            pool, in_process=self.backends.capabilities(), remote=remote, runs_workers=self.runs_workers
        )

    def accepted(self, pool: str, entries: set[Entry], *, fresh: bool = False) -> set[Entry]:
        """Those of `entries` whose tasks a create accepts for `pool`: served now, served recently, or declared."""
        recent = self._remote_within(pool, max(self.served_recently, self.worker_seen), fresh=fresh)
        now = self._in_process(pool) | recent
        return {
            (model, task_type)
            for model, task_type in entries
            if accepts(
                serving_now=(model, task_type) in now,
                served_recently=(model, task_type) in recent,
                declared=self.policy.declares(model, task_type),
            )
        }

    def serves(self, model: str, task_type: str, pool: str) -> bool:
        """Whether some worker can run the entry for `pool` right now."""
        if (model, task_type) in self.entries(pool):
            return True
        # A miss is checked afresh: a worker that registered a moment ago counts at once.
        return (model, task_type) in self.entries(pool, fresh=True)

    def accepts(self, model: str, task_type: str, pool: str) -> bool:
        """Whether a create for the entry is accepted for `pool` (its task may have to wait for a worker)."""
        entry = {(model, task_type)}
        return bool(self.accepted(pool, entry)) or bool(self.accepted(pool, entry, fresh=True))

    def why_not(self, model: str, task_type: str) -> str:
        """Why this process's backends do not serve an entry ("stand-in not enabled: ..."), or ""."""
        return self.backends.why_not(model, task_type)

    def check_request(self, entry: CatalogEntry, inputs: TaskInput, pool: str) -> None:
        """Let this process's backend for the entry refuse inputs it cannot honour, when it is the one that will run
        the task (public pool, workers here); entries served only by remote workers are checked when they run."""
        if runs_in_process(pool, runs_workers=self.runs_workers):
            self.backends.check_request(entry, inputs)

    def expire_waits(self) -> WaitSweep:
        """Fail the queued tasks that waited past their entry's limit with no worker (the reaper calls this)."""
        if self.waits is None:
            return WaitSweep()
        return self.waits.fail_overdue(self.policy, in_process=frozenset(self._in_process(PUBLIC_POOL)))
