"""The credit and transition helpers every task-changing transaction shares.

The statements of these hot paths are built once, with bound parameters, and executed with a parameter dict:
SQLAlchemy then reuses the compiled form and its cache key instead of rebuilding the expression on every call
(building one cost about four times executing it).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from genmill.domain import ledger as credit_rules
from genmill.domain.admission import free_slots
from genmill.domain.ledger import Balances, LedgerEntry, LedgerKind
from genmill.domain.records import Account, Task
from genmill.domain.settlement import settle
from genmill.domain.states import TaskEvent, TaskStatus, transition
from genmill.errors import NotFound
from genmill.store.events import SELECT_TASK, STATUS, emit, emit_with
from genmill.store.mapping import to_account, to_task
from genmill.store.pg_statements import LEDGER_MOVEMENT, Write, account_balances, ledger_entries, task_update
from genmill.store.tables import accounts, ledger, tasks

ACTIVE = (TaskStatus.PENDING.value, TaskStatus.PROCESSING.value)
MAX_LOG_LINES = 500

LOCK_ACCOUNT = sa.select(accounts).where(accounts.c.account_id == sa.bindparam("b_account_id")).with_for_update()
UPDATE_BALANCES = (
    sa.update(accounts)
    .where(accounts.c.account_id == sa.bindparam("b_account_id"))
    .values(
        available_credits=sa.bindparam("b_available"),
        frozen_credits=sa.bindparam("b_frozen"),
        used_credits=sa.bindparam("b_used"),
    )
)
INSERT_LEDGER = sa.insert(ledger)
COUNT_TASKS = (
    sa.select(sa.func.count())
    .select_from(tasks)
    .where(
        tasks.c.account_id == sa.bindparam("b_account_id"),
        tasks.c.status.in_(sa.bindparam("b_statuses", expanding=True)),
    )
)
LOCK_TASK = SELECT_TASK.with_for_update()
UPDATE_TASK = sa.update(tasks).where(tasks.c.task_id == sa.bindparam("b_task_id"))
"""Executed with `{"b_task_id": id, column: value, ...}`: the SET clause is the other keys."""
STAGED_OF_ACCOUNT = (
    sa.select(tasks.c.task_id, tasks.c.status)
    .where(tasks.c.account_id == sa.bindparam("b_account_id"), tasks.c.status == TaskStatus.STAGED.value)
    .order_by(tasks.c.created_at, tasks.c.task_id)
    .limit(sa.bindparam("b_limit"))
    .with_for_update()
)


LOCK_TASK_AND_ACCOUNT = (
    sa.select(tasks, *(column.label(f"account_{column.name}") for column in accounts.c))
    .join_from(tasks, accounts, tasks.c.account_id == accounts.c.account_id)
    .where(tasks.c.task_id == sa.bindparam("b_task_id"))
    .with_for_update()
)
"""The task and its account, both locked (the task's row first, as `select_task` then `lock_account` would)."""


def lock_task_and_account(conn: sa.Connection, task_id: str) -> tuple[Task, Account] | None:
    """The task and its account row, locked by one statement (one round trip instead of two).

    A lock wait re-reads the rows it waited for, so the account's buckets are the ones committed last."""
    row = conn.execute(LOCK_TASK_AND_ACCOUNT, {"b_task_id": task_id}).one_or_none()
    if row is None:
        return None
    m = row._mapping
    account = Account(
        account_id=m["account_account_id"],
        name=m["account_name"],
        plan=m["account_plan"],
        is_enabled=m["account_is_enabled"],
        max_concurrency=m["account_max_concurrency"],
        balances=Balances(m["account_available_credits"], m["account_frozen_credits"], m["account_used_credits"]),
        created_at=m["account_created_at"],
    )
    return to_task(row), account


LOCK_TASKS = (
    sa.select(tasks)
    .where(tasks.c.task_id.in_(sa.bindparam("b_task_ids", expanding=True)))
    .order_by(tasks.c.task_id)
    .with_for_update()
)
LOCK_ACCOUNTS = (
    sa.select(accounts)
    .where(accounts.c.account_id.in_(sa.bindparam("b_account_ids", expanding=True)))
    .order_by(accounts.c.account_id)
    .with_for_update()
)


def lock_batch(conn: sa.Connection, task_ids: list[str]) -> tuple[dict[str, Task], dict[str, Account]]:
    """Several tasks and their accounts, locked by two statements: tasks, then accounts, each in key order, so
    that two batches (or a batch and a single complete, which locks a task and then its account) cannot wait for
    each other in a cycle."""
    locked = {t.task_id: t for t in map(to_task, conn.execute(LOCK_TASKS, {"b_task_ids": sorted(task_ids)}))}
    account_ids = sorted({t.account_id for t in locked.values()})
    if not account_ids:
        return locked, {}
    rows = conn.execute(LOCK_ACCOUNTS, {"b_account_ids": account_ids})
    return locked, {a.account_id: a for a in map(to_account, rows)}


def lock_account(conn: sa.Connection, account_id: str) -> Account:
    row = conn.execute(LOCK_ACCOUNT, {"b_account_id": account_id}).one_or_none()
    if row is None:
        raise NotFound(f"account {account_id} not found")
    return to_account(row)


def update_task(conn: sa.Connection, task_id: str, values: dict[str, Any]) -> None:
    conn.execute(UPDATE_TASK, {"b_task_id": task_id, **values})


def select_task(conn: sa.Connection, task_id: str, *, lock: bool = False) -> Task | None:
    row = conn.execute(LOCK_TASK if lock else SELECT_TASK, {"b_task_id": task_id}).one_or_none()
    return None if row is None else to_task(row)


def credit_writes(
    account: Account, entries: Sequence[LedgerEntry], now: datetime
) -> tuple[Account, tuple[Write, Write]]:
    """The locked account after `entries` (the ledger rules refuse any that would make a bucket negative) and the
    two writes that record them on PostgreSQL: its buckets and the ledger rows."""
    balances = account.balances
    for entry in entries:
        balances = credit_rules.apply(balances, entry)
    rows = [
        {
            "account_id": account.account_id,
            "task_id": e.task_id,
            "kind": e.kind.value,
            "amount": e.amount,
            "created_at": now,
        }
        for e in entries
    ]
    buckets = account_balances(account.account_id, balances.available, balances.frozen, balances.used)
    return dataclasses.replace(account, balances=balances), (buckets, ledger_entries(rows))


def move_credits(
    conn: sa.Connection, account: Account, kind: LedgerKind, amount: int, task_id: str | None, now: datetime
) -> Account:
    """Apply one ledger rule to a locked account: update its buckets and append the ledger entry."""
    entry = LedgerEntry(kind, amount, task_id)
    if conn.dialect.name == "postgresql":  # one round trip for both (genmill.store.pg_statements)
        moved, (buckets, rows) = credit_writes(account, [entry], now)
        conn.execute(LEDGER_MOVEMENT, {**buckets.params, **rows.params})
        return moved
    balances = credit_rules.apply(account.balances, entry)
    conn.execute(
        UPDATE_BALANCES,
        {
            "b_account_id": account.account_id,
            "b_available": balances.available,
            "b_frozen": balances.frozen,
            "b_used": balances.used,
        },
    )
    conn.execute(
        INSERT_LEDGER,
        {"account_id": account.account_id, "task_id": task_id, "kind": kind.value, "amount": amount, "created_at": now},
    )
    return dataclasses.replace(account, balances=balances)


def count_tasks(conn: sa.Connection, account_id: str, statuses: tuple[str, ...]) -> int:
    return int(conn.execute(COUNT_TASKS, {"b_account_id": account_id, "b_statuses": list(statuses)}).scalar_one())


def promote_staged(conn: sa.Connection, account_id: str, now: datetime, *, account: Account | None = None) -> list[str]:
    """Move the oldest staged tasks to pending while the account has free concurrency slots.

    `account` is the account row already locked in this transaction, if the caller has it. Staged tasks are
    looked for first: most accounts have none, and then the slot count is never needed.
    """
    account = account or lock_account(conn, account_id)
    rows = conn.execute(STAGED_OF_ACCOUNT, {"b_account_id": account_id, "b_limit": account.max_concurrency}).all()
    if not rows:
        return []
    free = free_slots(account.max_concurrency, count_tasks(conn, account_id, ACTIVE))
    promoted = []
    for task_id, status in rows[:free]:
        new_status = transition(status, TaskEvent.PROMOTE)
        update_task(conn, task_id, {"status": new_status.value, "updated_at": now})
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
    usage_credits: int | None = None,
    account: Account | None = None,
    detail: dict[str, Any] | None = None,
) -> list[str]:
    """Finish a task; see `finish_task`, which also returns the account as this left it."""
    return finish_task(
        conn,
        task,
        event,
        now,
        output=output,
        error=error,
        log_line=log_line,
        usage_credits=usage_credits,
        account=account,
        detail=detail,
    )[0]


def finish_task(
    conn: sa.Connection,
    task: Task,
    event: TaskEvent,
    now: datetime,
    *,
    output: dict[str, Any] | None = None,
    error: dict[str, Any] | None = None,
    log_line: str | None = None,
    usage_credits: int | None = None,
    account: Account | None = None,
    detail: dict[str, Any] | None = None,
) -> tuple[list[str], Account]:
    """Finish a task (complete, fail or cancel) with its credit movement, in the caller's transaction.

    `genmill.domain.settlement.settle` decides the ending status, whether the frozen price is consumed or
    released (or, with `usage_credits`, how much of it is consumed and how much released), and whether a
    concurrency slot frees (then staged tasks of the account are promoted here too). Returns promoted ids.
    `account` is the task's account row when the caller has locked it already (`lock_task_and_account`);
    `detail`, when given, replaces the task's (`task` already carries it: a worker's last word).

    On PostgreSQL everything after the locks is one statement: the buckets, the ledger entries, the task's
    update, its event and the probe for staged tasks (`genmill.store.pg_statements`); promoting them, when there
    are some, takes its own statements.
    """
    settlement = settle(task.status, event, task.frozen_credits, task.task_id, usage_credits=usage_credits)
    new_status = settlement.status
    account = account or lock_account(conn, task.account_id)
    movements: tuple[Write, ...] = ()
    if conn.dialect.name != "postgresql":
        for entry in settlement.entries:
            account = move_credits(conn, account, entry.kind, entry.amount, task.task_id, now)
    elif settlement.entries:  # written with the task's update and event, in one statement
        entries = [LedgerEntry(e.kind, e.amount, task.task_id) for e in settlement.entries]
        account, movements = credit_writes(account, entries, now)
    consumed = settlement.consumed
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
    if detail is not None:
        values["detail"] = detail
    snapshot = dataclasses.replace(
        task,
        status=new_status,
        ended_at=now,
        frozen_credits=0,
        consumed_credits=values["consumed_credits"],
        lease_id=None,
        lease_expires_at=None,
        logs=values["logs"],
        output=output if output is not None else task.output,
        error=error if error is not None else task.error,
        detail=detail if detail is not None else task.detail,
    )
    writes = [*movements, task_update(task.task_id, values)]
    staged_of = task.account_id if settlement.frees_slot else None
    _, has_staged = emit_with(conn, task.task_id, STATUS, now, task=snapshot, writes=writes, staged_of=staged_of)
    if settlement.frees_slot and has_staged is not False:
        return promote_staged(conn, task.account_id, now, account=account), account
    return [], account
