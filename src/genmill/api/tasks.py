"""Task endpoints: create, get, cancel (both forms), cancel many."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Query

from genmill.api.deps import AccountDep, ServicesDep
from genmill.api.envelope import ok
from genmill.api.schemas import TaskCreate
from genmill.domain.wire import task_public
from genmill.errors import InvalidRequest

router = APIRouter(tags=["tasks"])


@router.post("/api/v1/task", summary="Create a task")
def create_task(body: TaskCreate, account: AccountDep, services: ServicesDep) -> dict[str, Any]:
    config = body.config.model_dump() if body.config else None
    task = services.tasks.create_task(account, body.model, body.task_type, body.input, config)
    return ok(task_public(task))


@router.get("/api/v1/task/{task_id}", summary="Get a task")
def get_task(task_id: str, account: AccountDep, services: ServicesDep) -> dict[str, Any]:
    return ok(task_public(services.store.tasks.get(account.account_id, task_id)))


def _cancel(task_id: str, account_id: str, services: ServicesDep) -> dict[str, Any]:
    services.store.tasks.cancel(account_id, task_id)
    return {"code": 200, "message": f"task {task_id} canceled"}


@router.delete("/api/v1/task/{task_id}", summary="Cancel a pending or staged task")
def cancel_task(task_id: str, account: AccountDep, services: ServicesDep) -> dict[str, Any]:
    return _cancel(task_id, account.account_id, services)


@router.post("/api/v1/task/{task_id}/cancel", summary="Cancel a pending or staged task")
def cancel_task_post(task_id: str, account: AccountDep, services: ServicesDep) -> dict[str, Any]:
    return _cancel(task_id, account.account_id, services)


@router.delete("/api/v1/tasks", summary="Cancel every pending/staged task created before a time")
def cancel_tasks(
    account: AccountDep,
    services: ServicesDep,
    created_before: int = Query(..., ge=0, description="Unix seconds."),
    model: str = Query("all", description="A model family, a model name, or 'all'."),
) -> dict[str, Any]:
    try:
        before = datetime.fromtimestamp(created_before, UTC)
    except (OverflowError, OSError, ValueError) as exc:
        raise InvalidRequest("created_before: not a valid unix time") from exc
    family = None if model in ("", "all") else model
    ids = services.store.tasks.cancel_many(account.account_id, created_before=before, model=family)
    return ok({"cancelled_task_ids": ids, "count": len(ids)}, message=f"{len(ids)} tasks canceled")
