"""The worker side of the task path: claim with a lease, heartbeat, complete, fail, and lease expiry.

These are the operations a worker transport exposes. The in-process pool calls them directly; a remote
worker reaches the same methods through the HTTP worker protocol. Claims take the oldest pending task the
worker can run (`FOR UPDATE SKIP LOCKED` on PostgreSQL, the `BEGIN IMMEDIATE` write lock on SQLite), and every
later call must present the lease id, so a task completes — and bills — exactly once.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from genmill.domain.clock import SYSTEM_CLOCK, Clock
from genmill.domain.leases import holds_lease, lease_ends_at
from genmill.domain.records import PUBLIC_POOL, Account, Claim, Task
from genmill.domain.states import TaskEvent, TaskStatus, transition
from genmill.errors import Conflict
from genmill.store.base import Publisher, Queries
from genmill.store.claims import claim_params, pg_claim, portable_claim
from genmill.store.events import PROGRESS, STATUS, emit
from genmill.store.mapping import to_task
from genmill.store.rows import (
    MAX_LOG_LINES,
    end_task,
    finish_task,
    lock_batch,
    lock_task_and_account,
    select_task,
    update_task,
)
from genmill.store.sweep import SWEEP_LOCK_KEY as SWEEP_LOCK_KEY
from genmill.store.sweep import SweepResult, sweep_expired
from genmill.store.tables import tasks

MAX_LOG_LINE = 500


def clip(lines: list[str]) -> list[str]:
    """Log lines as stored: at most MAX_LOG_LINES of them, each at most MAX_LOG_LINE characters."""
    return [str(line)[:MAX_LOG_LINE] for line in lines[-MAX_LOG_LINES:]]


CLAIMED = transition(TaskStatus.PENDING, TaskEvent.CLAIM)
_PROCESSING_LOADS = (
    sa.select(tasks.c.account_id, sa.func.count())
    .where(tasks.c.status == TaskStatus.PROCESSING.value)
    .group_by(tasks.c.account_id)
)


@dataclass(frozen=True)
class Completion:
    """One task's result for `LeaseStore.complete_many`: what `complete` takes."""

    task_id: str
    lease_id: str
    output: dict[str, Any]
    logs: list[str] | None = None
    detail: dict[str, Any] | None = None
    usage_credits: int | None = None


class LeaseStore(Queries):
    def __init__(self, engine: sa.Engine, publish: Publisher | None = None, *, clock: Clock = SYSTEM_CLOCK) -> None:
        super().__init__(engine, publish, clock=clock)

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
        row = conn.execute(portable_claim(caps, "idle" if loads else "any"), params).one_or_none()
        for level in sorted(set(loads.values())) if row is None else ():
            params["b_accounts"] = [account for account, load in loads.items() if load == level]
            row = conn.execute(portable_claim(caps, "among"), params).one_or_none()
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
        statement = pg_claim(caps)
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

    def claim_many(
        self,
        worker_id: str,
        capabilities: Iterable[tuple[str, str]],
        lease_seconds: float,
        limit: int,
        *,
        pool: str = PUBLIC_POOL,
    ) -> list[Claim]:
        """Lease up to `limit` tasks in one transaction: the tasks, in the order, that `limit` calls of
        `claim_next_task` would lease (each pick sees the loads the previous ones made), for one commit instead
        of `limit`. Each claim is a lease of its own, heartbeated, completed or expired alone."""
        caps = tuple(sorted(set(capabilities)))
        if not caps or limit <= 0:
            return []
        now = self.clock.now()
        claims: list[Claim] = []
        with self.tx() as conn:
            while len(claims) < limit:
                claim = self._claim_next(conn, caps, worker_id, lease_seconds, pool, now)
                if claim is None:
                    break
                claims.append(claim)
        return claims

    def complete_many(self, completions: Sequence[Completion]) -> list[list[str] | Conflict]:
        """Complete and bill several leased tasks in one transaction; for each, in order, the promoted staged
        task ids (as `complete` returns) or the `Conflict` that refused it (a lease no longer held, the task
        named twice), which leaves that task as it was and the others unaffected.

        Every ledger row, event and promotion is the one `complete` would write; only the commit is shared."""
        now = self.clock.now()
        outcomes: list[list[str] | Conflict] = []
        with self.tx() as conn:
            locked, accounts_by_id = lock_batch(conn, [c.task_id for c in completions])
            seen: set[str] = set()
            for done in completions:
                try:
                    if done.task_id in seen:
                        raise Conflict(f"task {done.task_id} is completed twice in one batch")
                    seen.add(done.task_id)
                    task = self._check_lease(locked.get(done.task_id), done.task_id, done.lease_id)
                except Conflict as refused:
                    outcomes.append(refused)
                    continue
                task = self._merged(task, done.logs, done.detail)
                promoted, accounts_by_id[task.account_id] = finish_task(
                    conn,
                    task,
                    TaskEvent.COMPLETE,
                    now,
                    output=done.output,
                    usage_credits=done.usage_credits,
                    account=accounts_by_id[task.account_id],
                    detail=done.detail,
                )
                outcomes.append(promoted)
        return outcomes

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
            return end_task(
                conn,
                self._merged(task, logs, detail),
                TaskEvent.COMPLETE,
                self.clock.now(),
                output=output,
                usage_credits=usage_credits,
                account=account,
                detail=detail,
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
            task = self._merged(task, logs, detail)
            return end_task(conn, task, TaskEvent.FAIL, self.clock.now(), error=error, account=account, detail=detail)

    @staticmethod
    def _merged(task: Task, logs: list[str] | None, detail: dict[str, Any] | None) -> Task:
        """The task with the last logs and detail a worker sends with its result; `finish_task` writes them with
        the task's end, in the same statement."""
        if logs:
            task = dataclasses.replace(task, logs=(task.logs + clip(logs))[-MAX_LOG_LINES:])
        if detail is not None:
            task = dataclasses.replace(task, detail=detail)
        return task

    def sweep_expired_leases(self, *, limit: int = 100) -> SweepResult:
        """Requeue tasks whose worker stopped heartbeating; fail (with refund) those out of attempts.

        Also promotes staged tasks of any account with free slots, repairing promotions a crash may have missed.
        """
        with self.tx() as conn:
            return sweep_expired(conn, self.clock.now(), limit)
