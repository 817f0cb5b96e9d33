"""What every legacy route does the same way: create the unified task, and read one task of a legacy family.

A legacy create goes through `TaskEngine.create_task` exactly as `POST /api/v1/task` does (same validation,
serving check, price, freeze, webhooks), so the task it makes is the unified task; an input error is phrased with
the legacy field names. A legacy fetch answers only tasks of its own family: another family's task, like another
account's, is not found.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

from starlette.concurrency import run_in_threadpool

from genmill.api.deps import Services
from genmill.domain.legacy import LegacyCreate, legacy_field_message
from genmill.domain.records import Account
from genmill.domain.wire import task_public
from genmill.errors import InvalidRequest, NotFound


async def create_unified(
    services: Services, account: Account, create: LegacyCreate, renames: Mapping[str, str] | None = None
) -> str:
    """Create the task a legacy request stands for and return its id."""
    try:
        task, _ = await run_in_threadpool(
            services.tasks.create_task, account, create.model, create.task_type, create.input, create.config
        )
    except InvalidRequest as exc:
        raise type(exc)(legacy_field_message(exc.message, renames), detail=exc.detail) from exc
    return task.task_id


async def read_task(
    services: Services, account: Account, task_id: str, entries: Collection[tuple[str, str]]
) -> dict[str, Any]:
    """The account's task in the unified wire shape, when it is one of `entries` (model, task_type)."""
    task = await run_in_threadpool(services.tasks.get, account.account_id, task_id)
    if (task.model, task.task_type) not in entries:
        raise NotFound("task not found")
    return task_public(task)


def refused(exc: ValueError) -> InvalidRequest:
    """A legacy body a mapping refused (its message names the field) as the 400 it is."""
    return InvalidRequest(str(exc))
