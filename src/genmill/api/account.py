"""Account endpoints: info, active tasks grouped by PiAPI's model keys, and paged history."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Query

from genmill.api.deps import AccountDep, ServicesDep
from genmill.api.envelope import ok
from genmill.api.openapi import KEYED, errors
from genmill.domain.boundary import INT64_MAX
from genmill.domain.catalog import USD
from genmill.domain.model_keys import model_key
from genmill.domain.states import TaskStatus
from genmill.domain.wire import task_public
from genmill.errors import InvalidRequest

router = APIRouter(tags=["account"], responses=errors(*KEYED))


@router.get("/account/info", summary="Account credits and limits")
def account_info(account: AccountDep, services: ServicesDep) -> dict[str, Any]:
    account = services.accounts.get(account.account_id)  # fresh balances, never the key cache's copy
    b = account.balances
    return ok(
        {
            "account_id": account.account_id,
            "account_name": account.name,
            # PiAPI's official CLI prints `name`, else "#" + `id`: both spellings are answered.
            "id": account.account_id,
            "name": account.name,
            "plan": account.plan,
            "is_enable": account.is_enabled,
            "max_concurrent_task_count": account.max_concurrency,
            "equivalent_in_usd": round(b.available / USD, 7),
            "credit_pack_info": {
                "available_credits": b.available,
                "frozen_credits": b.frozen,
                "used_credits": b.used,
                "total_credits": b.total,
            },
        }
    )


@router.get("/account/active_tasks", summary="Pending, processing and staged tasks by PiAPI model key")
def active_tasks(account: AccountDep, services: ServicesDep) -> dict[str, Any]:
    groups: dict[str, dict[str, Any]] = {}
    for task in services.tasks.active(account.account_id):
        group = groups.setdefault(
            model_key(task.family), {"pending_count": 0, "processing_count": 0, "staged_count": 0, "active_tasks": []}
        )
        group[f"{task.status.value}_count"] += 1
        group["active_tasks"].append(task_public(task))
    return ok(groups)


def _unix(value: int | None, field: str) -> datetime | None:
    if value is None:
        return None
    try:
        return datetime.fromtimestamp(value, UTC)
    except (OverflowError, OSError, ValueError) as exc:
        raise InvalidRequest(f"{field}: not a valid unix time") from exc


@router.get("/api/open/tasks/histories", summary="The account's tasks, newest first")
def histories(
    account: AccountDep,
    services: ServicesDep,
    page: int = Query(1, ge=1, le=INT64_MAX),
    page_size: int = Query(10, ge=1, le=100),
    model: str = Query("", description="A PiAPI model key (flux, wan, ...), a model or a family; empty: all."),
    start_time: int | None = Query(None, ge=0, le=INT64_MAX, description="Unix seconds."),
    end_time: int | None = Query(None, ge=0, le=INT64_MAX, description="Unix seconds."),
    status: TaskStatus | None = Query(None, description="Only tasks in this status (our addition)."),
) -> dict[str, Any]:
    result = services.tasks.history(
        account.account_id,
        page=page,
        page_size=page_size,
        model=model or None,
        start=_unix(start_time, "start_time"),
        end=_unix(end_time, "end_time"),
        status=status,
    )
    return ok(
        {
            "data": [task_public(t) for t in result.tasks],
            "page": page,
            "size": page_size,
            "total": result.total,
        }
    )
