"""The task engine: everything a client can do to a task, from creating it to cancelling it, in one place.

Creating is the whole synchronous part of the task path: validate against the catalog, check some worker can
run it, let the backend that will run it refuse what it cannot honour, price it, then one store transaction.
The handler returns as soon as `create_task` does and never waits for model work. Reading, listing and
cancelling go through here too, so that the API only maps HTTP to these calls and back.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timedelta
from typing import Any

from pydantic import ValidationError

from genmill.domain.catalog import Catalog, CatalogEntry, TaskInput
from genmill.domain.model_keys import families_for
from genmill.domain.origins import origin_refusal
from genmill.domain.records import PUBLIC_POOL, Account, Idempotency, NewTask, StoredEvent, Task, TaskPage
from genmill.domain.retention import generated_input_refusal
from genmill.domain.serving import not_served_message, served_names
from genmill.domain.states import TERMINAL, TaskStatus
from genmill.domain.timefmt import utcnow
from genmill.domain.validation import describe_validation_error
from genmill.engine.inline_inputs import InlineInputs
from genmill.engine.quotas import Quotas
from genmill.engine.serving import ServedEntries
from genmill.errors import GenmillError, InputRejected, InvalidRequest, ModelNotServed, NotFound
from genmill.storage.files import FileService
from genmill.store import Store
from genmill.worker.wakeup import Wakeup

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
    if not all(" " <= c <= "~" for c in secret):  # it travels as the x-webhook-secret header
        raise InvalidRequest("config.webhook_config.secret: printable ASCII only (space to ~): it is sent as a header")
    return {"service_mode": mode, "webhook_config": {"endpoint": endpoint, "secret": secret}}


class TaskEngine:
    def __init__(
        self,
        store: Store,
        files: FileService,
        catalog: Catalog,
        serving: ServedEntries,
        *,
        max_attempts: int,
        private_price_factor: float = 0.0,
        webhook_wakeup: Wakeup | None = None,
        quotas: Quotas | None = None,
        max_inline_bytes: int = 10 * 1024 * 1024,
    ) -> None:
        self.store = store
        self.files = files
        self.catalog = catalog
        self.serving = serving
        self.max_attempts = max_attempts
        self.private_price_factor = private_price_factor
        self.webhook_wakeup = webhook_wakeup
        """Woken when a delivery is scheduled again, so the dispatcher sends it now rather than on its next round."""
        self.quotas = quotas or Quotas()
        """The input size and free-task limits a create must pass before anything is stored."""
        self.inline = InlineInputs(files, max_bytes=max_inline_bytes)
        """Inline media of an input, stored as uploads so that the stored input names URLs (docs/api.md)."""

    # -- creating ------------------------------------------------------------------------------------------

    def served_models(self, pool: str = PUBLIC_POOL) -> list[str]:
        """`model/task_type` of every catalog entry a create accepts for `pool`: some worker runs it now, one ran
        it recently, or the operator declared it (its tasks wait for a worker)."""
        return served_names(self.serving.accepted(pool, {entry.key for entry in self.catalog}), self.catalog)

    def serving_now(self, pool: str = PUBLIC_POOL) -> list[str]:
        """`model/task_type` of every catalog entry some worker of `pool` can run right now."""
        return served_names(self.serving.entries(pool), self.catalog)

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

    def check_origin(self, entry: CatalogEntry, inputs: TaskInput, account_id: str, pool: str) -> None:
        """For a derived operation, refuse (400 naming the field) an origin that is not this account's completed
        task of a model the operation works on, created within the window (`genmill.domain.origins`).

        The origin is looked up among the account's own tasks only, so another account's task reads as unknown.
        Time is the store's clock, the one that stamped the origin's `created_at`."""
        derived = entry.derived_from
        if derived is None:
            return
        origin_id = str(getattr(inputs, derived.field, "") or "")
        declared = entry.input_model.model_fields.get(derived.field)
        if not origin_id and declared is not None and not declared.is_required():
            return  # an optional origin left empty: the task stands alone (Udio's song without continue_song_id)
        try:
            origin: Task | None = self.store.tasks.get(account_id, origin_id) if origin_id else None
        except NotFound:
            origin = None
        refusal = origin_refusal(derived, origin_id, origin, now=self.store.clock.now(), private=pool != PUBLIC_POOL)
        if refusal is not None:
            raise InvalidRequest(refusal.message, detail={"field": refusal.field, "rule": refusal.rule})

    def check_served(self, model: str, task_type: str, pool: str) -> None:
        """Refuse an entry that no worker of `pool` serves now, served recently, or that the operator did not declare
        (400, before anyone pays), saying what the pool serves; an accepted task waits for a worker."""
        if self.serving.accepts(model, task_type, pool):
            return
        served = self.served_models(pool)
        why = self.serving.why_not(model, task_type) if pool == PUBLIC_POOL else ""
        raise ModelNotServed(
            not_served_message(model, task_type, pool, served, why),
            detail={"served": served, **({"reason": why} if why else {})},
        )

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
        """Create the task; returns it and whether it is a replay of an earlier request with the same key.

        A repeat under a live Idempotency-Key answers the first request's task before any other check: what the
        client was told once stays true even if a check would refuse the request now (a derived operation whose
        origin has left its window, a model no longer served).
        """
        idempotency = None
        if idempotency_key is not None:
            if not 1 <= len(idempotency_key) <= MAX_IDEMPOTENCY_KEY:
                raise InvalidRequest(f"Idempotency-Key: must be 1 to {MAX_IDEMPOTENCY_KEY} characters")
            canonical = json.dumps([model, task_type, raw_input, config or {}], sort_keys=True, default=str)
            idempotency = Idempotency(idempotency_key, hashlib.sha256(canonical.encode()).hexdigest(), IDEMPOTENCY_TTL)
            earlier = self.store.tasks.replay(account.account_id, idempotency)
            if earlier is not None:
                return earlier, True
        entry = self.entry_for(model, task_type)
        inputs = self.validate_input(entry, raw_input)
        wire_config = normalise_config(config)
        pool = account.account_id if wire_config["service_mode"] == "private" else PUBLIC_POOL
        priority = int((config or {}).get("priority") or 0)
        if not -100 <= priority <= 100:
            raise InvalidRequest("config.priority: must be an integer from -100 to 100")
        self.check_served(model, task_type, pool)
        try:
            self.serving.check_request(entry, inputs, pool)
        except InputRejected as exc:  # what the backend cannot honour is refused before anyone pays
            raise InvalidRequest(f"input.{exc.message}") from exc
        self.check_generated_inputs(entry, inputs)
        self.check_origin(entry, inputs, account.account_id, pool)
        # Inline media are decoded and given their upload URLs first, storing nothing: the input is then final
        # for the size quota, and a refusal up to the store's transaction leaves no file behind.
        plan = self.inline.plan(inputs, inputs.model_dump(mode="json"), account.account_id)
        stored_input = plan.stored_input
        if plan.files:
            self.validate_input(entry, stored_input)  # what the worker will validate: refused now, not there
        price = self.price(entry, inputs, pool)
        self.quotas.admit_task(account.account_id, stored_input, free=price == 0 and pool == PUBLIC_POOL)
        saved = self.inline.save(plan, account.account_id)
        try:
            task, replayed = self._insert(
                account,
                entry,
                stored_input,
                wire_config,
                price,
                pool,
                priority,
                idempotency,
                entry.usage_type_of(inputs),
            )
        except BaseException:
            self.inline.discard(saved)  # refused in the transaction (credits, staged limit, ...): no orphan file
            raise
        if replayed:
            self.inline.discard(saved)  # the first request's task names its own files
        return task, replayed

    def _insert(
        self,
        account: Account,
        entry: CatalogEntry,
        stored_input: dict[str, Any],
        wire_config: dict[str, Any],
        price: int,
        pool: str,
        priority: int,
        idempotency: Idempotency | None,
        usage_type: str,
    ) -> tuple[Task, bool]:
        return self.store.tasks.create(
            NewTask(
                account_id=account.account_id,
                model=entry.model,
                task_type=entry.task_type,
                family=entry.family,
                input=stored_input,
                config=wire_config,
                price=price,
                service_mode=wire_config["service_mode"],
                pool=pool,
                priority=priority,
                retention_seconds=int(entry.retention.total_seconds()),
                max_attempts=self.max_attempts,
                usage_type=usage_type,
            ),
            idempotency=idempotency,
        )

    # -- reading -------------------------------------------------------------------------------------------

    def get(self, account_id: str, task_id: str) -> Task:
        """The account's task; NotFound for another account's, so that nobody learns it exists."""
        return self.store.tasks.get(account_id, task_id)

    def is_terminal(self, task_id: str) -> bool:
        """Whether the task has ended (for an event stream whose task's events were pruned)."""
        return self.store.tasks.get_any(task_id).status in TERMINAL

    def events_after(self, task_id: str, after_event_id: int) -> list[StoredEvent]:
        """The task's events after `after_event_id`, oldest first (a stream resumes from its Last-Event-ID)."""
        return self.store.events.events_after(task_id, after_event_id)

    def stream_position(self, task_id: str) -> tuple[int, bool]:
        """The task's latest event id (0 when none is kept) and whether it has ended: where a shared event feed
        starts, read after it subscribed to the bus so that nothing committed in between is missed.

        The status is read first: a task seen ended has its last event committed already, so the id read next
        covers it; a task that ends between the two reads is caught by the feed's next read.
        """
        terminal = self.is_terminal(task_id)
        return self.store.events.last_event_id(task_id), terminal

    def active(self, account_id: str) -> list[Task]:
        """The account's pending, processing and staged tasks, oldest first."""
        return self.store.tasks.active(account_id)

    def history(
        self,
        account_id: str,
        *,
        page: int,
        page_size: int,
        model: str | None,
        start: datetime | None,
        end: datetime | None,
        status: TaskStatus | None,
    ) -> TaskPage:
        """A page of the account's tasks, newest first; `model` is a PiAPI model key, a model name or a family."""
        return self.store.tasks.history(
            account_id,
            page=page,
            page_size=page_size,
            model=model,
            families=self.families_named(model),
            start=start,
            end=end,
            status=status,
        )

    def families_named(self, name: str | None) -> tuple[str, ...]:
        """The catalog families a `model=` filter selects: those whose PiAPI key is `name`, or named `name`."""
        if not name:
            return ()
        return tuple(sorted(families_for(name, {entry.family for entry in self.catalog})))

    # -- cancelling ----------------------------------------------------------------------------------------

    def cancel(self, account_id: str, task_id: str) -> Task:
        """Cancel a pending or staged task; its frozen credits are released and a staged task takes its slot."""
        return self.store.tasks.cancel(account_id, task_id)

    def cancel_many(self, account_id: str, *, created_before: datetime, model: str | None) -> list[str]:
        """Cancel every pending or staged task created before the time, of one model key, model or family."""
        return self.store.tasks.cancel_many(
            account_id, created_before=created_before, model=model, families=self.families_named(model)
        )

    # -- webhook deliveries --------------------------------------------------------------------------------

    def deliveries(self, account_id: str, task_id: str) -> list[dict[str, Any]]:
        """Every webhook delivery of the account's task with its attempts (NotFound for foreign tasks)."""
        self.store.tasks.get(account_id, task_id)
        return self.store.webhooks.for_task(account_id, task_id)

    def replay_delivery(self, account_id: str, task_id: str, delivery_id: str) -> None:
        """Schedule a settled delivery again, now."""
        self.store.webhooks.replay(account_id, task_id, delivery_id)
        if self.webhook_wakeup is not None:
            self.webhook_wakeup.notify()
