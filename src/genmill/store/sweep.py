"""The lease sweep: tasks whose worker stopped heartbeating are requeued, or failed with a refund when out of
attempts; staged tasks of accounts with free slots are promoted (repairing a promotion a crash may have missed).

One replica sweeps at a time (a PostgreSQL advisory lock); `LeaseStore.sweep_expired_leases` runs it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

import sqlalchemy as sa

from genmill.domain.leases import expire_lease
from genmill.domain.states import TaskStatus
from genmill.store.base import another_replica_sweeps
from genmill.store.events import STATUS, emit
from genmill.store.mapping import to_task
from genmill.store.rows import MAX_LOG_LINES, end_task, promote_staged
from genmill.store.tables import accounts, tasks

SWEEP_LOCK_KEY = 0x67656E6D  # one replica sweeps at a time (PostgreSQL advisory lock)


@dataclass
class SweepResult:
    requeued: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    promoted: list[str] = field(default_factory=list)


def sweep_expired(conn: sa.Connection, now: datetime, limit: int) -> SweepResult:
    """One sweep round in the caller's transaction."""
    result = SweepResult()
    if another_replica_sweeps(conn, SWEEP_LOCK_KEY):
        return result  # another replica is sweeping right now
    rows = conn.execute(
        sa.select(tasks)
        .where(tasks.c.status == TaskStatus.PROCESSING.value, tasks.c.lease_expires_at < now)
        .order_by(tasks.c.lease_expires_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
    ).all()
    for row in rows:
        task = to_task(row)
        expiry = expire_lease(task.status, task.attempts, task.max_attempts, task.worker_id)
        if expiry.failure is not None:
            error = expiry.failure.to_error()
            result.promoted += end_task(conn, task, expiry.event, now, error=error, log_line=expiry.log_line)
            result.failed.append(task.task_id)
            continue
        conn.execute(
            sa.update(tasks)
            .where(tasks.c.task_id == task.task_id)
            .values(
                status=expiry.status.value,
                lease_id=None,
                lease_expires_at=None,
                worker_id=None,
                logs=([*task.logs, expiry.log_line])[-MAX_LOG_LINES:],
                updated_at=now,
            )
        )
        emit(conn, task.task_id, STATUS, now)
        result.requeued.append(task.task_id)
    staged_accounts = (
        conn.execute(sa.select(tasks.c.account_id).where(tasks.c.status == TaskStatus.STAGED.value).distinct())
        .scalars()
        .all()
    )
    for account_id in staged_accounts:
        if conn.execute(sa.select(accounts.c.account_id).where(accounts.c.account_id == account_id)).first():
            result.promoted += promote_staged(conn, account_id, now)
    return result
