"""The worker side of the task path: claim with a lease, heartbeat, complete, fail, and lease expiry.

These are the operations a worker transport exposes. The in-process pool calls them directly; a remote
worker reaches the same methods through the HTTP worker protocol. Claims take the oldest pending task the
worker can run (`FOR UPDATE SKIP LOCKED` on PostgreSQL, the `BEGIN IMMEDIATE` write lock on SQLite), and every
later call must present the lease id, so a task completes — and bills — exactly once.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from genmill.domain.clock import SYSTEM_CLOCK, Clock
from genmill.domain.leases import expire_lease, holds_lease, lease_ends_at
from genmill.domain.records import PUBLIC_POOL, Account, Claim, Task
from genmill.domain.states import TaskEvent, TaskStatus, transition
from genmill.errors import Conflict
from genmill.store.base import Publisher, Queries, another_replica_sweeps
from genmill.store.events import PROGRESS, STATUS, emit
from genmill.store.mapping import to_task
from genmill.store.pg_statements import claim_params, claim_statement
from genmill.store.rows import (
    MAX_LOG_LINES,
    end_task,
    lock_task_and_account,
    promote_staged,
    select_task,
    update_task,
)
from genmill.store.tables import accounts, tasks

SWEEP_LOCK_KEY = 0x67656E6D  # one replica sweeps at a time (PostgreSQL advisory lock)


MAX_LOG_LINE = 500


def clip(lines: list[str]) -> list[str]:
    """Log lines as stored: at most MAX_LOG_LINES of them, each at most MAX_LOG_LINE characters."""
    return [str(line)[:MAX_LOG_LINE] for line in lines[-MAX_LOG_LINES:]]


@dataclass
class SweepResult:
    requeued: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    promoted: list[str] = field(default_factory=list)


MAX_CACHED_CLAIMS = 256
CLAIMED = transition(TaskStatus.PENDING, TaskEvent.CLAIM)
_PROCESSING_LOADS = (
    sa.select(tasks.c.account_id, sa.func.count())
    .where(tasks.c.status == TaskStatus.PROCESSING.value)
    .group_by(tasks.c.account_id)
)


class LeaseStore(Queries):
    def __init__(self, engine: sa.Engine, publish: Publisher | None = None, *, clock: Clock = SYSTEM_CLOCK) -> None:
        super().__init__(engine, publish, clock=clock)
        self._claim_statements: dict[tuple[tuple[tuple[str, str], ...], str], sa.Select[Any]] = {}
        self._pg_claims: dict[tuple[tuple[str, str], ...], sa.TextualSelect] = {}

    def claim_next_task(
        self,
        worker_id: str,
        capabilities: Iterable[tuple[str, str]],
        lease_seconds: float,
        *,
        pool: str = PUBLIC_POOL,
    ) -> Claim | None:
        """Lease the next task this worker can run, fairly across accounts.

        Among runnable pending tasks of the worker's pool, the account with the fewest tasks already processing
        goes first (so one busy account cannot starve the others), then higher priority, then the oldest.

        Done as a few index seeks rather than one query that ranks every pending task: the processing tasks
        (few: at most one per worker slot) give each busy account's load; the best task of the idle accounts is
        taken first, and only when they have none are the busy accounts tried, least loaded first.
        """
        caps = tuple(sorted(set(capabilities)))
        if not caps:
            return None
        now = self.clock.now()
        with self.tx() as conn:
            return self._claim_next(conn, caps, worker_id, lease_seconds, pool, now)

    def _claim_next(
        self,
        conn: sa.Connection,
        caps: tuple[tuple[str, str], ...],
        worker_id: str,
        lease_seconds: float,
        pool: str,
        now: datetime,
    ) -> Claim | None:
        """`claim_next_task` inside the caller's transaction."""
        if conn.dialect.name == "postgresql":
            return self._claim_next_pg(conn, caps, worker_id, lease_seconds, pool, now)
        loads: dict[str, int] = {account: int(n) for account, n in conn.execute(_PROCESSING_LOADS)}
        params: dict[str, Any] = {"b_pool": pool, "b_accounts": list(loads)}
        row = conn.execute(self._claim_statement(caps, "idle" if loads else "any"), params).one_or_none()
        for level in sorted(set(loads.values())) if row is None else ():
            params["b_accounts"] = [account for account, load in loads.items() if load == level]
            row = conn.execute(self._claim_statement(caps, "among"), params).one_or_none()
            if row is not None:
                break
        if row is None:
            return None
        return self._lease(conn, to_task(row), worker_id, lease_seconds, now)

    def _claim_next_pg(
        self,
        conn: sa.Connection,
        caps: tuple[tuple[str, str], ...],
        worker_id: str,
        lease_seconds: float,
        pool: str,
        now: datetime,
    ) -> Claim | None:
        """The same choice and lease as the portable path, in one statement (`pg_statements.claim_statement`)."""
        statement = self._pg_claims.get(caps)
        if statement is None:
            if len(self._pg_claims) >= MAX_CACHED_CLAIMS:
                self._pg_claims.clear()
            statement = self._pg_claims[caps] = claim_statement(caps)
        params = claim_params(
            caps,
            status=CLAIMED.value,
            lease_id=str(uuid.uuid4()),
            lease_expires_at=lease_ends_at(now, lease_seconds),
            worker_id=worker_id,
            now=now,
            pool=pool,
        )
        row = conn.execute(statement, params).one_or_none()
        if row is None:
            return None
        leased = to_task(row)
        assert leased.lease_id is not None and leased.lease_expires_at is not None
        return Claim(emit(conn, leased.task_id, STATUS, now, task=leased), leased.lease_id, leased.lease_expires_at)

    def claim_task(self, task_id: str, worker_id: str, lease_seconds: float) -> Claim | None:
        """Lease one named pending task (None when it is not pending, e.g. staged at the concurrency limit).

        For work the API process runs itself while the client waits (the OpenAI-compatible chat API): the task it
        just created is the one it must run, never another account's task of the same model."""
        now = self.clock.now()
        with self.tx() as conn:
            task = select_task(conn, task_id, lock=True)
            if task is None or task.status is not TaskStatus.PENDING:
                return None
            return self._lease(conn, task, worker_id, lease_seconds, now)

    def _claim_statement(self, caps: tuple[tuple[str, str], ...], accounts: str) -> sa.Select[Any]:
        """The next-task query for one capability set, built once and reused (building costs more than running).

        `accounts` is "any", "idle" (not among `b_accounts`) or "among" (`b_accounts` only).
        """
        key = (caps, accounts)
        statement = self._claim_statements.get(key)
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
            if len(self._claim_statements) >= MAX_CACHED_CLAIMS:
                self._claim_statements.clear()
            self._claim_statements[key] = statement
        return statement

    def claim_matching(
        self,
        worker_id: str,
        model: str,
        task_type: str,
        *,
        match: dict[str, Any],
        limit: int,
        lease_seconds: float,
        pool: str = PUBLIC_POOL,
    ) -> list[Claim]:
        """Lease up to `limit` more pending tasks of one entry whose inputs agree on `match` (dynamic batching).

        Candidates are locked with SKIP LOCKED and filtered here, so the rule is the same on every engine; the
        ones that do not match are left as they were.
        """
        if limit <= 0:
            return []
        now = self.clock.now()
        with self.tx() as conn:
            rows = conn.execute(
                sa.select(tasks)
                .where(
                    tasks.c.status == TaskStatus.PENDING.value,
                    tasks.c.pool == pool,
                    tasks.c.model == model,
                    tasks.c.task_type == task_type,
                )
                .order_by(tasks.c.priority.desc(), tasks.c.created_at, tasks.c.task_id)
                .limit(limit * 4)
                .with_for_update(skip_locked=True)
            ).all()
            chosen = [t for t in map(to_task, rows) if all(t.input.get(k) == v for k, v in match.items())][:limit]
            return [self._lease(conn, task, worker_id, lease_seconds, now) for task in chosen]

    @staticmethod
    def _lease(conn: sa.Connection, task: Task, worker_id: str, lease_seconds: float, now: datetime) -> Claim:
        leased = dataclasses.replace(
            task,
            status=transition(task.status, TaskEvent.CLAIM),
            attempts=task.attempts + 1,
            lease_id=str(uuid.uuid4()),
            lease_expires_at=lease_ends_at(now, lease_seconds),
            worker_id=worker_id,
            started_at=task.started_at or now,
        )
        update_task(
            conn,
            task.task_id,
            {
                "status": leased.status.value,
                "attempts": leased.attempts,
                "lease_id": leased.lease_id,
                "lease_expires_at": leased.lease_expires_at,
                "worker_id": worker_id,
                "started_at": leased.started_at,
                "updated_at": now,
            },
        )
        assert leased.lease_id is not None and leased.lease_expires_at is not None
        return Claim(emit(conn, task.task_id, STATUS, now, task=leased), leased.lease_id, leased.lease_expires_at)

    def _locked_lease(self, conn: sa.Connection, task_id: str, lease_id: str) -> Task:
        return self._check_lease(select_task(conn, task_id, lock=True), task_id, lease_id)

    def _locked_lease_and_account(self, conn: sa.Connection, task_id: str, lease_id: str) -> tuple[Task, Account]:
        """The leased task and its account, both locked, for a transaction that ends the task."""
        locked = lock_task_and_account(conn, task_id)
        task = self._check_lease(None if locked is None else locked[0], task_id, lease_id)
        assert locked is not None
        return task, locked[1]

    @staticmethod
    def _check_lease(task: Task | None, task_id: str, lease_id: str) -> Task:
        if task is None:
            raise Conflict(f"task {task_id} does not exist")
        if not holds_lease(task.status, task.lease_id, lease_id):
            raise Conflict(
                f"lease {lease_id} on task {task_id} is no longer valid (task is {task.status.value})",
                detail={"task_id": task_id, "status": task.status.value},
            )
        return task

    def heartbeat(
        self,
        task_id: str,
        lease_id: str,
        lease_seconds: float,
        *,
        logs: list[str] | None = None,
        detail: dict[str, Any] | None = None,
    ) -> datetime:
        """Renew the lease, appending log lines and replacing `detail`; returns the new expiry."""
        now = self.clock.now()
        expires = lease_ends_at(now, lease_seconds)
        with self.tx() as conn:
            task = self._locked_lease(conn, task_id, lease_id)
            values: dict[str, Any] = {"lease_expires_at": expires}
            if logs:
                values["logs"] = (task.logs + clip(logs))[-MAX_LOG_LINES:]
            if detail is not None:
                values["detail"] = detail
            update_task(conn, task_id, {**values, "updated_at": now})
            if logs or detail is not None:
                emit(conn, task_id, PROGRESS, now, task=dataclasses.replace(task, **values))
        return expires

    def complete(
        self,
        task_id: str,
        lease_id: str,
        output: dict[str, Any],
        *,
        logs: list[str] | None = None,
        detail: dict[str, Any] | None = None,
        usage_credits: int | None = None,
    ) -> list[str]:
        """Complete and bill the task; returns promoted staged task ids (for wake-ups).

        `usage_credits`, when the entry prices what the output used, is consumed (at most the frozen price) and the
        rest released, in this one transaction."""
        with self.tx() as conn:
            task, account = self._locked_lease_and_account(conn, task_id, lease_id)
            task = self._flush(conn, task, logs, detail)
            return end_task(
                conn,
                task,
                TaskEvent.COMPLETE,
                self.clock.now(),
                output=output,
                usage_credits=usage_credits,
                account=account,
            )

    def fail(
        self,
        task_id: str,
        lease_id: str,
        error: dict[str, Any],
        *,
        logs: list[str] | None = None,
        detail: dict[str, Any] | None = None,
    ) -> list[str]:
        """Fail the task and release its credits; returns promoted staged task ids."""
        with self.tx() as conn:
            task, account = self._locked_lease_and_account(conn, task_id, lease_id)
            task = self._flush(conn, task, logs, detail)
            return end_task(conn, task, TaskEvent.FAIL, self.clock.now(), error=error, account=account)

    @staticmethod
    def _flush(conn: sa.Connection, task: Task, logs: list[str] | None, detail: dict[str, Any] | None) -> Task:
        """Write the last logs and detail a worker sends with its result; returns the task as now stored."""
        values: dict[str, Any] = {}
        if logs:
            values["logs"] = (task.logs + clip(logs))[-MAX_LOG_LINES:]
        if detail is not None:
            values["detail"] = detail
        if not values:
            return task
        update_task(conn, task.task_id, values)
        return dataclasses.replace(task, **values)

    def sweep_expired_leases(self, *, limit: int = 100) -> SweepResult:
        """Requeue tasks whose worker stopped heartbeating; fail (with refund) those out of attempts.

        Also promotes staged tasks of any account with free slots, repairing promotions a crash may have missed.
        """
        now = self.clock.now()
        result = SweepResult()
        with self.tx() as conn:
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
