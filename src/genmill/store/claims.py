"""Which pending task a worker gets next: the claim's statements, portable and PostgreSQL's, built once per
capability set and reused (building a statement costs more than running it).

The rule, the same on both engines: among the runnable pending tasks of the worker's pool, the account with the
fewest tasks already processing goes first (so one busy account cannot starve the others), then higher priority,
then the oldest. The portable claim (`LeaseStore._claim_next`) seeks it in a few statements; on PostgreSQL
`claim_statement` seeks it and leases the task in one.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa

from genmill.domain.states import TaskStatus
from genmill.store.tables import tasks

MAX_CACHED_CLAIMS = 256
Caps = tuple[tuple[str, str], ...]
_portable: dict[tuple[Caps, str], sa.Select[Any]] = {}
_pg: dict[Caps, sa.TextualSelect] = {}


def portable_claim(caps: Caps, accounts: str) -> sa.Select[Any]:
    """The next-task query for one capability set, locked `SKIP LOCKED` (the lease is a second statement).

    `accounts` is "any", "idle" (not among `b_accounts`) or "among" (`b_accounts` only).
    """
    key = (caps, accounts)
    statement = _portable.get(key)
    if statement is None:
        can_run = sa.or_(*(sa.and_(tasks.c.model == m, tasks.c.task_type == t) for m, t in caps))
        statement = sa.select(tasks).where(
            tasks.c.status == TaskStatus.PENDING.value, tasks.c.pool == sa.bindparam("b_pool"), can_run
        )
        if accounts != "any":
            chosen = tasks.c.account_id.in_(sa.bindparam("b_accounts", expanding=True))
            statement = statement.where(chosen if accounts == "among" else sa.not_(chosen))
        statement = (
            statement.order_by(tasks.c.priority.desc(), tasks.c.created_at, tasks.c.task_id)
            .limit(1)
            .with_for_update(skip_locked=True)
        )
        if len(_portable) >= MAX_CACHED_CLAIMS:
            _portable.clear()
        _portable[key] = statement
    return statement


def pg_claim(caps: Caps) -> sa.TextualSelect:
    """`claim_statement(caps)`, cached."""
    statement = _pg.get(caps)
    if statement is None:
        if len(_pg) >= MAX_CACHED_CLAIMS:
            _pg.clear()
        statement = _pg[caps] = claim_statement(caps)
    return statement


def claim_statement(caps: tuple[tuple[str, str], ...]) -> sa.TextualSelect:
    """Lease the next task for one capability set: fair pick and lease in one `UPDATE ... RETURNING`.

    `levels` are the distinct processing loads, 0 (the idle accounts) first; for each level in turn the best
    pending task (priority, then age, on `ix_tasks_claim_order`) of an account at that load is tried, `SKIP
    LOCKED`, and the first level that has one wins: the order `LeaseStore.claim_next_task` seeks. The nested loop
    keeps the levels' order, so the `LIMIT 1` stops at the first level with a task and locks no other row.
    """
    returning = ", ".join(f"tasks.{column.name}" for column in tasks.c)  # by name: migrations appended columns
    can_run = " OR ".join(f"(t.model = :m{i} AND t.task_type = :t{i})" for i in range(len(caps)))
    sql = f"""
        WITH loads AS (
            SELECT account_id, count(*) AS n FROM tasks WHERE status = 'processing' GROUP BY account_id
        ), levels AS (
            SELECT 0 AS n UNION SELECT n FROM loads
        )
        UPDATE tasks SET
            status = :status, attempts = tasks.attempts + 1, lease_id = :lease_id,
            lease_expires_at = :lease_expires_at, worker_id = :worker_id,
            started_at = coalesce(tasks.started_at, :now), updated_at = :now
        WHERE tasks.task_id = (
            SELECT pick.task_id FROM (SELECT n FROM levels ORDER BY n) AS level
            CROSS JOIN LATERAL (
                SELECT t.task_id FROM tasks AS t
                WHERE t.status = 'pending' AND t.pool = :pool AND ({can_run})
                  AND CASE WHEN level.n = 0 THEN t.account_id NOT IN (SELECT account_id FROM loads)
                           ELSE t.account_id IN (SELECT account_id FROM loads WHERE loads.n = level.n) END
                ORDER BY t.priority DESC, t.created_at, t.task_id
                LIMIT 1 FOR UPDATE SKIP LOCKED
            ) AS pick
            ORDER BY level.n LIMIT 1
        )
        RETURNING {returning}
    """
    binds = [
        sa.bindparam("lease_expires_at", type_=tasks.c.lease_expires_at.type),
        sa.bindparam("now", type_=tasks.c.updated_at.type),
    ]
    return sa.text(sql).bindparams(*binds).columns(*tasks.c)


def claim_params(
    caps: tuple[tuple[str, str], ...],
    *,
    status: str,
    lease_id: str,
    lease_expires_at: datetime,
    worker_id: str,
    now: datetime,
    pool: str,
) -> dict[str, Any]:
    params: dict[str, Any] = {
        "status": status,
        "lease_id": lease_id,
        "lease_expires_at": lease_expires_at,
        "worker_id": worker_id,
        "now": now,
        "pool": pool,
    }
    for i, (model, task_type) in enumerate(caps):
        params[f"m{i}"] = model
        params[f"t{i}"] = task_type
    return params
