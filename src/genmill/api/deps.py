"""Request dependencies: the services container, API-key authentication and the per-key request rates."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request, Security
from fastapi.security import APIKeyHeader
from starlette.concurrency import run_in_threadpool

from genmill.api.keycache import KeyCache
from genmill.api.streams import TaskFeeds
from genmill.bus import EventBus
from genmill.domain.catalog import Catalog
from genmill.domain.records import Account
from genmill.engine import Accounts, TaskEngine, WorkerGate
from genmill.engine.chat import ChatEngine
from genmill.engine.images import ImageEngine
from genmill.engine.quotas import Quotas
from genmill.errors import Unauthorized
from genmill.storage.files import FileService
from genmill.worker.backendset import BackendSet


@dataclass
class Services:
    """Everything handlers need, built once by `create_app` (the composition root).

    There is no store here: handlers reach tasks through the engine (`tasks`, `gate`, `accounts`) and only map
    HTTP onto its calls and its answers back onto the wire.
    """

    tasks: TaskEngine
    accounts: Accounts
    gate: WorkerGate
    files: FileService
    catalog: Catalog
    backends: BackendSet
    max_upload_bytes: int
    bus: EventBus
    keys: KeyCache
    quotas: Quotas
    feeds: TaskFeeds
    chat: ChatEngine
    images: ImageEngine


def get_services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


API_KEY = APIKeyHeader(
    name="X-API-Key",
    scheme_name="APIKey",
    description="An account's API key (`genmill keys create`).",
    auto_error=False,  # a missing key is our 401 in the envelope, not FastAPI's
)
"""The `X-API-Key` header, declared as a security scheme so `/openapi.json` and the docs' Authorize button
know how every key-protected route authenticates."""


async def authenticate(api_key: str | None, services: Services) -> tuple[str, Account]:
    """The caller's API key and account. Async so that a cached key costs no trip through the thread pool."""
    # Starlette header lookup is case-insensitive: X-API-Key, x-api-key, X-Api-Key all match.
    key = (api_key or "").strip()
    if not key:
        raise Unauthorized("missing API key: send it in the X-API-Key header")
    account = services.keys.get(key)
    if account is None:
        account = await run_in_threadpool(services.accounts.authenticate, key)
        if account is None:
            raise Unauthorized("invalid API key")
        services.keys.put(key, account)
    return key, account


async def get_account(
    services: Annotated[Services, Depends(get_services)], api_key: Annotated[str | None, Security(API_KEY)]
) -> Account:
    """The caller's account, for any request but a create: it takes a token from the key's read bucket (429
    with `Retry-After` once the bucket is empty). Only keys that authenticated have buckets."""
    key, account = await authenticate(api_key, services)
    services.quotas.reads.check(key)
    return account


async def get_creating_account(
    services: Annotated[Services, Depends(get_services)], api_key: Annotated[str | None, Security(API_KEY)]
) -> Account:
    """The caller's account, for a request that creates something (a task, an upload): it takes a token from
    the key's create bucket instead."""
    key, account = await authenticate(api_key, services)
    services.quotas.creates.check(key)
    return account


ServicesDep = Annotated[Services, Depends(get_services)]
AccountDep = Annotated[Account, Depends(get_account)]
CreatingAccountDep = Annotated[Account, Depends(get_creating_account)]
