"""The queued tasks' sweep: fail, with their credits released, pending tasks that waited past their entry's limit
with no worker to run them.

The rules are `genmill.domain.waiting`'s; this module finds the candidates and executes the answer in one
transaction, with the store's clock, like the lease sweep (PostgreSQL: one replica at a time, under an advisory
lock). An entry counts as served at the sweep's `now` when this process's own workers run it or a task of it is
processing in that pool; otherwise it was last served when a registered worker of the pool that offers it was
last seen (the `workers` table, shared by every replica).
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import datetime

import sqlalchemy as sa

from genmill.domain.records import PUBLIC_POOL
from genmill.domain.serving import Entry
from genmill.domain.states import TaskEvent, TaskStatus
from genmill.domain.waiting import QueuePolicy, no_worker_failure, waited_too_long, waiting_since
from genmill.store.base import Queries, another_replica_sweeps
from genmill.store.mapping import to_task
from genmill.store.rows import end_task
from genmill.store.tables import tasks, worker_tokens, workers
from genmill.store.workers import latest_seen

WAIT_SWEEP_LOCK_KEY = 0x67656E77  # one replica sweeps queued tasks at a time (PostgreSQL advisory lock)

_OVERDUE_GROUPS = (
    sa.select(tasks.c.pool, tasks.c.model, tasks.c.task_type)
    .where(tasks.c.status == TaskStatus.PENDING.value, tasks.c.updated_at < sa.bindparam("b_cutoff"))
    .group_by(tasks.c.pool, tasks.c.model, tasks.c.task_type)
)
_PROCESSING_ENTRIES = (
    sa.select(tasks.c.pool, tasks.c.model, tasks.c.task_type)
    .where(tasks.c.status == TaskStatus.PROCESSING.value)
    .group_by(tasks.c.pool, tasks.c.model, tasks.c.task_type)
)
_WORKERS_SEEN = (
    sa.select(workers.c.pool, workers.c.capabilities, workers.c.last_seen_at)
    .join(worker_tokens, worker_tokens.c.token_id == workers.c.token_id)
    .where(worker_tokens.c.revoked_at.is_(None))
)


@dataclass
class WaitSweep:
    failed: list[str] = field(default_factory=list)
    """Tasks failed with code 10004 (their credits released)."""
    promoted: list[str] = field(default_factory=list)
    """Staged tasks promoted into the slots the failed ones freed."""


class PendingWaits(Queries):
    def fail_overdue(self, policy: QueuePolicy, *, in_process: Collection[Entry] = (), limit: int = 100) -> WaitSweep:
        """Fail the pending tasks that waited past their entry's limit with no worker serving the entry.

        `in_process` are the entries this process's own worker threads run for the public pool: their tasks are
        never overdue here, whatever the table of remote workers says.
        """
        now = self.clock.now()
        result = WaitSweep()
        with self.tx() as conn:
            if another_replica_sweeps(conn, WAIT_SWEEP_LOCK_KEY):
                return result  # another replica is sweeping right now
            groups = conn.execute(_OVERDUE_GROUPS, {"b_cutoff": now - policy.shortest_wait()}).all()
            if not groups:
                return result  # the usual case: no task has waited even the shortest limit
            processing = {(str(p), str(m), str(t)) for p, m, t in conn.execute(_PROCESSING_ENTRIES)}
            seen = latest_seen(tuple(row) for row in conn.execute(_WORKERS_SEEN))
            for pool, model, task_type in groups:
                if len(result.failed) >= limit:
                    break
                key = (str(pool), str(model), str(task_type))
                if key in processing or (pool == PUBLIC_POOL and (model, task_type) in in_process):
                    continue  # a worker serves the entry right now: its queue is a backlog, not a missing worker
                wait = policy.max_wait(model, task_type)
                last_served = seen.get(key)
                rows = conn.execute(
                    sa.select(tasks)
                    .where(
                        tasks.c.status == TaskStatus.PENDING.value,
                        tasks.c.pool == pool,
                        tasks.c.model == model,
                        tasks.c.task_type == task_type,
                        tasks.c.updated_at < now - wait,
                    )
                    .order_by(tasks.c.updated_at, tasks.c.task_id)
                    .limit(limit - len(result.failed))
                    .with_for_update(skip_locked=True)
                ).all()
                for row in rows:
                    pending_since: datetime = row._mapping["updated_at"]
                    if not waited_too_long(pending_since, last_served, now, wait):
                        continue
                    failure = no_worker_failure(model, task_type, pool, limit=wait, last_served=last_served)
                    waited = (now - waiting_since(pending_since, last_served)).total_seconds()
                    log_line = f"no worker served the entry for {waited:.0f} s (limit {wait.total_seconds():g} s); "
                    result.promoted += end_task(
                        conn,
                        to_task(row),
                        TaskEvent.EXPIRE,
                        now,
                        error=failure.to_error(),
                        log_line=log_line + "failed, credits released",
                    )
                    result.failed.append(row._mapping["task_id"])
        return result
