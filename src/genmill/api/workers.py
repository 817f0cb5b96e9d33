"""The HTTP worker protocol (see `genmill.worker.protocol` and docs/workers.md).

Authenticated with a worker token (`Authorization: Bearer gmw_…`), never with an API key. A token bound to an
account is that account's private pool: its workers only ever see the account's `service_mode: private` tasks.
Every rule (leases, pools, capabilities, which inputs a worker may read, which outputs it may store) is the
worker gate's (`genmill.engine.gate`), shared with the in-process workers; this module maps HTTP onto it.
"""

from __future__ import annotations

import asyncio
import time
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, Response, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.concurrency import run_in_threadpool

from genmill.api.deps import ServicesDep
from genmill.api.openapi import AUTHENTICATED, errors
from genmill.domain.records import WorkerToken
from genmill.engine.gate import WorkerIdentity
from genmill.errors import Unauthorized
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

router = APIRouter(prefix="/api/v1/workers", tags=["workers"], responses=errors(*AUTHENTICATED, 413))
MAX_OUTPUT_BYTES = 512 * 1024 * 1024
LEASED = errors(404, 409)
"""A call on a leased task: an unknown task is a 404, a lease that is not current (or another pool's) a 409."""


WORKER_BEARER = HTTPBearer(
    scheme_name="WorkerToken",
    description="A worker token (`genmill workers token create`), never an API key.",
    auto_error=False,  # a missing token is our 401 in the envelope, not FastAPI's
)


def worker_token(
    services: ServicesDep, credentials: Annotated[HTTPAuthorizationCredentials | None, Security(WORKER_BEARER)]
) -> WorkerToken:
    if credentials is None or not credentials.credentials.strip():
        raise Unauthorized("missing worker token: send 'Authorization: Bearer <token>'")
    return services.gate.authenticate(credentials.credentials.strip())


TokenDep = Annotated[WorkerToken, Depends(worker_token)]


@router.post("/register", response_model=RegisterResponse, summary="Register a worker and what it can run")
def register(body: RegisterRequest, token: TokenDep, services: ServicesDep) -> RegisterResponse:
    registered = services.gate.register(token, body.name, [(c.model, c.task_type) for c in body.capabilities])
    return RegisterResponse(
        worker_id=registered.worker_id,
        pool=registered.pool,
        lease_seconds=registered.lease_seconds,
        heartbeat_seconds=registered.heartbeat_seconds,
    )


@router.post(
    "/claim",
    response_model=ClaimResponse,
    summary="Long-poll for the next task this worker can run",
    responses=errors(404),
)
async def claim(body: ClaimRequest, token: TokenDep, services: ServicesDep) -> ClaimResponse:
    """Claims at once when a task is pending; otherwise waits until one this worker can run becomes pending
    (`genmill.bus` wakes one waiting worker per such task, not all of them) or `wait_seconds` pass."""
    deadline = time.monotonic() + body.wait_seconds
    worker = await run_in_threadpool(services.gate.registered, token, body.worker_id)
    with services.bus.watch_pending(worker.capabilities, worker.pool) as pending:
        while True:
            pending.take()
            got = await run_in_threadpool(services.gate.claim, worker)
            if got is not None:
                return ClaimResponse(task=ClaimedTask.from_claim(got))
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return ClaimResponse(task=None)
            try:
                await asyncio.wait_for(pending.wait(), remaining)
            except TimeoutError:
                return ClaimResponse(task=None)


@router.post(
    "/claim_more",
    response_model=ClaimMoreResponse,
    summary="Lease more tasks for a batch (no waiting)",
    responses=errors(404),
)
def claim_more(body: ClaimMoreRequest, token: TokenDep, services: ServicesDep) -> ClaimMoreResponse:
    worker = services.gate.registered(token, body.worker_id)
    claims = services.gate.claim_more(worker, body.model, body.task_type, body.match, body.limit)
    return ClaimMoreResponse(tasks=[ClaimedTask.from_claim(c) for c in claims])


@router.post("/tasks/{task_id}/heartbeat", response_model=HeartbeatResponse, summary="Renew a lease", responses=LEASED)
def heartbeat(task_id: str, body: Heartbeat, token: TokenDep, services: ServicesDep) -> HeartbeatResponse:
    worker = WorkerIdentity.holding(token)
    expires = services.gate.heartbeat(worker, task_id, body.lease_id, body.logs, body.detail)
    return HeartbeatResponse(lease_expires_at=expires, cancel_requested=False)


@router.post("/tasks/{task_id}/complete", summary="Complete a task with its output (bills it)", responses=LEASED)
def complete(task_id: str, body: Completion, token: TokenDep, services: ServicesDep) -> dict[str, str]:
    services.gate.complete(WorkerIdentity.holding(token), task_id, body.lease_id, body.output, body.logs, body.detail)
    return {"status": "completed"}


@router.post("/tasks/{task_id}/fail", summary="Fail a task (releases its credits)", responses=LEASED)
def fail(task_id: str, body: Failure, token: TokenDep, services: ServicesDep) -> dict[str, str]:
    services.gate.fail(WorkerIdentity.holding(token), task_id, body.lease_id, body.error, body.logs, body.detail)
    return {"status": "failed"}


@router.post(
    "/tasks/{task_id}/input",
    summary="Resolve one input reference of a leased task to bytes",
    responses=errors(404, 409, 410),
)
def read_input(task_id: str, body: InputRequest, token: TokenDep, services: ServicesDep) -> Response:
    found = services.gate.read_input(WorkerIdentity.holding(token), task_id, body.lease_id, body.ref, body.field)
    return Response(found.data, media_type=found.content_type, headers={"X-Genmill-Name": found.name})


@router.put(
    "/tasks/{task_id}/outputs",
    response_model=OutputStored,
    summary="Store an output file of a leased task",
    responses=LEASED,
    openapi_extra={
        "requestBody": {
            "required": True,
            "description": "The file's raw bytes (at most 512 MiB).",
            "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
        }
    },
)
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
    url = await run_in_threadpool(
        services.gate.save_output, WorkerIdentity.holding(token), task_id, lease_id, data, ext, content_type
    )
    return OutputStored(url=url)
