"""Tasks the API process runs itself while the client waits (the OpenAI-compatible chat and images calls).

Such a call is created like any task (validated, priced, its price frozen in the create transaction, 402 before
anything runs when the balance cannot cover it), then leased at once by this process (`claim_task`: this task,
never another account's) with `max_attempts=1`. While the model works, a keeper thread renews the lease; the
answer completes the task, a failure fails it and releases its credits. If the process dies mid-call the lease
lapses and the reaper fails the task (no attempt is left to requeue it) and releases the credits: the client was
told nothing the store does not hold, and pays nothing for an answer it never got whole.
"""

from __future__ import annotations

import threading
from typing import Any

from pydantic import ValidationError

from genmill.backends.base import ServedBy
from genmill.domain.catalog import Catalog, CatalogEntry, TaskInput
from genmill.domain.failures import FailureCode, TaskFailure
from genmill.domain.records import PUBLIC_POOL, Account, Claim, NewTask, Task
from genmill.engine.gate import store_output
from genmill.engine.quotas import Quotas
from genmill.engine.usage import usage_credits
from genmill.errors import BackendError, Conflict, GenmillError, InvalidRequest, TooManyTasks
from genmill.storage.files import FileService
from genmill.store import Store


def param_of(loc: tuple[int | str, ...]) -> str:
    """A pydantic location as OpenAI names a parameter: ("messages", 0, "role") → "messages[0].role"."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def invalid(message: str, param: str | None) -> InvalidRequest:
    """A 400 that names the parameter (the API writes it into OpenAI's `error.param`)."""
    return InvalidRequest(f"{param}: {message}" if param else message, detail={"param": param})


def served_by_json(served: ServedBy) -> dict[str, object]:
    return {"model": served.model, "stand_in": served.stand_in, "limits": list(served.limits)}


def failure_of(error: BaseException) -> TaskFailure:
    """The task error of whatever stopped a call: a backend's own failure, or a generic one that reveals nothing."""
    if isinstance(error, BackendError):
        return error.failure
    if isinstance(error, GenmillError):
        return TaskFailure(FailureCode.BACKEND_FAILED, error.message)
    return TaskFailure(FailureCode.BACKEND_FAILED, "the model failed", f"{type(error).__name__}: {error}")


class LeaseKeeper:
    """Renews a task's lease every heartbeat until stopped; `lost` once the lease is gone (reaped, expired)."""

    def __init__(self, store: Store, claim: Claim, lease_seconds: float, every: float) -> None:
        self.store = store
        self.claim = claim
        self.lease_seconds = lease_seconds
        self.every = every
        self.lost = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"lease-{claim.task.task_id[:8]}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            try:
                self.store.leases.heartbeat(self.claim.task.task_id, self.claim.lease_id, self.lease_seconds)
            except Conflict:
                self.lost.set()
                return
            except GenmillError:  # the database blinked: the next beat tries again, within the lease
                continue

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


class InlineTasks:
    """Create, lease, keep, store outputs of, and settle the tasks this process runs for a waiting client."""

    def __init__(
        self,
        store: Store,
        files: FileService,
        catalog: Catalog,
        *,
        quotas: Quotas,
        lease_seconds: float,
        heartbeat_seconds: float,
        process_id: str = "api",
    ) -> None:
        self.store = store
        self.files = files
        self.catalog = catalog
        self.quotas = quotas
        self.lease_seconds = lease_seconds
        self.heartbeat_seconds = heartbeat_seconds
        self.worker_id = f"{process_id}:inline"

    def validate(self, entry: CatalogEntry, body: dict[str, Any]) -> TaskInput:
        """The body as the entry's input; a 400 naming the first parameter at fault (OpenAI's `param`)."""
        try:
            return entry.input_model.model_validate(body)
        except ValidationError as exc:
            first = exc.errors()[0]
            raise invalid(str(first["msg"]), param_of(tuple(first["loc"])) or None) from None

    def open(self, account: Account, entry: CatalogEntry, inputs: TaskInput) -> Claim:
        """Create the task with its price frozen and lease it to this process; nothing has run yet."""
        stored = inputs.model_dump(mode="json", exclude_none=True)
        price = entry.price_of(inputs)
        self.quotas.admit_task(account.account_id, stored, free=price == 0)
        task, _ = self.store.tasks.create(
            NewTask(
                account_id=account.account_id,
                model=entry.model,
                task_type=entry.task_type,
                family=entry.family,
                input=stored,
                config={"service_mode": "", "webhook_config": {"endpoint": "", "secret": ""}},
                price=price,
                service_mode="",
                pool=PUBLIC_POOL,
                retention_seconds=int(entry.retention.total_seconds()),
                max_attempts=1,
                usage_type=entry.usage_type_of(inputs),
            )
        )
        claim = self.store.leases.claim_task(task.task_id, self.worker_id, self.lease_seconds)
        if claim is None:  # staged behind the account's concurrency limit: a waiting client cannot queue
            self.store.tasks.cancel(account.account_id, task.task_id)
            raise TooManyTasks(
                "the account's concurrency limit is reached; retry when a running task ends",
                detail={"task_id": task.task_id},
            )
        return claim

    def keep(self, claim: Claim) -> LeaseKeeper:
        """Start renewing the claim's lease (stop the keeper when the call ends)."""
        return LeaseKeeper(self.store, claim, self.lease_seconds, self.heartbeat_seconds)

    def save_output(self, task: Task, data: bytes, *, ext: str, content_type: str) -> str:
        """Store a file a call generated (an image), owned by its account for its entry's retention; its URL (the
        workers' path and checks: `genmill.engine.gate.store_output`)."""
        return store_output(self.files, self.catalog, task, data, ext=ext, content_type=content_type)

    def complete(self, claim: Claim, output: dict[str, Any], *, served: ServedBy, logs: list[str]) -> None:
        """Complete the task (its price consumed); a lease that lapsed first (reaped: credits released) wins."""
        detail = {"served_by": served_by_json(served)}
        try:
            self.store.leases.complete(
                claim.task.task_id,
                claim.lease_id,
                output,
                logs=logs,
                detail=detail,
                usage_credits=usage_credits(self.catalog, claim.task, output),
            )
        except Conflict:
            return

    def fail(self, claim: Claim, error: BaseException, *, served: ServedBy) -> None:
        """Fail the task with what stopped it (its credits released), unless its lease already lapsed."""
        detail = {"served_by": served_by_json(served)}
        try:
            self.store.leases.fail(claim.task.task_id, claim.lease_id, failure_of(error).to_error(), detail=detail)
        except Conflict:
            return
