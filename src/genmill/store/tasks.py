"""Client-side task queries: create (with its credit freeze), read, list, cancel.

Each public method is one transaction. Creating a task locks the account row first, so the concurrency count,
the staged limit and the credit freeze are decided on a consistent view on SQLite and PostgreSQL alike.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from genmill.domain.admission import staged_admission, starts_pending
from genmill.domain.clock import SYSTEM_CLOCK, Clock
from genmill.domain.ledger import LedgerKind
from genmill.domain.records import Account, Idempotency, NewTask, Task, TaskPage
from genmill.domain.states import LIVE, TaskEvent, TaskStatus, cancel_refusal
from genmill.errors import Conflict, Forbidden, InvalidRequest, NotFound
from genmill.store.base import Publisher, Queries
from genmill.store.events import STATUS, emit
from genmill.store.group_commit import GroupCommit
from genmill.store.mapping import to_task
from genmill.store.pg_create import AdmissionDisagreement, admit
from genmill.store.pg_statements import task_insert
from genmill.store.rows import ACTIVE, count_tasks, end_task, lock_account, move_credits
from genmill.store.tables import idempotency_keys, tasks

_SELECT_OWN_TASK = sa.select(tasks).where(
    tasks.c.task_id == sa.bindparam("b_task_id"), tasks.c.account_id == sa.bindparam("b_account_id")
)


def model_filter(model: str, families: Sequence[str]) -> sa.ColumnElement[bool]:
    """Tasks of the model named `model`, of the family `model`, or of any of `families`."""
    chosen = [tasks.c.model == model, tasks.c.family == model]
    if families:
        chosen.append(tasks.c.family.in_(list(families)))
    return sa.or_(*chosen)


class TaskStore(Queries):
    def __init__(
        self,
        engine: sa.Engine,
        *,
        max_staged_per_account: int = 50,
        publish: Publisher | None = None,
        clock: Clock = SYSTEM_CLOCK,
        group_commit: bool = False,
    ) -> None:
        super().__init__(engine, publish, clock=clock)
        self.max_staged = max_staged_per_account
        self.group_commit = GroupCommit(self.tx, self._create_in) if group_commit else None
        """With `group_commit`, concurrent creates share transactions (`genmill.store.group_commit`)."""

    def create(self, new: NewTask, *, idempotency: Idempotency | None = None) -> tuple[Task, bool]:
        """Insert the task as pending (or staged at the concurrency limit) and freeze its price.

        With an idempotency key, a repeat of the same request within the key's lifetime returns the task the
        first one made (and `True`), and a different request under the same key is a 409. The account row lock
        taken first serialises creates of one account, so two racing repeats cannot both insert.
        """
        if self.group_commit is not None:
            return self.group_commit.create(new, idempotency)
        with self.tx() as conn:
            return self._create_in(conn, new, idempotency)

    def _create_in(self, conn: sa.Connection, new: NewTask, idempotency: Idempotency | None) -> tuple[Task, bool]:
        """`create` inside the caller's transaction. Every refusal is raised before this create writes anything
        (group commit relies on it: a refused create leaves the shared transaction as it found it)."""
        now = self.clock.now()
        if conn.dialect.name == "postgresql":  # one statement (genmill.store.pg_create)
            created = admit(conn, new, idempotency, now, self.max_staged)
            if created is not None:
                return created, False
            assert idempotency is not None
            existing = self._replay(conn, new.account_id, idempotency, now)
            if existing is None:
                raise AdmissionDisagreement("genmill_admit_task found a live idempotency key that is not there")
            return existing, True
        account = lock_account(conn, new.account_id)
        if not account.is_enabled:
            raise Forbidden("this account is disabled")
        if idempotency is not None:
            existing = self._replay(conn, new.account_id, idempotency, now)
            if existing is not None:
                return existing, True
        task = self._insert(conn, new, account, now)
        if idempotency is not None:
            conn.execute(
                sa.insert(idempotency_keys).values(
                    account_id=new.account_id,
                    key=idempotency.key,
                    request_hash=idempotency.request_hash,
                    task_id=task.task_id,
                    created_at=now,
                    expires_at=now + idempotency.ttl,
                )
            )
        return task, False

    def replay(self, account_id: str, idempotency: Idempotency) -> Task | None:
        """The task an earlier request with this key made, when the key is live and the request the same (a
        different request under the key is a 409); None otherwise. Read before the create's checks, so that a
        repeat answers the task it made even where a check would now refuse it (an origin's window has passed);
        `create` checks again under the account lock, for repeats that race."""
        with self.tx() as conn:
            return self._replay(conn, account_id, idempotency, self.clock.now())

    @staticmethod
    def _replay(conn: sa.Connection, account_id: str, idempotency: Idempotency, now: datetime) -> Task | None:
        row = conn.execute(
            sa.select(idempotency_keys).where(
                idempotency_keys.c.account_id == account_id, idempotency_keys.c.key == idempotency.key
            )
        ).one_or_none()
        if row is None:
            return None
        if row.expires_at <= now:
            conn.execute(
                sa.delete(idempotency_keys).where(
                    idempotency_keys.c.account_id == account_id, idempotency_keys.c.key == idempotency.key
                )
            )
            return None
        if row.request_hash != idempotency.request_hash:
            raise Conflict(
                "Idempotency-Key: this key was already used with a different request body; use a new key",
                detail={"task_id": row.task_id},
            )
        return to_task(conn.execute(sa.select(tasks).where(tasks.c.task_id == row.task_id)).one())

    def _insert(self, conn: sa.Connection, new: NewTask, account: Account, now: datetime) -> Task:
        task_id = str(uuid.uuid4())
        status = TaskStatus.PENDING
        if not starts_pending(count_tasks(conn, account.account_id, ACTIVE), account.max_concurrency):
            staged = count_tasks(conn, account.account_id, (TaskStatus.STAGED.value,))
            status = staged_admission(staged, self.max_staged)
        # Freeze before the insert: InsufficientCredits leaves nothing written.
        move_credits(conn, account, LedgerKind.FREEZE, new.price, task_id, now)
        task = new.admitted(task_id, status, now)
        row = {field.name: getattr(task, field.name) for field in dataclasses.fields(task)}
        write = task_insert({**row, "status": status.value, "updated_at": now})
        return emit(conn, task_id, STATUS, now, task=task, write=write)

    def get(self, account_id: str, task_id: str) -> Task:
        """The task if it belongs to the account; otherwise NotFound (never reveal another account's task)."""
        with self.read() as conn:
            row = conn.execute(_SELECT_OWN_TASK, {"b_task_id": task_id, "b_account_id": account_id}).one_or_none()
        if row is None:
            raise NotFound(f"task {task_id} not found")
        return to_task(row)

    def get_any(self, task_id: str) -> Task:
        """Operator/worker read without the account check."""
        with self.read() as conn:
            row = conn.execute(sa.select(tasks).where(tasks.c.task_id == task_id)).one_or_none()
        if row is None:
            raise NotFound(f"task {task_id} not found")
        return to_task(row)

    def cancel(self, account_id: str, task_id: str) -> Task:
        with self.tx() as conn:
            row = conn.execute(
                sa.select(tasks).where(tasks.c.task_id == task_id, tasks.c.account_id == account_id).with_for_update()
            ).one_or_none()
            if row is None:
                raise NotFound(f"task {task_id} not found")
            task = to_task(row)
            refusal = cancel_refusal(task.status)
            if refusal:
                raise InvalidRequest(f"task {task_id} cannot be cancelled: {refusal}")
            end_task(conn, task, TaskEvent.CANCEL, self.clock.now(), log_line="cancelled by the client")
            row = conn.execute(sa.select(tasks).where(tasks.c.task_id == task_id)).one()
        return to_task(row)

    def cancel_many(
        self, account_id: str, *, created_before: datetime, model: str | None, families: Sequence[str] = ()
    ) -> list[str]:
        """Cancel every pending/staged task created before the time, optionally of one model or family (`model`)
        or of any of `families` (the families of a PiAPI model key, as the engine resolved it)."""
        cancellable = (TaskStatus.PENDING.value, TaskStatus.STAGED.value)
        with self.tx() as conn:
            query = sa.select(tasks).where(
                tasks.c.account_id == account_id,
                tasks.c.status.in_(cancellable),
                tasks.c.created_at < created_before,
            )
            if model:
                query = query.where(model_filter(model, families))
            rows = conn.execute(query.order_by(tasks.c.created_at).with_for_update()).all()
            # Staged first: cancelling a pending task frees a slot and promotes the oldest staged task, which
            # must not be one we are about to cancel from a stale snapshot.
            ordered = sorted((to_task(r) for r in rows), key=lambda t: t.status is not TaskStatus.STAGED)
            now = self.clock.now()
            for task in ordered:
                end_task(conn, task, TaskEvent.CANCEL, now, log_line="cancelled by the client")
        return [t.task_id for t in ordered]

    def history(
        self,
        account_id: str,
        *,
        page: int,
        page_size: int,
        model: str | None = None,
        families: Sequence[str] = (),
        start: datetime | None = None,
        end: datetime | None = None,
        status: TaskStatus | None = None,
    ) -> TaskPage:
        conditions: list[Any] = [tasks.c.account_id == account_id]
        if status is not None:
            conditions.append(tasks.c.status == status.value)
        if model:
            conditions.append(model_filter(model, families))
        if start is not None:
            conditions.append(tasks.c.created_at >= start)
        if end is not None:
            conditions.append(tasks.c.created_at <= end)
        offset = (page - 1) * page_size
        with self.read() as conn:
            total = conn.execute(sa.select(sa.func.count()).select_from(tasks).where(*conditions)).scalar_one()
            if offset >= total:  # past the last task: nothing to read, and an offset past int64 is never bound
                return TaskPage([], int(total))
            rows = conn.execute(
                sa.select(tasks)
                .where(*conditions)
                .order_by(tasks.c.created_at.desc(), tasks.c.task_id.desc())
                .limit(page_size)
                .offset(offset)
            ).all()
        return TaskPage([to_task(r) for r in rows], int(total))

    def active(self, account_id: str) -> list[Task]:
        with self.read() as conn:
            rows = conn.execute(
                sa.select(tasks)
                .where(tasks.c.account_id == account_id, tasks.c.status.in_([s.value for s in LIVE]))
                .order_by(tasks.c.created_at)
            ).all()
        return [to_task(r) for r in rows]
