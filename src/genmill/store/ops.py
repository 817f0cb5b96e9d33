"""Read-only views of the whole deployment for operators: workers seen, queue depth, webhook failures, and the
counts behind `/metrics` that only the database knows (every replica and remote worker writes there).

These read across accounts, so only the admin API and the metrics endpoint use them, never an account route.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from genmill.domain.ledger import LedgerKind
from genmill.domain.records import PUBLIC_POOL, Task
from genmill.domain.states import TaskStatus
from genmill.store.base import Queries
from genmill.store.mapping import to_task
from genmill.store.tables import ledger, tasks, webhook_deliveries, worker_tokens, workers

QUEUED = (TaskStatus.PENDING.value, TaskStatus.STAGED.value)
FAILED_DELIVERIES = ("failed", "gone", "exhausted")
"""Delivery states that mean a receiver did not take an event: refused with a 4xx, 410 Gone, retries exhausted."""


@dataclass(frozen=True)
class SeenWorker:
    worker_id: str
    name: str
    pool: str
    capabilities: list[tuple[str, str]]
    registered_at: datetime
    last_seen_at: datetime


@dataclass(frozen=True)
class QueueDepth:
    model: str
    task_type: str
    pool: str
    status: str
    count: int


class OpsViews(Queries):
    def workers_seen(self, within: timedelta) -> list[SeenWorker]:
        """Remote workers (of unrevoked tokens) seen within `within`, most recently seen first."""
        since = self.clock.now() - within
        query = (
            sa.select(workers)
            .join(worker_tokens, worker_tokens.c.token_id == workers.c.token_id)
            .where(worker_tokens.c.revoked_at.is_(None), workers.c.last_seen_at >= since)
            .order_by(workers.c.last_seen_at.desc())
        )
        with self.read() as conn:
            rows = conn.execute(query).all()
        return [
            SeenWorker(
                r.worker_id,
                r.name,
                r.pool,
                [(str(m), str(t)) for m, t in r.capabilities],
                r.registered_at,
                r.last_seen_at,
            )
            for r in rows
        ]

    def public_workers_seen(self, within: timedelta) -> int:
        return sum(1 for w in self.workers_seen(within) if w.pool == PUBLIC_POOL)

    def queue_depth(self) -> list[QueueDepth]:
        """Tasks waiting (pending for a worker, staged behind the account's concurrency), per entry and pool."""
        query = (
            sa.select(tasks.c.model, tasks.c.task_type, tasks.c.pool, tasks.c.status, sa.func.count())
            .where(tasks.c.status.in_(QUEUED))
            .group_by(tasks.c.model, tasks.c.task_type, tasks.c.pool, tasks.c.status)
            .order_by(tasks.c.model, tasks.c.task_type, tasks.c.pool, tasks.c.status)
        )
        with self.read() as conn:
            rows = conn.execute(query).all()
        return [QueueDepth(str(m), str(t), str(p), str(s), int(n)) for m, t, p, s, n in rows]

    def tasks_by_id(self, task_ids: Sequence[str]) -> dict[str, Task]:
        """The tasks with these ids, in one read (the metrics count a commit's transitions with it)."""
        if not task_ids:
            return {}
        with self.read() as conn:
            rows = conn.execute(sa.select(tasks).where(tasks.c.task_id.in_(set(task_ids)))).all()
        return {row.task_id: to_task(row) for row in rows}

    def tasks_by_status(self) -> dict[tuple[str, str], int]:
        """(model, status) → tasks in the database now (kept ones; the reaper never deletes task rows)."""
        query = sa.select(tasks.c.model, tasks.c.status, sa.func.count()).group_by(tasks.c.model, tasks.c.status)
        with self.read() as conn:
            return {(str(m), str(s)): int(n) for m, s, n in conn.execute(query).all()}

    def credits_consumed(self) -> int:
        """Every credit ever consumed by a task, from the ledger (the one record of money)."""
        query = sa.select(sa.func.coalesce(sa.func.sum(ledger.c.amount), 0)).where(
            ledger.c.kind == LedgerKind.CONSUME.value
        )
        with self.read() as conn:
            return int(conn.execute(query).scalar_one())

    def deliveries_by_state(self) -> dict[str, int]:
        query = sa.select(webhook_deliveries.c.state, sa.func.count()).group_by(webhook_deliveries.c.state)
        with self.read() as conn:
            return {str(s): int(n) for s, n in conn.execute(query).all()}

    def webhook_failures(self, limit: int) -> list[dict[str, Any]]:
        """The latest deliveries a receiver did not take, newest first, with what the last attempt got."""
        d = webhook_deliveries.c
        query = (
            sa.select(
                d.delivery_id,
                d.task_id,
                d.account_id,
                d.endpoint,
                d.state,
                d.attempts,
                d.last_status_code,
                d.last_error,
                d.created_at,
                d.next_attempt_at,
            )
            .where(d.state.in_(FAILED_DELIVERIES))
            .order_by(d.created_at.desc())
            .limit(limit)
        )
        with self.read() as conn:
            return [dict(r._mapping) for r in conn.execute(query).all()]
