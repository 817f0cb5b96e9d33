"""The credit and transition helpers every task-changing transaction shares."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa

from genmill.domain import ledger as credit_rules
from genmill.domain.ledger import LedgerEntry, LedgerKind
from genmill.domain.records import Account, Task
from genmill.domain.states import TaskEvent, TaskStatus, transition
from genmill.errors import NotFound
from genmill.store.events import STATUS, emit
from genmill.store.mapping import to_account
from genmill.store.tables import accounts, ledger, tasks

ACTIVE = (TaskStatus.PENDING.value, TaskStatus.PROCESSING.value)
MAX_LOG_LINES = 500


def lock_account(conn: sa.Connection, account_id: str) -> Account:
    row = conn.execute(sa.select(accounts).where(accounts.c.account_id == account_id).with_for_update()).one_or_none()
    if row is None:
        raise NotFound(f"account {account_id} not found")
    return to_account(row)


def move_credits(
    conn: sa.Connection, account: Account, kind: LedgerKind, amount: int, task_id: str | None, now: datetime
) -> Account:
    """Apply one ledger rule to a locked account: update its buckets and append the ledger entry."""
    balances = credit_rules.apply(account.balances, LedgerEntry(kind, amount, task_id))
    conn.execute(
        sa.update(accounts)
        .where(accounts.c.account_id == account.account_id)
        .values(
            available_credits=balances.available,
            frozen_credits=balances.frozen,
            used_credits=balances.used,
        )
    )
    conn.execute(
        sa.insert(ledger).values(
            account_id=account.account_id, task_id=task_id, kind=kind.value, amount=amount, created_at=now
        )
    )
    return Account(**{**account.__dict__, "balances": balances})


def count_tasks(conn: sa.Connection, account_id: str, statuses: tuple[str, ...]) -> int:
    return int(
        conn.execute(
            sa.select(sa.func.count())
            .select_from(tasks)
            .where(tasks.c.account_id == account_id, tasks.c.status.in_(statuses))
        ).scalar_one()
    )


def promote_staged(conn: sa.Connection, account_id: str, now: datetime) -> list[str]:
    """Move the oldest staged tasks to pending while the account has free concurrency slots."""
    account = lock_account(conn, account_id)
    free = account.max_concurrency - count_tasks(conn, account_id, ACTIVE)
    if free <= 0:
        return []
    rows = conn.execute(
        sa.select(tasks.c.task_id, tasks.c.status)
        .where(tasks.c.account_id == account_id, tasks.c.status == TaskStatus.STAGED.value)
        .order_by(tasks.c.created_at, tasks.c.task_id)
        .limit(free)
        .with_for_update()
    ).all()
    promoted = []
    for task_id, status in rows:
        new_status = transition(status, TaskEvent.PROMOTE)
        conn.execute(sa.update(tasks).where(tasks.c.task_id == task_id).values(status=new_status.value, updated_at=now))
        emit(conn, task_id, STATUS, now)  # announces the new pending task: workers wake, webhooks fire
        promoted.append(task_id)
    return promoted


def end_task(
    conn: sa.Connection,
    task: Task,
    event: TaskEvent,
    now: datetime,
    *,
    output: dict[str, Any] | None = None,
    error: dict[str, Any] | None = None,
    log_line: str | None = None,
) -> list[str]:
    """Finish a task (complete, fail or cancel) with its credit movement, in the caller's transaction.

    Completion consumes the frozen price; failure and cancellation release it. A task that held a
    concurrency slot frees it, so staged tasks of the account are promoted here too. Returns promoted ids.
    """
    new_status = transition(task.status, event)
    account = lock_account(conn, task.account_id)
    consumed = 0
    if task.frozen_credits:
        if new_status is TaskStatus.COMPLETED:
            move_credits(conn, account, LedgerKind.CONSUME, task.frozen_credits, task.task_id, now)
            consumed = task.frozen_credits
        else:
            move_credits(conn, account, LedgerKind.RELEASE, task.frozen_credits, task.task_id, now)
    logs = task.logs + ([log_line] if log_line else [])
    values: dict[str, Any] = {
        "status": new_status.value,
        "ended_at": now,
        "updated_at": now,
        "frozen_credits": 0,
        "consumed_credits": task.consumed_credits + consumed,
        "lease_id": None,
        "lease_expires_at": None,
        "logs": logs[-MAX_LOG_LINES:],
    }
    if output is not None:
        values["output"] = output
    if error is not None:
        values["error"] = error
    conn.execute(sa.update(tasks).where(tasks.c.task_id == task.task_id).values(**values))
    emit(conn, task.task_id, STATUS, now)
    if task.status.is_active:
        return promote_staged(conn, task.account_id, now)
    return []
