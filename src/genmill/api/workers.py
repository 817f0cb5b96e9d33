"""The HTTP worker protocol (see `genmill.worker.protocol` and docs/workers.md).

Authenticated with a worker token (`Authorization: Bearer gmw_…`), never with an API key. A token bound to an
account is that account's private pool: its workers only ever see the account's `service_mode: private` tasks.
"""

from __future__ import annotations

import asyncio
import time
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, Response
from starlette.concurrency import run_in_threadpool

from genmill.api.deps import Services, ServicesDep
from genmill.bus import PENDING_WORK
from genmill.domain.records import Claim, Task, WorkerToken
from genmill.errors import Conflict, InvalidRequest, Unauthorized
from genmill.worker.protocol import (
    ClaimedTask,
    ClaimMoreRequest,
    ClaimMoreResponse,
    ClaimRequest,
    ClaimResponse,
    Completion,
    Failure,
    Heartbeat,
    HeartbeatResponse,
    InputRequest,
    OutputStored,
    RegisterRequest,
    RegisterResponse,
)

router = APIRouter(prefix="/api/v1/workers", tags=["workers"])
MAX_OUTPUT_BYTES = 512 * 1024 * 1024


def worker_token(request: Request, services: ServicesDep) -> WorkerToken:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("missing worker token: send 'Authorization: Bearer <token>'")
    return services.store.workers.authenticate(token.strip())


TokenDep = Annotated[WorkerToken, Depends(worker_token)]


@router.post("/register", response_model=RegisterResponse, summary="Register a worker and what it can run")
def register(body: RegisterRequest, token: TokenDep, services: ServicesDep) -> RegisterResponse:
    capabilities = [(c.model, c.task_type) for c in body.capabilities]
    unknown = [f"{m}/{t}" for m, t in capabilities if services.catalog.get(m, t) is None]
    if unknown:
        raise InvalidRequest(f"capabilities: not in the catalog: {', '.join(unknown[:10])}")
    worker_id = services.store.workers.register(token, body.name, capabilities)
    return RegisterResponse(
        worker_id=worker_id,
        pool=token.pool,
        lease_seconds=services.lease_seconds,
        heartbeat_seconds=services.heartbeat_seconds,
    )


def _claim(services: Services, token: WorkerToken, worker_id: str) -> Claim | None:
    pool, capabilities = services.store.workers.worker(token, worker_id)
    return services.store.leases.claim_next_task(worker_id, capabilities, services.lease_seconds, pool=pool)


@router.post("/claim", response_model=ClaimResponse, summary="Long-poll for the next task this worker can run")
async def claim(body: ClaimRequest, token: TokenDep, services: ServicesDep) -> ClaimResponse:
    deadline = time.monotonic() + body.wait_seconds
    with services.bus.watch(PENDING_WORK) as pending:
        while True:
            pending.clear()
            got = await run_in_threadpool(_claim, services, token, body.worker_id)
            if got is not None:
                return ClaimResponse(task=ClaimedTask.from_claim(got))
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return ClaimResponse(task=None)
            try:
                await asyncio.wait_for(pending.wait(), remaining)
            except TimeoutError:
                return ClaimResponse(task=None)


OUTPUT_TYPES = ("image/", "video/", "audio/", "model/", "application/octet-stream")


@router.post("/claim_more", response_model=ClaimMoreResponse, summary="Lease more tasks for a batch (no waiting)")
def claim_more(body: ClaimMoreRequest, token: TokenDep, services: ServicesDep) -> ClaimMoreResponse:
    pool, capabilities = services.store.workers.worker(token, body.worker_id)
    if (body.model, body.task_type) not in capabilities:
        raise InvalidRequest(f"model: this worker did not register {body.model}/{body.task_type}")
    claims = services.store.leases.claim_matching(
        body.worker_id,
        body.model,
        body.task_type,
        match=body.match,
        limit=body.limit,
        lease_seconds=services.lease_seconds,
        pool=pool,
    )
    return ClaimMoreResponse(tasks=[ClaimedTask.from_claim(c) for c in claims])


def _check_lease(services: Services, token: WorkerToken, task_id: str, lease_id: str) -> Task:
    """The lease must be current and the task in the token's pool (a foreign lease is refused like a stale one)."""
    task = services.store.tasks.get_any(task_id)
    if task.lease_id != lease_id or task.pool != token.pool:
        raise Conflict(f"lease {lease_id} on task {task_id} is not current")
    return task


def _mentions(value: object, ref: str) -> bool:
    """Whether `ref` appears as a string anywhere in the task's input (nested lists and objects included)."""
    if isinstance(value, str):
        return value == ref
    if isinstance(value, dict):
        return any(_mentions(v, ref) for v in value.values())
    if isinstance(value, list):
        return any(_mentions(v, ref) for v in value)
    return False


@router.post("/tasks/{task_id}/heartbeat", response_model=HeartbeatResponse, summary="Renew a lease")
def heartbeat(task_id: str, body: Heartbeat, token: TokenDep, services: ServicesDep) -> HeartbeatResponse:
    task = _check_lease(services, token, task_id, body.lease_id)
    if task.worker_id:
        services.store.workers.touch(task.worker_id)
    expires = services.store.leases.heartbeat(
        task_id, body.lease_id, services.lease_seconds, logs=body.logs, detail=body.detail
    )
    return HeartbeatResponse(lease_expires_at=expires, cancel_requested=False)


@router.post("/tasks/{task_id}/complete", summary="Complete a task with its output (bills it)")
def complete(task_id: str, body: Completion, token: TokenDep, services: ServicesDep) -> dict[str, str]:
    _check_lease(services, token, task_id, body.lease_id)
    services.store.leases.complete(task_id, body.lease_id, body.output, logs=body.logs, detail=body.detail)
    return {"status": "completed"}


@router.post("/tasks/{task_id}/fail", summary="Fail a task (releases its credits)")
def fail(task_id: str, body: Failure, token: TokenDep, services: ServicesDep) -> dict[str, str]:
    _check_lease(services, token, task_id, body.lease_id)
    services.store.leases.fail(task_id, body.lease_id, body.error, logs=body.logs, detail=body.detail)
    return {"status": "failed"}


@router.post("/tasks/{task_id}/input", summary="Resolve one input reference of a leased task to bytes")
def read_input(task_id: str, body: InputRequest, token: TokenDep, services: ServicesDep) -> Response:
    task = _check_lease(services, token, task_id, body.lease_id)
    if not _mentions(task.input, body.ref):
        raise InvalidRequest("ref: a worker may only read references that appear in its task's input")
    found = services.inputs.resolve(body.ref, field=body.field)
    return Response(found.data, media_type=found.content_type, headers={"X-Genmill-Name": found.name})


@router.put("/tasks/{task_id}/outputs", response_model=OutputStored, summary="Store an output file of a leased task")
async def store_output(
    task_id: str,
    request: Request,
    token: TokenDep,
    services: ServicesDep,
    lease_id: str = Query(...),
    ext: str = Query(..., pattern=r"^[a-z0-9]{1,8}$"),
    content_type: str = Query(..., max_length=100),
) -> OutputStored:
    data = await request.body()
    return await run_in_threadpool(_store_output, services, token, task_id, lease_id, ext, content_type, data)


def _store_output(
    services: Services, token: WorkerToken, task_id: str, lease_id: str, ext: str, content_type: str, data: bytes
) -> OutputStored:
    if not content_type.lower().startswith(OUTPUT_TYPES):
        raise InvalidRequest(f"content_type: outputs must be media ({', '.join(OUTPUT_TYPES)}), not {content_type!r}")
    task = _check_lease(services, token, task_id, lease_id)
    entry = services.catalog.get(task.model, task.task_type)
    assert entry is not None
    blob = services.files.save(
        data,
        kind="output",
        ext=ext,
        content_type=content_type,
        retention=entry.retention,
        account_id=task.account_id,
        task_id=task_id,
    )
    return OutputStored(url=services.files.blob_url(blob))
