"""A create on PostgreSQL as one statement: admission, credit freeze, task, outbox event, delivery and notify.

The statement calls `genmill_admit_task` (a PL/pgSQL function, migration 0007) in its first CTE: the function
locks the account, checks it is enabled, looks up a live idempotency key, counts the account's active (and, at
its limit, staged) tasks and freezes the price, each with a snapshot of its own, so the counts see every create
that committed while it waited for the lock. The CTEs after it insert the task with the status the function
chose, its event (the snapshot's `status` set to match), the webhook delivery when there is one, and `pg_notify`
the event, all only when the task was admitted. A refusal writes nothing (but the removal of an expired
idempotency key, which any later create would remove too), as the portable create's refusals do.

The function returns the facts it decided on (the account's flags and buckets, the counts), and `decide` makes
the decision again with `genmill.domain`'s rules on those facts: the refusal a client sees is the domain's (its
message and detail), and a function that decided otherwise (a database migrated by another version of genmill)
fails the create with `AdmissionDisagreement`, which rolls the transaction back, rather than being trusted.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from genmill.domain.admission import staged_admission, starts_pending
from genmill.domain.ledger import Balances, LedgerEntry, LedgerKind
from genmill.domain.ledger import apply as apply_entry
from genmill.domain.records import EventRef, Idempotency, NewTask, Task
from genmill.domain.states import TaskStatus
from genmill.domain.wire import task_public
from genmill.errors import Forbidden, InsufficientCredits, NotFound, TooManyTasks
from genmill.store.base import PENDING_EVENTS
from genmill.store.events import webhook_delivery
from genmill.store.pg_statements import NOTIFY_CHANNEL
from genmill.store.rows import ACTIVE
from genmill.store.tables import task_events, tasks

STATUS_EVENT = "status"
_TASK_COLUMNS = (*(field.name for field in fields(Task)), "updated_at")


class AdmissionDisagreement(RuntimeError):
    """`genmill_admit_task` decided otherwise than `genmill.domain` on the same facts: the database's function is
    not the one this version of genmill ships (run `genmill db upgrade`)."""


@dataclass(frozen=True)
class Admission:
    """What `genmill_admit_task` saw and decided, and the event the statement wrote when it admitted the task."""

    outcome: str
    """"admitted", or why not: "no_account", "disabled", "replay", "too_many", "insufficient"."""
    status: str | None
    is_enabled: bool | None
    max_concurrency: int | None
    active: int | None
    staged: int | None
    balances: Balances | None
    event_id: int | None


def _statement(with_delivery: bool) -> sa.TextClause:
    columns = ", ".join(_TASK_COLUMNS)
    values = ", ".join("gate.r_status" if name == "status" else f":i_{name}" for name in _TASK_COLUMNS)
    delivery = """, dl AS (
            INSERT INTO webhook_deliveries
                (delivery_id, event_id, task_id, account_id, endpoint, state, attempts, next_attempt_at, created_at)
            SELECT :d_delivery_id, ev.event_id, ev.task_id, ev.account_id, :d_endpoint, 'pending', 0, :now, :now
            FROM ev
        )"""
    sql = f"""
        WITH gate AS MATERIALIZED (
            SELECT * FROM genmill_admit_task(
                :account_id, :task_id, :price, :now, :active, :pending, :staged, :max_staged, :freeze,
                :key, :request_hash, :key_expires_at)
        ), w AS (
            INSERT INTO tasks ({columns}) SELECT {values} FROM gate WHERE gate.r_outcome = 'admitted'
        ), ev AS (
            INSERT INTO task_events (task_id, account_id, kind, status, snapshot, created_at)
            SELECT :task_id, :account_id, :kind, gate.r_status,
                   jsonb_set(CAST(:snapshot AS jsonb), '{{status}}', to_jsonb(gate.r_status)), :now
            FROM gate WHERE gate.r_outcome = 'admitted'
            RETURNING event_id, task_id, account_id, status
        ){delivery if with_delivery else ""}
        SELECT gate.*, ev.event_id,
               CASE WHEN ev.event_id IS NOT NULL THEN pg_notify('{NOTIFY_CHANNEL}', json_build_array(
                   ev.event_id, ev.task_id, ev.account_id, ev.status, CAST(:kind AS text), {str(with_delivery).lower()},
                   CAST(:i_model AS text), CAST(:i_task_type AS text), CAST(:i_pool AS text)
               )::text) END AS notified
        FROM gate LEFT JOIN ev ON true
    """
    binds = [
        sa.bindparam(f"i_{c.name}", type_=c.type) for c in tasks.c if c.name in _TASK_COLUMNS and c.name != "status"
    ]
    binds += [
        sa.bindparam("now", type_=task_events.c.created_at.type),
        sa.bindparam("key_expires_at", type_=task_events.c.created_at.type),
        sa.bindparam("snapshot", type_=task_events.c.snapshot.type),
        sa.bindparam("price", type_=sa.BigInteger),
        sa.bindparam("active", type_=sa.ARRAY(sa.Text)),
    ]
    return sa.text(sql).bindparams(*binds)


_STATEMENTS = {with_delivery: _statement(with_delivery) for with_delivery in (False, True)}


def admit(
    conn: sa.Connection, new: NewTask, idempotency: Idempotency | None, now: datetime, max_staged: int
) -> Task | None:
    """Create the task in one statement; returns it, or None when a live idempotency key names an earlier task
    (the caller replays it: the account stays locked, so the key cannot change meanwhile). Raises the domain's
    refusal otherwise."""
    task_id = str(uuid.uuid4())
    drafted = new.admitted(task_id, TaskStatus.PENDING, now)  # its status is the function's to choose
    delivery = webhook_delivery(new.config)
    params: dict[str, Any] = {f"i_{n}": getattr(drafted, n) for n in _TASK_COLUMNS if n not in ("status", "updated_at")}
    params |= {
        "i_updated_at": now,
        "account_id": new.account_id,
        "task_id": task_id,
        "price": new.price,
        "now": now,
        "active": list(ACTIVE),
        "pending": TaskStatus.PENDING.value,
        "staged": TaskStatus.STAGED.value,
        "max_staged": max_staged,
        "freeze": LedgerKind.FREEZE.value,
        "key": idempotency.key if idempotency else None,
        "request_hash": idempotency.request_hash if idempotency else None,
        "key_expires_at": now + idempotency.ttl if idempotency else None,
        "kind": STATUS_EVENT,
        "snapshot": task_public(drafted),
    }
    if delivery is not None:
        params |= {"d_delivery_id": delivery["delivery_id"], "d_endpoint": delivery["endpoint"]}
    row = conn.execute(_STATEMENTS[delivery is not None], params).one()._mapping
    admission = Admission(
        outcome=row["r_outcome"],
        status=row["r_status"],
        is_enabled=row["r_is_enabled"],
        max_concurrency=row["r_max_concurrency"],
        active=row["r_active"],
        staged=row["r_staged"],
        balances=None if row["r_available"] is None else Balances(row["r_available"], row["r_frozen"], row["r_used"]),
        event_id=row["event_id"],
    )
    status = decide(admission, new, max_staged)
    if status is None:
        return None
    task = new.admitted(task_id, status, now)
    assert admission.event_id is not None
    ref = EventRef(
        admission.event_id,
        task_id,
        new.account_id,
        status.value,
        STATUS_EVENT,
        delivery is not None,
        new.model,
        new.task_type,
        new.pool,
        task,
    )
    conn.info.setdefault(PENDING_EVENTS, []).append(ref)
    return task


def _agree(holds: bool, admission: Admission) -> None:
    if not holds:
        raise AdmissionDisagreement(
            f"genmill_admit_task answered {admission.outcome!r} (status {admission.status!r}) where genmill's "
            f"rules decide otherwise on the same facts: {admission}; run `genmill db upgrade`"
        )


def decide(admission: Admission, new: NewTask, max_staged: int) -> TaskStatus | None:
    """The domain's decision on the facts the function saw: the new task's status, None for a replay, or the
    domain's refusal raised. Raises `AdmissionDisagreement` where the function decided otherwise."""
    if admission.outcome == "no_account":
        raise NotFound(f"account {new.account_id} not found")
    if not admission.is_enabled:
        _agree(admission.outcome == "disabled", admission)
        raise Forbidden("this account is disabled")
    if admission.outcome == "replay":
        return None
    assert admission.active is not None and admission.max_concurrency is not None and admission.balances is not None
    try:
        status = TaskStatus.PENDING
        if not starts_pending(admission.active, admission.max_concurrency):
            _agree(admission.staged is not None, admission)
            status = staged_admission(int(admission.staged or 0), max_staged)
        apply_entry(admission.balances, LedgerEntry(LedgerKind.FREEZE, new.price))
    except TooManyTasks:
        _agree(admission.outcome == "too_many", admission)
        raise
    except InsufficientCredits:
        _agree(admission.outcome == "insufficient", admission)
        raise
    _agree(
        admission.outcome == "admitted" and admission.status == status.value and admission.event_id is not None,
        admission,
    )
    return status
