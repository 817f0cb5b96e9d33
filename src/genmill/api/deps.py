"""Request dependencies: the services container and API-key authentication."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from starlette.concurrency import run_in_threadpool

from genmill.api.keycache import KeyCache
from genmill.bus import EventBus
from genmill.domain.catalog import Catalog
from genmill.domain.records import Account
from genmill.errors import Unauthorized
from genmill.service import TaskService
from genmill.storage.files import FileService
from genmill.store import Store
from genmill.worker.backendset import BackendSet
from genmill.worker.inputs import InputResolver


@dataclass
class Services:
    """Everything handlers need, built once by `create_app` (the composition root)."""

    store: Store
    files: FileService
    catalog: Catalog
    backends: BackendSet
    tasks: TaskService
    max_upload_bytes: int
    bus: EventBus
    inputs: InputResolver
    lease_seconds: float
    heartbeat_seconds: float
    keys: KeyCache


def get_services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


async def get_account(request: Request, services: Annotated[Services, Depends(get_services)]) -> Account:
    """The caller's account. Async so that a cached key costs no trip through the thread pool."""
    # Starlette header lookup is case-insensitive: X-API-Key, x-api-key, X-Api-Key all match.
    key = request.headers.get("x-api-key", "").strip()
    if not key:
        raise Unauthorized("missing API key: send it in the X-API-Key header")
    account = services.keys.get(key)
    if account is None:
        account = await run_in_threadpool(services.store.accounts.authenticate, key)
        if account is None:
            raise Unauthorized("invalid API key")
        services.keys.put(key, account)
    return account


ServicesDep = Annotated[Services, Depends(get_services)]
AccountDep = Annotated[Account, Depends(get_account)]
