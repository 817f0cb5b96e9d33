"""Creating a task: validate against the catalog, check it can run here, price it, then one store transaction.

This is the whole synchronous part of the task path; the handler returns as soon as `create_task` does and
never waits for model work.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from pydantic import ValidationError

from genmill.domain.catalog import Catalog, CatalogEntry, TaskInput
from genmill.domain.records import PUBLIC_POOL, Account, Idempotency, NewTask, Task
from genmill.domain.retention import generated_input_refusal
from genmill.domain.timefmt import utcnow
from genmill.domain.validation import describe_validation_error
from genmill.errors import GenmillError, InputRejected, InvalidRequest, ModelNotServed
from genmill.storage.files import FileService
from genmill.store import Store

MAX_WEBHOOK_URL = 2048
MAX_IDEMPOTENCY_KEY = 255
IDEMPOTENCY_TTL = timedelta(hours=24)
MAX_SECRET = 256


def normalise_config(config: dict[str, Any] | None) -> dict[str, Any]:
    """The config as echoed on the wire, with PiAPI's empty-string defaults."""
    config = dict(config or {})
    mode = config.get("service_mode") or ""
    if mode not in ("", "public", "private"):
        raise InvalidRequest("config.service_mode: must be 'public', 'private' or empty")
    hook = config.get("webhook_config") or {}
    if not isinstance(hook, dict):
        raise InvalidRequest("config.webhook_config: must be an object with endpoint and secret")
    endpoint = str(hook.get("endpoint") or "")
    secret = str(hook.get("secret") or "")
    if endpoint and not endpoint.startswith(("http://", "https://")):
        raise InvalidRequest("config.webhook_config.endpoint: must be an http:// or https:// URL")
    if len(endpoint) > MAX_WEBHOOK_URL:
        raise InvalidRequest(f"config.webhook_config.endpoint: at most {MAX_WEBHOOK_URL} characters")
    if len(secret) > MAX_SECRET:
        raise InvalidRequest(f"config.webhook_config.secret: at most {MAX_SECRET} characters")
    return {"service_mode": mode, "webhook_config": {"endpoint": endpoint, "secret": secret}}


class TaskService:
    def __init__(
        self,
        store: Store,
        files: FileService,
        catalog: Catalog,
        can_run: Callable[[str, str, str], bool],
        *,
        served: Callable[[str], set[tuple[str, str]]] | None = None,
        check_request: Callable[[CatalogEntry, TaskInput, str], None] | None = None,
        why_not_served: Callable[[str, str], str] | None = None,
        max_attempts: int,
        private_price_factor: float = 0.0,
    ) -> None:
        self.store = store
        self.files = files
        self.catalog = catalog
        self.can_run = can_run
        self.served = served
        self.check_request = check_request
        """Lets the backend that will run a task refuse inputs it cannot honour (raises `InputRejected`)."""
        self.why_not_served = why_not_served
        """Why this deployment does not serve an entry ("stand-in not enabled: ..."), for the 400's message."""
        self.max_attempts = max_attempts
        self.private_price_factor = private_price_factor

    def served_models(self, pool: str = PUBLIC_POOL) -> list[str]:
        """`model/task_type` of every catalog entry some worker of `pool` can run."""
        if self.served is not None:
            return sorted(f"{m}/{t}" for m, t in self.served(pool) if (m, t) in self.catalog)
        return sorted(f"{e.model}/{e.task_type}" for e in self.catalog if self.can_run(e.model, e.task_type, pool))

    def price(self, entry: CatalogEntry, inputs: TaskInput, pool: str) -> int:
        """The list price; tasks on an account's own private pool pay `private_price_factor` of it."""
        list_price = entry.price_of(inputs)
        return list_price if pool == PUBLIC_POOL else round(list_price * self.private_price_factor)

    def entry_for(self, model: str, task_type: str) -> CatalogEntry:
        entry = self.catalog.get(model, task_type)
        if entry is not None:
            return entry
        if model not in self.catalog.models():
            raise InvalidRequest(f"model: unknown model {model!r}; GET /api/v1/models lists the catalog")
        types = ", ".join(self.catalog.task_types(model))
        raise InvalidRequest(f"task_type: {model} has no task_type {task_type!r}; it has: {types}")

    def validate_input(self, entry: CatalogEntry, raw: dict[str, Any]) -> TaskInput:
        try:
            return entry.input_model.model_validate(raw)
        except ValidationError as exc:
            raise InvalidRequest(describe_validation_error(exc, "input")) from exc
        except (ValueError, TypeError) as exc:
            raise InvalidRequest(f"input: {exc}") from exc

    def check_generated_inputs(self, entry: CatalogEntry, inputs: TaskInput) -> None:
        now = utcnow()
        for field in entry.generated_input_fields:
            ref = getattr(inputs, field, None)
            key = self.files.key_from_url(ref) if isinstance(ref, str) else None
            if key is None:
                continue
            try:
                stored = self.files.open(key, now=now)
            except GenmillError as exc:
                raise InvalidRequest(f"input.{field}: {exc.message}") from exc
            if stored.blob.kind == "output":
                refusal = generated_input_refusal(field, stored.blob.created_at, now)
                if refusal:
                    raise InvalidRequest(refusal)

    def create_task(
        self,
        account: Account,
        model: str,
        task_type: str,
        raw_input: dict[str, Any],
        config: dict[str, Any] | None,
        *,
        idempotency_key: str | None = None,
    ) -> tuple[Task, bool]:
        """Create the task; returns it and whether it is a replay of an earlier request with the same key."""
        entry = self.entry_for(model, task_type)
        inputs = self.validate_input(entry, raw_input)
        wire_config = normalise_config(config)
        pool = account.account_id if wire_config["service_mode"] == "private" else PUBLIC_POOL
        priority = int((config or {}).get("priority") or 0)
        if not -100 <= priority <= 100:
            raise InvalidRequest("config.priority: must be an integer from -100 to 100")
        if not self.can_run(model, task_type, pool):
            served = self.served_models(pool)
            where = "this account's private pool" if pool != PUBLIC_POOL else "this deployment"
            field = "config.service_mode" if pool != PUBLIC_POOL else "model"
            why = self.why_not_served(model, task_type) if self.why_not_served and pool == PUBLIC_POOL else ""
            raise ModelNotServed(
                f"{field}: {model}/{task_type} is in the catalog but no worker of {where} can run it"
                f"{f' ({why})' if why else ''}; {where} serves: {', '.join(served) or 'nothing yet'}",
                detail={"served": served, **({"reason": why} if why else {})},
            )
        if self.check_request is not None:
            try:
                self.check_request(entry, inputs, pool)
            except InputRejected as exc:  # what the backend cannot honour is refused before anyone pays
                raise InvalidRequest(f"input.{exc.message}") from exc
        self.check_generated_inputs(entry, inputs)
        idempotency = None
        if idempotency_key is not None:
            if not 1 <= len(idempotency_key) <= MAX_IDEMPOTENCY_KEY:
                raise InvalidRequest(f"Idempotency-Key: must be 1 to {MAX_IDEMPOTENCY_KEY} characters")
            canonical = json.dumps([model, task_type, raw_input, config or {}], sort_keys=True, default=str)
            idempotency = Idempotency(idempotency_key, hashlib.sha256(canonical.encode()).hexdigest(), IDEMPOTENCY_TTL)
        return self.store.tasks.create(
            NewTask(
                account_id=account.account_id,
                model=model,
                task_type=task_type,
                family=entry.family,
                input=inputs.model_dump(mode="json"),
                config=wire_config,
                price=self.price(entry, inputs, pool),
                service_mode=wire_config["service_mode"],
                pool=pool,
                priority=priority,
                retention_seconds=int(entry.retention.total_seconds()),
                max_attempts=self.max_attempts,
            ),
            idempotency=idempotency,
        )
