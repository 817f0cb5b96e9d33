"""Task endpoints: create, get, cancel (both forms), cancel many, and the live event stream.

Create and get honour `Prefer: wait=N` (our addition): the answer is held until the task is terminal or N
seconds (at most 60) pass. Waiting costs no thread and no polling, and waits and event streams of one task share
one feed (`genmill.api.streams`): one read and one encoding per change, however many watch. Each account holds
at most `GENMILL_MAX_STREAMS_PER_ACCOUNT` of them open per process; one more is a 429 before anything happens.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Response
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.concurrency import run_in_threadpool

from genmill.api.deps import AccountDep, CreatingAccountDep, Services, ServicesDep
from genmill.api.envelope import ok
from genmill.api.openapi import KEYED, errors
from genmill.api.schemas import TaskCreate
from genmill.api.streams import StreamWithSlot
from genmill.domain.records import Task
from genmill.domain.states import TERMINAL
from genmill.domain.wire import task_public
from genmill.errors import DatabaseUnavailable, InvalidRequest

router = APIRouter(tags=["tasks"], responses=errors(*KEYED))

MAX_WAIT_SECONDS = 60.0
_WAIT = re.compile(r"(?:^|[,;\s])wait\s*=\s*(\d+(?:\.\d+)?)", re.IGNORECASE)

PreferHeader = Annotated[
    str | None, Header(description="`wait=N` holds the answer until the task is terminal or N (≤ 60) seconds pass.")
]


def requested_wait(prefer: str | None) -> float:
    """Seconds asked for by `Prefer: wait=N`, capped at 60; 0 when absent (unknown preferences are ignored)."""
    match = _WAIT.search(prefer or "")
    return min(float(match.group(1)), MAX_WAIT_SECONDS) if match else 0.0


async def answer_when_ended(services: Services, task: Task, seconds: float, headers: dict[str, str]) -> Response:
    """The task as GET shows it once it has ended or `seconds` passed. Every waiter of a task shares its feed:
    the terminal answer is read and encoded once for all of them."""
    if task.status not in TERMINAL:
        ended = await services.feeds.wait_for_end(task.task_id, seconds)
        if ended is not None:
            return Response(ended, media_type="application/json", headers=headers)
        task = await run_in_threadpool(services.tasks.get, task.account_id, task.task_id)
    return JSONResponse(ok(task_public(task)), headers=headers)


@router.post("/api/v1/task", summary="Create a task", responses=errors(402, 403, 409, 413, 429), response_model=None)
async def create_task(
    body: TaskCreate,
    account: CreatingAccountDep,
    services: ServicesDep,
    response: Response,
    prefer: PreferHeader = None,
    idempotency_key: Annotated[
        str | None, Header(description="Repeat-safe create: the same key and body within 24 h return the same task.")
    ] = None,
) -> dict[str, Any] | Response:
    config = body.config.model_dump() if body.config else None
    wait = requested_wait(prefer)
    # A wait's stream slot is taken before the task exists: a 429 then leaves nothing behind to retry over.
    slot = services.quotas.streams.acquire(account.account_id) if wait else None
    try:
        task, replayed = await run_in_threadpool(
            services.tasks.create_task,
            account,
            body.model,
            body.task_type,
            body.input,
            config,
            idempotency_key=idempotency_key,
        )
        headers = {"Idempotent-Replayed": "true"} if replayed else {}
        if not wait:
            response.headers.update(headers)
            return ok(task_public(task))
        headers["Preference-Applied"] = f"wait={wait:g}"
        try:
            return await answer_when_ended(services, task, wait, headers)
        except DatabaseUnavailable:
            # The task is committed: answer it as created, never a 503 that invites a second, billed create.
            response.headers.update({k: v for k, v in headers.items() if k != "Preference-Applied"})
            return ok(task_public(task))
    finally:
        if slot is not None:
            slot.release()


@router.get("/api/v1/task/{task_id}", summary="Get a task", responses=errors(404), response_model=None)
async def get_task(
    task_id: str, account: AccountDep, services: ServicesDep, response: Response, prefer: PreferHeader = None
) -> dict[str, Any] | Response:
    wait = requested_wait(prefer)
    if not wait:
        task = await run_in_threadpool(services.tasks.get, account.account_id, task_id)
        return ok(task_public(task))
    with services.quotas.streams.hold(account.account_id):
        task = await run_in_threadpool(services.tasks.get, account.account_id, task_id)
        headers = {"Preference-Applied": f"wait={wait:g}"}
        return await answer_when_ended(services, task, wait, headers)


@router.get(
    "/api/v1/task/{task_id}/events",
    summary="Live task events as Server-Sent Events (our addition)",
    response_class=StreamingResponse,
    responses=errors(404),
)
async def task_events(
    task_id: str,
    account: AccountDep,
    services: ServicesDep,
    last_event_id: Annotated[str | None, Header(description="Resume after this event id.")] = None,
) -> StreamingResponse:
    """`event: status|progress`, `id: <event id>`, `data: <the task as GET returns it>`; ends after a terminal
    status. A reconnecting client sends `Last-Event-ID` and receives what it missed first."""
    await run_in_threadpool(services.tasks.get, account.account_id, task_id)  # 404 for foreign tasks
    try:
        after = int(last_event_id) if last_event_id else 0
    except ValueError as exc:
        raise InvalidRequest("Last-Event-ID: must be an event id from this stream") from exc
    slot = services.quotas.streams.acquire(account.account_id)  # 429 beyond the account's open streams
    return StreamWithSlot(
        services.feeds.stream(task_id, after),
        slot,
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


def _cancel(task_id: str, account_id: str, services: ServicesDep) -> dict[str, Any]:
    """PiAPI documents the message only; `data` is the cancelled task as GET now shows it (our choice), so a
    client that reads `data` sees the released credits and the `cancelled` status without a second request."""
    task = services.tasks.cancel(account_id, task_id)
    return ok(task_public(task), message=f"task {task_id} canceled")


@router.delete("/api/v1/task/{task_id}", summary="Cancel a pending or staged task", responses=errors(404))
def cancel_task(task_id: str, account: AccountDep, services: ServicesDep) -> dict[str, Any]:
    return _cancel(task_id, account.account_id, services)


@router.post("/api/v1/task/{task_id}/cancel", summary="Cancel a pending or staged task", responses=errors(404, 413))
def cancel_task_post(task_id: str, account: AccountDep, services: ServicesDep) -> dict[str, Any]:
    return _cancel(task_id, account.account_id, services)


@router.delete("/api/v1/tasks", summary="Cancel every pending/staged task created before a time")
def cancel_tasks(
    account: AccountDep,
    services: ServicesDep,
    created_before: int = Query(..., ge=0, description="Unix seconds."),
    model: str = Query("all", description="A PiAPI model key (kling, mj, ...), a model family or name, or 'all'."),
) -> dict[str, Any]:
    try:
        before = datetime.fromtimestamp(created_before, UTC)
    except (OverflowError, OSError, ValueError) as exc:
        raise InvalidRequest("created_before: not a valid unix time") from exc
    family = None if model in ("", "all") else model
    ids = services.tasks.cancel_many(account.account_id, created_before=before, model=family)
    return ok({"cancelled_task_ids": ids, "count": len(ids)}, message=f"{len(ids)} tasks canceled")
