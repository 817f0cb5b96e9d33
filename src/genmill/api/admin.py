"""The admin API (`/admin/...`): what an operator does without a shell on the server.

Every route takes an operator token (`genmill admin token create`) as `Authorization: Bearer gmo_...`. An
account's API key or a worker token is refused with 403 (it is a credential, but not one that administers);
a missing, unknown or revoked operator token is a 401. The operations are `genmill.engine.admin`'s.

Revoking a key or disabling an account clears this process's key cache at once; other replicas stop accepting
the key within GENMILL_AUTH_CACHE_SECONDS.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Header, Query, Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.concurrency import run_in_threadpool

from genmill.api.admin_schemas import (
    AccountCreate,
    AccountOut,
    AccountUpdate,
    Capability,
    InProcessWorkersOut,
    KeyCreate,
    KeyCreated,
    KeyOut,
    QueueRow,
    RemoteWorkerOut,
    TopUpCreate,
    TopUpOut,
    WebhookFailure,
    WorkersOut,
    WorkerTokenCreate,
    WorkerTokenCreated,
    WorkerTokenOut,
)
from genmill.api.deps import ServicesDep
from genmill.api.openapi import AUTHENTICATED, errors
from genmill.domain.credentials import OPERATOR_TOKEN_PREFIX
from genmill.domain.records import OperatorToken
from genmill.engine.admin import Administration
from genmill.errors import Forbidden, Unauthorized

OPERATOR_BEARER = HTTPBearer(
    scheme_name="OperatorToken",
    description="An operator token (`genmill admin token create`), never an account's API key or a worker token.",
    auto_error=False,  # a missing token is our 401 in the envelope, not FastAPI's
)


def get_admin(request: Request) -> Administration:
    admin: Administration = request.app.state.admin
    return admin


AdminDep = Annotated[Administration, Depends(get_admin)]


async def get_operator(
    admin: AdminDep, credentials: Annotated[HTTPAuthorizationCredentials | None, Security(OPERATOR_BEARER)]
) -> OperatorToken:
    token = credentials.credentials.strip() if credentials is not None else ""
    if not token:
        raise Unauthorized("missing operator token: send 'Authorization: Bearer <operator token>'")
    if not token.startswith(OPERATOR_TOKEN_PREFIX):
        raise Forbidden(
            "the admin API takes an operator token (genmill admin token create), not an API key or worker token"
        )
    operator = await run_in_threadpool(admin.authenticate, token)
    if operator is None:
        raise Unauthorized("invalid or revoked operator token")
    return operator


OperatorDep = Annotated[OperatorToken, Depends(get_operator)]

router = APIRouter(prefix="/admin", tags=["admin"], responses=errors(*AUTHENTICATED, 403))


@router.get("/accounts", summary="Every account with its credits and limits")
def list_accounts(_: OperatorDep, admin: AdminDep) -> list[AccountOut]:
    return [AccountOut.of(a) for a in admin.accounts()]


@router.post("/accounts", summary="Create an account", responses=errors(413))
def create_account(body: AccountCreate, _: OperatorDep, admin: AdminDep) -> AccountOut:
    return AccountOut.of(admin.create_account(body.name, credits=body.credits, max_concurrency=body.max_concurrency))


@router.get("/accounts/{account_id}", summary="One account with its current credits", responses=errors(404))
def get_account(account_id: str, _: OperatorDep, admin: AdminDep) -> AccountOut:
    return AccountOut.of(admin.account(account_id))


@router.patch(
    "/accounts/{account_id}", summary="Enable or disable an account, or change its limits", responses=errors(404, 413)
)
def update_account(
    account_id: str, body: AccountUpdate, _: OperatorDep, admin: AdminDep, services: ServicesDep
) -> AccountOut:
    account = admin.update_account(account_id, is_enabled=body.is_enabled, max_concurrency=body.max_concurrency)
    services.keys.clear()  # a disabled account's cached keys stop working now
    return AccountOut.of(account)


@router.post(
    "/accounts/{account_id}/topups",
    summary="Add credits, once per Idempotency-Key",
    description=(
        "The Idempotency-Key header is required: a retried request with the same key, account and credits adds"
        " nothing and answers the first top-up (`replayed: true`); the same key with another account or amount is"
        " a 409. One ledger entry per top-up."
    ),
    responses=errors(404, 409, 413),
)
def topup(
    account_id: str,
    body: TopUpCreate,
    operator: OperatorDep,
    admin: AdminDep,
    idempotency_key: Annotated[str, Header(alias="Idempotency-Key")] = "",
) -> TopUpOut:
    account, done = admin.topup(account_id, body.credits, idempotency_key.strip(), operator)
    return TopUpOut(
        idempotency_key=done.idempotency_key,
        credits=done.credits,
        created_at=done.created_at,
        replayed=done.replayed,
        account=AccountOut.of(account),
    )


@router.get("/accounts/{account_id}/keys", summary="An account's API keys (never their secrets)", responses=errors(404))
def account_keys(account_id: str, _: OperatorDep, admin: AdminDep) -> list[KeyOut]:
    admin.account(account_id)
    return [KeyOut.of(k) for k in admin.api_keys(account_id)]


@router.post(
    "/accounts/{account_id}/keys",
    summary="Create an API key; its secret is in this answer only",
    responses=errors(404, 413),
)
def create_key(account_id: str, body: KeyCreate, _: OperatorDep, admin: AdminDep) -> KeyCreated:
    secret, key = admin.create_key(account_id, body.name)
    return KeyCreated(key=KeyOut.of(key), secret=secret)


@router.get("/keys", summary="Every API key (never their secrets)")
def list_keys(_: OperatorDep, admin: AdminDep) -> list[KeyOut]:
    return [KeyOut.of(k) for k in admin.api_keys()]


@router.delete("/keys/{key_id}", summary="Revoke an API key", responses=errors(404))
def revoke_key(key_id: str, _: OperatorDep, admin: AdminDep, services: ServicesDep) -> KeyOut:
    admin.revoke_key(key_id)
    services.keys.clear()  # the revoked key stops working on this replica now, not after the cache's TTL
    return next(KeyOut.of(k) for k in admin.api_keys() if k.key_id == key_id)


@router.get("/worker-tokens", summary="Every worker token (never their secrets)")
def list_worker_tokens(_: OperatorDep, admin: AdminDep) -> list[WorkerTokenOut]:
    return [WorkerTokenOut.of(t) for t in admin.worker_tokens()]


@router.post(
    "/worker-tokens", summary="Create a worker token; its secret is in this answer only", responses=errors(404, 413)
)
def create_worker_token(body: WorkerTokenCreate, _: OperatorDep, admin: AdminDep) -> WorkerTokenCreated:
    secret, token = admin.create_worker_token(body.name, body.account_id)
    return WorkerTokenCreated(token=WorkerTokenOut.of(token), secret=secret)


@router.delete("/worker-tokens/{token_id}", summary="Revoke a worker token", responses=errors(404))
def revoke_worker_token(token_id: str, _: OperatorDep, admin: AdminDep) -> WorkerTokenOut:
    admin.revoke_worker_token(token_id)
    return next(WorkerTokenOut.of(t) for t in admin.worker_tokens() if t.token_id == token_id)


@router.get("/workers", summary="Workers online: this process's threads and the remote workers seen lately")
def list_workers(_: OperatorDep, admin: AdminDep) -> WorkersOut:
    local = admin.in_process_workers()
    return WorkersOut(
        in_process=InProcessWorkersOut(
            slots=local.slots,
            capabilities=[Capability(model=m, task_type=t) for m, t in local.capabilities],
            loaded_backends=local.loaded_backends,
            memory_used_bytes=local.memory_used_bytes,
        ),
        remote=[
            RemoteWorkerOut(
                worker_id=w.worker_id,
                name=w.name,
                pool=w.pool,
                capabilities=[Capability(model=m, task_type=t) for m, t in w.capabilities],
                registered_at=w.registered_at,
                last_seen_at=w.last_seen_at,
            )
            for w in admin.remote_workers()
        ],
    )


@router.get("/queue", summary="Tasks waiting, per model, task type, pool and status")
def queue(_: OperatorDep, admin: AdminDep) -> list[QueueRow]:
    return [
        QueueRow(model=q.model, task_type=q.task_type, pool=q.pool, status=q.status, count=q.count)
        for q in admin.queue()
    ]


@router.get("/webhooks/failures", summary="The latest webhook deliveries a receiver did not take")
def webhook_failures(
    _: OperatorDep, admin: AdminDep, limit: Annotated[int, Query(ge=1, le=500)] = 50
) -> list[WebhookFailure]:
    return [WebhookFailure.of(row) for row in admin.webhook_failures(limit)]
