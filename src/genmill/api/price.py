"""`POST /api/v1/price` (our addition): what a create with this body would cost, without creating anything.

The body is the create's body; the answer is the price in credits (and dollars), whether this deployment accepts
the entry now and what would run it. The dashboard's playground quotes every form change through it.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from starlette.concurrency import run_in_threadpool

from genmill.api.deps import AccountDep, ServicesDep
from genmill.api.envelope import ok
from genmill.api.openapi import KEYED, errors
from genmill.api.schemas import TaskCreate
from genmill.engine.quotes import quote

router = APIRouter(tags=["tasks"], responses=errors(*KEYED))


@router.post("/api/v1/price", summary="Quote a task's price without creating it", responses=errors(413))
async def price(body: TaskCreate, account: AccountDep, services: ServicesDep) -> dict[str, Any]:
    config = body.config.model_dump() if body.config else None
    quoted = await run_in_threadpool(
        quote, services.tasks, account.account_id, body.model, body.task_type, body.input, config
    )
    return ok(quoted.wire())
