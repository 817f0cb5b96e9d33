"""PostgreSQL forms of the hot steps: several statements of the task path folded into one round trip each.

On PostgreSQL every statement is a network round trip, and each costs the server, psycopg and SQLAlchemy about
as much as the work it carries. The steps below do the same writes as the portable statements they replace
(same rows, same ledger entries, same events, same lock order), but as one statement, with data-modifying CTEs:

- the outbox event, its webhook delivery and the `pg_notify` that announces it, with the task row's own insert or
  update (was three or four statements);
- a ledger movement: the account's new buckets and the ledger entry (was two);
- the end of a task (`genmill.store.rows.finish_task`): the account's buckets, its ledger entries, the task's
  update and its event, and the probe for staged tasks a freed slot could start (was four to six).

The claim's one statement (the fair pick and the lease) is `genmill.store.claims.claim_statement`; a create is
one statement around a server-side function (`genmill.store.pg_create`).

Where a step stays two statements, the second depends on what the first read under a lock, and Python decides
it: a task's end reads the task and its account locked, then `genmill.domain.settlement` decides the ledger
movements and the status written by the one statement after; a claim's event carries the wire snapshot of the row
the claim leased (`genmill.domain.wire`). Folding those too would restate the settlement and the wire view in
SQL. The create's admission is the exception: its rules are two comparisons and a subtraction, which the
function restates and the domain checks again on the facts it returns (`genmill.store.pg_create`), because a
count under the account's row lock must be a statement of its own (in READ COMMITTED a statement's snapshot is
taken before it waits for a lock, so a count folded into the locking statement could miss a create that
committed while it waited; inside a PL/pgSQL function each statement takes a snapshot of its own).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from genmill.domain.states import TaskStatus
from genmill.store.tables import accounts, ledger, task_events, tasks, webhook_deliveries

NOTIFY_CHANNEL = "genmill_events"

_EVENT_COLUMNS = ("task_id", "account_id", "kind", "status", "snapshot", "created_at")


def _event_statement(with_delivery: bool) -> sa.Select[Any]:
    """Insert the event (and its webhook delivery), announce it with `pg_notify`, and return its id.

    The notification's payload is the same JSON array `genmill.store.events.encode_ref` writes."""
    event = (
        sa.insert(task_events)
        .values({name: sa.bindparam(f"e_{name}", type_=task_events.c[name].type) for name in _EVENT_COLUMNS})
        .returning(task_events.c.event_id, task_events.c.task_id, task_events.c.account_id)
        .cte("ev")
    )
    ref = sa.func.json_build_array(
        event.c.event_id,
        event.c.task_id,
        event.c.account_id,
        sa.cast(sa.bindparam("e_status", type_=sa.String), sa.Text),
        sa.cast(sa.bindparam("e_kind", type_=sa.String), sa.Text),
        sa.true() if with_delivery else sa.false(),
        sa.cast(sa.bindparam("e_model", type_=sa.String), sa.Text),
        sa.cast(sa.bindparam("e_task_type", type_=sa.String), sa.Text),
        sa.cast(sa.bindparam("e_pool", type_=sa.String), sa.Text),
    )
    statement = sa.select(event.c.event_id, sa.func.pg_notify(NOTIFY_CHANNEL, sa.cast(ref, sa.Text))).select_from(event)
    if with_delivery:
        delivery = (
            sa.insert(webhook_deliveries)
            .from_select(
                [
                    "delivery_id",
                    "event_id",
                    "task_id",
                    "account_id",
                    "endpoint",
                    "state",
                    "attempts",
                    "next_attempt_at",
                    "created_at",
                ],
                sa.select(
                    sa.bindparam("d_delivery_id", type_=sa.String),
                    event.c.event_id,
                    event.c.task_id,
                    event.c.account_id,
                    sa.bindparam("d_endpoint", type_=sa.String),
                    sa.literal("pending"),
                    sa.literal(0),
                    sa.bindparam("e_created_at", type_=task_events.c.created_at.type),
                    sa.bindparam("e_created_at", type_=task_events.c.created_at.type),
                ),
            )
            .cte("dl")
        )
        statement = statement.add_cte(delivery)
    return statement


@dataclass(frozen=True)
class Write:
    """A write the event's statement carries as one more data-modifying CTE, so that it costs no round trip of
    its own: the task row the event announces (its insert, or the update that ends it), and the account's
    buckets and ledger entries of a task that ends.

    `shape` names the statement's form (it keys the cache); `params` are its bound values, whose names must not
    clash with the event's (`e_`, `d_`) or each other's: `task_insert`, `task_update`, `account_balances` and
    `ledger_entries` use `i_`, `u_`, `wb_` and `wl<n>_`."""

    shape: tuple[str, ...]
    params: dict[str, Any]


def task_insert(row: dict[str, Any]) -> Write:
    return Write(("insert", *sorted(row)), {f"i_{name}": value for name, value in row.items()})


def task_update(task_id: str, values: dict[str, Any]) -> Write:
    params = {f"u_{name}": value for name, value in values.items()}
    return Write(("update", *sorted(values)), {**params, "u_task_id_key": task_id})


def account_balances(account_id: str, available: int, frozen: int, used: int) -> Write:
    """The account's three buckets as the ledger rules left them (the account row is locked by the caller)."""
    params = {"wb_account_id": account_id, "wb_available": available, "wb_frozen": frozen, "wb_used": used}
    return Write(("balances",), params)


def ledger_entries(rows: Sequence[dict[str, Any]]) -> Write:
    """Ledger rows (`account_id`, `task_id`, `kind`, `amount`, `created_at` each), inserted in order."""
    params = {f"wl{i}_{name}": value for i, row in enumerate(rows) for name, value in row.items()}
    return Write(("ledger", str(len(rows))), params)


_LEDGER_COLUMNS = ("account_id", "task_id", "kind", "amount", "created_at")


def _write_statement(shape: tuple[str, ...]) -> sa.Insert | sa.Update:
    kind, *names = shape
    if kind == "insert":
        return sa.insert(tasks).values({n: sa.bindparam(f"i_{n}", type_=tasks.c[n].type) for n in names})
    if kind == "balances":
        return (
            sa.update(accounts)
            .where(accounts.c.account_id == sa.bindparam("wb_account_id", type_=accounts.c.account_id.type))
            .values(
                available_credits=sa.bindparam("wb_available", type_=accounts.c.available_credits.type),
                frozen_credits=sa.bindparam("wb_frozen", type_=accounts.c.frozen_credits.type),
                used_credits=sa.bindparam("wb_used", type_=accounts.c.used_credits.type),
            )
        )
    if kind == "ledger":
        # One SELECT per row, UNION ALL: a multi-row VALUES insert is not cacheable in SQLAlchemy, and compiling
        # this statement anew each time costs more than running it.
        rows = [
            sa.select(*(sa.bindparam(f"wl{i}_{n}", type_=ledger.c[n].type) for n in _LEDGER_COLUMNS))
            for i in range(int(names[0]))
        ]
        return sa.insert(ledger).from_select(_LEDGER_COLUMNS, rows[0] if len(rows) == 1 else sa.union_all(*rows))
    return (
        sa.update(tasks)
        .where(tasks.c.task_id == sa.bindparam("u_task_id_key", type_=tasks.c.task_id.type))
        .values({n: sa.bindparam(f"u_{n}", type_=tasks.c[n].type) for n in names})
    )


_STAGED_PROBE = (
    sa.exists()
    .where(
        tasks.c.account_id == sa.bindparam("p_account_id", type_=tasks.c.account_id.type),
        tasks.c.status == TaskStatus.STAGED.value,
    )
    .label("has_staged")
)
"""Whether the account has staged tasks. Folded into the statement that ends a task, which runs after the
account's row lock (so its snapshot sees every create that committed before), and no create can stage a task
for the account while this transaction holds that lock."""

MAX_CACHED_SHAPES = 256
_events: dict[tuple[bool, tuple[tuple[str, ...], ...], bool], sa.Select[Any]] = {}
_writes: dict[tuple[str, ...], sa.Insert | sa.Update] = {}


def execute_write(conn: sa.Connection, write: Write) -> None:
    """`write` as a statement of its own (SQLite, which has no data-modifying CTEs)."""
    statement = _writes.get(write.shape)
    if statement is None:
        if len(_writes) >= MAX_CACHED_SHAPES:
            _writes.clear()
        statement = _writes[write.shape] = _write_statement(write.shape)
    conn.execute(statement, write.params)


def insert_event(
    conn: sa.Connection,
    values: dict[str, Any],
    delivery: dict[str, Any] | None,
    *,
    needs: tuple[str, str, str],
    writes: Sequence[Write] = (),
    staged_of: str | None = None,
) -> tuple[int, bool | None]:
    """Append one outbox event (and its delivery), with `writes`, and notify the listeners at commit, in one
    statement; returns the event id, and with `staged_of` (an account id) whether that account has staged tasks
    (None without it).

    `values` are the `task_events` columns; `delivery` the delivery id and endpoint, when there is one; `needs`
    the task's model, task type and pool, which the notification carries (`genmill.bus` wakes a worker that can
    run it)."""
    key = (delivery is not None, tuple(write.shape for write in writes), staged_of is not None)
    statement = _events.get(key)
    if statement is None:
        statement = _event_statement(with_delivery=delivery is not None)
        for i, write in enumerate(writes):
            statement = statement.add_cte(_write_statement(write.shape).cte(f"w{i}"))
        if staged_of is not None:
            statement = statement.add_columns(_STAGED_PROBE)
        if len(_events) >= MAX_CACHED_SHAPES:
            _events.clear()
        _events[key] = statement
    params = {f"e_{name}": values[name] for name in _EVENT_COLUMNS}
    params |= {"e_model": needs[0], "e_task_type": needs[1], "e_pool": needs[2]}
    if delivery is not None:
        params |= {"d_delivery_id": delivery["delivery_id"], "d_endpoint": delivery["endpoint"]}
    for write in writes:
        params |= write.params
    if staged_of is not None:
        params["p_account_id"] = staged_of
    row = conn.execute(statement, params).one()
    return int(row[0]), (None if staged_of is None else bool(row[-1]))


LEDGER_MOVEMENT = _write_statement(("ledger", "1")).add_cte(_write_statement(("balances",)).cte("balances"))
"""The account's new buckets and the ledger entry that moved them, in one statement."""
