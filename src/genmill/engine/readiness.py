"""Is this replica ready for traffic? `/readyz` answers 200 only when the database answers, its schema is at the
newest migration this package ships, and some worker serves the public pool (an in-process worker thread with a
backend that can run something, or a remote public worker seen within GENMILL_WORKER_SEEN_SECONDS); otherwise 503
with every reason. `/healthz` stays the liveness check: it says the process answers, not that tasks would run.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

import sqlalchemy as sa

from genmill.store import Store
from genmill.store.migrate import revisions
from genmill.worker.backendset import BackendSet


@dataclass(frozen=True)
class Readiness:
    database: bool
    migrations: str
    """"at head (0007)", or what differs."""
    public_workers: int
    reasons: list[str] = field(default_factory=list)

    @property
    def ready(self) -> bool:
        return not self.reasons


class ReadinessCheck:
    def __init__(
        self, store: Store, backend_sets: list[BackendSet], *, worker_slots: int, worker_seen_seconds: float
    ) -> None:
        self.store = store
        self.backend_sets = backend_sets
        self.worker_slots = worker_slots
        self.worker_seen = timedelta(seconds=worker_seen_seconds)

    def local_workers(self) -> int:
        """In-process worker threads, when their backends can run at least one entry."""
        runs_something = any(backends.capabilities() for backends in self.backend_sets)
        return self.worker_slots if runs_something else 0

    def check(self) -> Readiness:
        reasons: list[str] = []
        try:
            with self.store.engine.connect() as conn:
                conn.execute(sa.text("SELECT 1"))
            current, head = revisions(self.store.engine)
        except Exception as exc:  # any failure to reach the database means not ready, with why
            return Readiness(False, "unknown", 0, [f"database unreachable: {type(exc).__name__}: {exc}"[:300]])
        migrations = f"at head ({head})"
        if current != head:
            migrations = f"at {current or 'no revision'}, the package ships {head}"
            reasons.append(f"migrations not at head: database {migrations} (run `genmill db upgrade`)")
        try:
            remote = self.store.ops.public_workers_seen(self.worker_seen)
        except Exception as exc:  # e.g. a database without genmill's tables
            remote = 0
            reasons.append(f"workers unknown: {type(exc).__name__}: {exc}"[:300])
        workers = self.local_workers() + remote
        if workers == 0:
            reasons.append("no worker serves the public pool (none in process, no remote public worker seen lately)")
        return Readiness(True, migrations, workers, reasons)
