"""Task endpoints: create, get, cancel (both forms), cancel many, and the live event stream.

Create and get honour `Prefer: wait=N` (our addition): the answer is held until the task is terminal or N
seconds (at most 60) pass. Waiting costs no thread and no polling: the handler awaits the event bus, which the
store feeds after each committed change.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Response
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from genmill.api.deps import AccountDep, Services, ServicesDep
from genmill.api.envelope import ok
from genmill.api.schemas import TaskCreate
from genmill.domain.records import Task
from genmill.domain.states import TERMINAL
from genmill.domain.wire import task_public
from genmill.errors import DatabaseUnavailable, InvalidRequest

router = APIRouter(tags=["tasks"])

MAX_WAIT_SECONDS = 60.0
SSE_KEEPALIVE_SECONDS = 15.0
_WAIT = re.compile(r"(?:^|[,;\s])wait\s*=\s*(\d+(?:\.\d+)?)", re.IGNORECASE)

PreferHeader = Annotated[
    str | None, Header(description="`wait=N` holds the answer until the task is terminal or N (≤ 60) seconds pass.")
]


def requested_wait(prefer: str | None) -> float:
    """Seconds asked for by `Prefer: wait=N`, capped at 60; 0 when absent (unknown preferences are ignored)."""
    match = _WAIT.search(prefer or "")
    return min(float(match.group(1)), MAX_WAIT_SECONDS) if match else 0.0


async def wait_until_terminal(services: Services, task: Task, seconds: float) -> Task:
    deadline = time.monotonic() + seconds
    with services.bus.watch(task.task_id) as changed:
        # Read again once subscribed: a change committed before the subscription would otherwise be missed.
        task = await run_in_threadpool(services.tasks.get, task.account_id, task.task_id)
        while task.status not in TERMINAL:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            try:
                await asyncio.wait_for(changed.wait(), remaining)
            except TimeoutError:
                break
            changed.clear()
            task = await run_in_threadpool(services.tasks.get, task.account_id, task.task_id)
    return task


@router.post("/api/v1/task", summary="Create a task")
async def create_task(
    body: TaskCreate,
    account: AccountDep,
    services: ServicesDep,
    response: Response,
    prefer: PreferHeader = None,
    idempotency_key: Annotated[
        str | None, Header(description="Repeat-safe create: the same key and body within 24 h return the same task.")
    ] = None,
) -> dict[str, Any]:
    config = body.config.model_dump() if body.config else None
    task, replayed = await run_in_threadpool(
        services.tasks.create_task,
        account,
        body.model,
        body.task_type,
        body.input,
        config,
        idempotency_key=idempotency_key,
    )
    if replayed:
        response.headers["Idempotent-Replayed"] = "true"
    wait = requested_wait(prefer)
    if wait:
        try:
            task = await wait_until_terminal(services, task, wait)
            response.headers["Preference-Applied"] = f"wait={wait:g}"
        except DatabaseUnavailable:
            pass  # the task is committed: answer it as created, never a 503 that invites a second, billed create
    return ok(task_public(task))


@router.get("/api/v1/task/{task_id}", summary="Get a task")
async def get_task(
    task_id: str, account: AccountDep, services: ServicesDep, response: Response, prefer: PreferHeader = None
) -> dict[str, Any]:
    task = await run_in_threadpool(services.tasks.get, account.account_id, task_id)
    wait = requested_wait(prefer)
    if wait:
        task = await wait_until_terminal(services, task, wait)
        response.headers["Preference-Applied"] = f"wait={wait:g}"
    return ok(task_public(task))


@router.get(
    "/api/v1/task/{task_id}/events",
    summary="Live task events as Server-Sent Events (our addition)",
    response_class=StreamingResponse,
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
    return StreamingResponse(
        _event_stream(services, task_id, after),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


async def _event_stream(services: Services, task_id: str, after: int) -> AsyncIterator[str]:
    with services.bus.watch(task_id) as changed:
        while True:
            changed.clear()
            events = await run_in_threadpool(services.tasks.events_after, task_id, after)
            for event in events:
                after = event.event_id
                yield f"id: {event.event_id}\nevent: {event.kind}\ndata: {json.dumps(event.snapshot)}\n\n"
                if event.kind == "status" and event.status in TERMINAL:
                    return
            if not events and await run_in_threadpool(services.tasks.is_terminal, task_id):
                return  # its events were pruned: the stream has nothing more to say
            try:
                await asyncio.wait_for(changed.wait(), SSE_KEEPALIVE_SECONDS)
            except TimeoutError:
                yield ": keep-alive\n\n"


def _cancel(task_id: str, account_id: str, services: ServicesDep) -> dict[str, Any]:
    services.tasks.cancel(account_id, task_id)
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
    ids = services.tasks.cancel_many(account.account_id, created_before=before, model=family)
    return ok({"cancelled_task_ids": ids, "count": len(ids)}, message=f"{len(ids)} tasks canceled")
