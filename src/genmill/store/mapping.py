"""Rows to records: the only place that knows column names on the way out of the database."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from genmill.domain.ledger import Balances
from genmill.domain.records import Account, Task
from genmill.domain.states import TaskStatus


def to_account(row: sa.Row[Any]) -> Account:
    m = row._mapping
    return Account(
        account_id=m["account_id"],
        name=m["name"],
        plan=m["plan"],
        is_enabled=m["is_enabled"],
        max_concurrency=m["max_concurrency"],
        balances=Balances(m["available_credits"], m["frozen_credits"], m["used_credits"]),
        created_at=m["created_at"],
    )


def to_task(row: sa.Row[Any]) -> Task:
    m = row._mapping
    return Task(
        task_id=m["task_id"],
        account_id=m["account_id"],
        model=m["model"],
        task_type=m["task_type"],
        family=m["family"],
        status=TaskStatus(m["status"]),
        input=m["input"],
        config=m["config"],
        output=m["output"],
        detail=m["detail"],
        logs=list(m["logs"] or []),
        error=m["error"],
        price=m["price"],
        frozen_credits=m["frozen_credits"],
        consumed_credits=m["consumed_credits"],
        service_mode=m["service_mode"],
        priority=m["priority"],
        attempts=m["attempts"],
        max_attempts=m["max_attempts"],
        created_at=m["created_at"],
        started_at=m["started_at"],
        ended_at=m["ended_at"],
        outputs_deleted_at=m["outputs_deleted_at"],
        lease_id=m["lease_id"],
        lease_expires_at=m["lease_expires_at"],
        worker_id=m["worker_id"],
        retention_seconds=m["retention_seconds"],
        pool=m["pool"],
        usage_type=m["usage_type"],
    )
