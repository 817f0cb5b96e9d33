"""The transactional outbox: `emit` appends a task event (and its webhook delivery) inside the caller's transaction."""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from genmill.domain.records import EventRef, StoredEvent, Task
from genmill.domain.wire import task_public
from genmill.store.base import PENDING_EVENTS, Queries
from genmill.store.mapping import to_task
from genmill.store.pg_statements import NOTIFY_CHANNEL, Write, execute_write, insert_event
from genmill.store.tables import task_events, tasks, webhook_attempts, webhook_deliveries

__all__ = [
    "MAX_EVENT_ID",
    "NOTIFY_CHANNEL",
    "PROGRESS",
    "SELECT_TASK",
    "STATUS",
    "EventLog",
    "decode_ref",
    "emit",
    "emit_with",
    "encode_ref",
    "webhook_delivery",
]
STATUS = "status"
PROGRESS = "progress"
MAX_EVENT_ID = 2**31 - 1
"""`task_events.event_id` is a 32-bit integer (PostgreSQL's SERIAL): a stream resuming after this has nothing to
read, whatever 64-bit `Last-Event-ID` the API let through."""


SELECT_TASK = sa.select(tasks).where(tasks.c.task_id == sa.bindparam("b_task_id"))
_INSERT_EVENT = sa.insert(task_events)
_INSERT_DELIVERY = sa.insert(webhook_deliveries)


def webhook_delivery(config: dict[str, Any] | None) -> dict[str, str] | None:
    """The delivery id and endpoint of a new event of a task with this `config`; None when it has no webhook."""
    endpoint = str(((config or {}).get("webhook_config") or {}).get("endpoint") or "")
    return {"delivery_id": f"msg_{uuid.uuid4().hex}", "endpoint": endpoint} if endpoint else None


def emit(
    conn: sa.Connection, task_id: str, kind: str, now: datetime, *, task: Task | None = None, write: Write | None = None
) -> Task:
    """Snapshot the task as GET shows it now, append the event, and queue a webhook delivery if configured.

    `task` is the task as this transaction has just written it, when the caller knows it exactly (it saves
    reading the row back); otherwise the row is read. Returns the task as it was snapshotted, so a caller that
    needs it again does not read it a second time. `write`, the task row's own insert or update, is executed
    first; on PostgreSQL in the same statement as the event.
    """
    return emit_with(conn, task_id, kind, now, task=task, writes=() if write is None else (write,))[0]


def emit_with(
    conn: sa.Connection,
    task_id: str,
    kind: str,
    now: datetime,
    *,
    task: Task | None = None,
    writes: Sequence[Write] = (),
    staged_of: str | None = None,
) -> tuple[Task, bool | None]:
    """`emit`, with several writes executed first (on PostgreSQL in the event's statement) and, with `staged_of`
    (an account id, locked by the caller), whether that account has staged tasks: None where the engine cannot
    say it in the same statement (SQLite), and the caller looks for them itself."""
    if task is None:
        task = to_task(conn.execute(SELECT_TASK, {"b_task_id": task_id}).one())
    values = {
        "task_id": task.task_id,
        "account_id": task.account_id,
        "kind": kind,
        "status": task.status.value,
        "snapshot": task_public(task),
        "created_at": now,
    }
    delivery = webhook_delivery(task.config)
    has_staged: bool | None = None
    if conn.dialect.name == "postgresql":
        # One round trip: the event, its delivery and the pg_notify PostgreSQL delivers at commit to every
        # replica listening (see genmill.store.notify and genmill.store.pg_statements).
        needs = (task.model, task.task_type, task.pool)
        event_id, has_staged = insert_event(conn, values, delivery, needs=needs, writes=writes, staged_of=staged_of)
    else:
        for write in writes:
            execute_write(conn, write)
        key = conn.execute(_INSERT_EVENT, values).inserted_primary_key
        assert key is not None
        event_id = int(key[0])
        if delivery is not None:
            conn.execute(
                _INSERT_DELIVERY,
                {
                    **delivery,
                    "event_id": event_id,
                    "task_id": task.task_id,
                    "account_id": task.account_id,
                    "state": "pending",
                    "attempts": 0,
                    "next_attempt_at": now,
                    "created_at": now,
                },
            )
    ref = EventRef(
        event_id,
        task.task_id,
        task.account_id,
        task.status.value,
        kind,
        delivery is not None,
        task.model,
        task.task_type,
        task.pool,
        task,
    )
    conn.info.setdefault(PENDING_EVENTS, []).append(ref)
    return task, has_staged


def encode_ref(ref: EventRef) -> str:
    return json.dumps(
        [
            ref.event_id,
            ref.task_id,
            ref.account_id,
            ref.status,
            ref.kind,
            ref.has_delivery,
            ref.model,
            ref.task_type,
            ref.pool,
        ]
    )


def decode_ref(payload: str) -> EventRef:
    """The event a NOTIFY announced: nine fields, or the first six from a replica that does not say what the task
    needs of a worker (then it wakes every waiting worker, as it did)."""
    event_id, task_id, account_id, status, kind, has_delivery, *needs = json.loads(payload)
    model, task_type, pool = (str(value) for value in needs) if len(needs) == 3 else ("", "", "")
    return EventRef(
        int(event_id), str(task_id), str(account_id), str(status), str(kind), bool(has_delivery), model, task_type, pool
    )


def _to_event(row: sa.Row[Any]) -> StoredEvent:
    m = row._mapping
    return StoredEvent(m["event_id"], m["task_id"], m["kind"], m["status"], m["snapshot"], m["created_at"])


class EventLog(Queries):
    """Reads of the outbox for live progress streams and replay."""

    def events_after(self, task_id: str, after_event_id: int = 0, *, limit: int = 500) -> list[StoredEvent]:
        if after_event_id >= MAX_EVENT_ID:  # nothing can follow it, and PostgreSQL would refuse to compare it
            return []
        with self.read() as conn:
            rows = conn.execute(
                sa.select(task_events)
                .where(task_events.c.task_id == task_id, task_events.c.event_id > after_event_id)
                .order_by(task_events.c.event_id)
                .limit(limit)
            ).all()
        return [_to_event(r) for r in rows]

    def last_event_id(self, task_id: str) -> int:
        """The id of the task's latest event, 0 when it has none (on `ix_task_events_task`)."""
        with self.read() as conn:
            found = conn.execute(
                sa.select(sa.func.max(task_events.c.event_id)).where(task_events.c.task_id == task_id)
            ).scalar()
        return int(found or 0)

    def prune(self, older_than: datetime) -> int:
        """Delete settled webhook deliveries (with their attempts) and events older than the cut-off; an event
        with a delivery still pending is kept."""
        with self.tx() as conn:
            settled = sa.select(webhook_deliveries.c.delivery_id).where(
                webhook_deliveries.c.state != "pending", webhook_deliveries.c.created_at < older_than
            )
            conn.execute(sa.delete(webhook_attempts).where(webhook_attempts.c.delivery_id.in_(settled)))
            conn.execute(
                sa.delete(webhook_deliveries).where(
                    webhook_deliveries.c.state != "pending", webhook_deliveries.c.created_at < older_than
                )
            )
            unsettled = sa.select(webhook_deliveries.c.event_id).where(webhook_deliveries.c.state == "pending")
            result = conn.execute(
                sa.delete(task_events).where(
                    task_events.c.created_at < older_than, task_events.c.event_id.not_in(unsettled)
                )
            )
        return int(result.rowcount or 0)
