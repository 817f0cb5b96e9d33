"""The worker gate: every call a worker makes to the task system, with its checks, whichever transport it came by.

The in-process worker threads (through `genmill.engine.local.LocalTransport`) and remote workers (through the
HTTP worker protocol, `genmill.api.workers`) both land here, so the rules hold once for both:

- a lease is honoured only while it is the task's current lease and the task is in the caller's pool: a stale
  lease and one presented by another pool's worker are both a `Conflict` (409), so a task completes, and bills,
  exactly once;
- a worker leases more tasks for a batch only of an entry it said it can run;
- a worker reads only the references that appear in its task's input, or, for a derived operation, in its
  origin task's output (never an arbitrary URL or another account's file through the server), and stores only
  media as outputs, kept as long as the entry's retention and owned by the task's account;
- a claimed derived operation (its entry has `derived_from`) comes with its origin task (`Claim.origin`), read
  among its own account's tasks, so the backend can continue that task's work.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from genmill.domain.catalog import Catalog
from genmill.domain.media_types import output_type_refusal, parse_media_type
from genmill.domain.records import Claim, InputFile, OriginTask, Task, WorkerToken
from genmill.domain.serving import Entry
from genmill.engine.inputs import InputResolver
from genmill.engine.usage import usage_credits
from genmill.errors import Conflict, InvalidRequest, NotFound
from genmill.storage.files import FileService
from genmill.store import Store
from genmill.store.leases import Completion
from genmill.store.workers import SEEN_EVERY

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class WorkerIdentity:
    """Who is calling the gate: the pool whose tasks it may hold, and, for claims, its id and what it can run.

    `registered` workers (remote ones, which have a row in the worker registry) are marked seen by their
    heartbeats, so a long task does not make its worker look gone; in-process workers are not in the registry.
    """

    pool: str
    worker_id: str = ""
    capabilities: tuple[Entry, ...] = ()
    registered: bool = False

    @classmethod
    def holding(cls, token: WorkerToken) -> WorkerIdentity:
        """A remote worker presenting a lease: only its token's pool matters."""
        return cls(pool=token.pool, registered=True)


@dataclass(frozen=True)
class Registration:
    """What a newly registered remote worker is told: its id, its pool, and the lease it must keep alive."""

    worker_id: str
    pool: str
    lease_seconds: float
    heartbeat_seconds: float


def mentions(value: object, ref: str) -> bool:
    """Whether `ref` appears as a string anywhere in the task's input (nested lists and objects included)."""
    if isinstance(value, str):
        return value == ref
    if isinstance(value, dict):
        return any(mentions(v, ref) for v in value.values())
    if isinstance(value, list):
        return any(mentions(v, ref) for v in value)
    return False


class WorkerGate:
    def __init__(
        self,
        store: Store,
        files: FileService,
        catalog: Catalog,
        inputs: InputResolver,
        *,
        lease_seconds: float,
        heartbeat_seconds: float,
    ) -> None:
        self.store = store
        self.files = files
        self.catalog = catalog
        self.inputs = inputs
        self.lease_seconds = lease_seconds
        """Every lease lasts this long from its claim or last heartbeat; the server decides, not the worker."""
        self.heartbeat_seconds = heartbeat_seconds
        self._touched: dict[str, float] = {}
        """When this process last marked each worker seen (monotonic seconds)."""

    # -- remote workers: who they are ----------------------------------------------------------------------

    def authenticate(self, token: str) -> WorkerToken:
        """The worker token behind a bearer secret; `Unauthorized` when unknown or revoked."""
        return self.store.workers.authenticate(token)

    def register(self, token: WorkerToken, name: str, capabilities: list[Entry]) -> Registration:
        """Record a remote worker and the catalog entries it can run (each must be in the catalog)."""
        unknown = [f"{m}/{t}" for m, t in capabilities if self.catalog.get(m, t) is None]
        if unknown:
            raise InvalidRequest(f"capabilities: not in the catalog: {', '.join(unknown[:10])}")
        worker_id = self.store.workers.register(token, name, capabilities)
        return Registration(worker_id, token.pool, self.lease_seconds, self.heartbeat_seconds)

    def registered(self, token: WorkerToken, worker_id: str) -> WorkerIdentity:
        """A registered worker of this token, with its pool and capabilities (NotFound otherwise); marks it seen."""
        pool, capabilities = self.store.workers.worker(token, worker_id)
        return WorkerIdentity(pool, worker_id, tuple(capabilities), registered=True)

    def _seen(self, worker_id: str) -> None:
        """Mark the worker seen, at most once per `SEEN_EVERY` from this process: a worker running many tasks
        heartbeats each of them, and one timestamp write covers them all."""
        now = time.monotonic()
        last = self._touched.get(worker_id)
        if last is not None and now - last < SEEN_EVERY.total_seconds():
            return
        if len(self._touched) >= 10_000:
            self._touched.clear()
        self._touched[worker_id] = now
        self.store.workers.touch(worker_id)

    # -- claiming ------------------------------------------------------------------------------------------

    def claim(self, worker: WorkerIdentity) -> Claim | None:
        """Lease the next runnable pending task of the worker's pool that it can run (no waiting)."""
        claim = self.store.leases.claim_next_task(
            worker.worker_id, worker.capabilities, self.lease_seconds, pool=worker.pool
        )
        return None if claim is None else self.with_origin(claim)

    def claim_more(
        self, worker: WorkerIdentity, model: str, task_type: str, match: dict[str, Any], limit: int
    ) -> list[Claim]:
        """Lease up to `limit` more pending tasks of an entry the worker runs whose inputs agree on `match`."""
        if (model, task_type) not in worker.capabilities:
            raise InvalidRequest(f"model: this worker did not register {model}/{task_type}")
        claims = self.store.leases.claim_matching(
            worker.worker_id,
            model,
            task_type,
            match=match,
            limit=limit,
            lease_seconds=self.lease_seconds,
            pool=worker.pool,
        )
        return [self.with_origin(claim) for claim in claims]

    # -- derived operations --------------------------------------------------------------------------------

    def origin_of(self, task: Task) -> OriginTask | None:
        """The earlier task a derived operation works on, read among its own account's tasks; None when the
        task's entry is not a derived operation, or its origin is gone (the backend then fails the task)."""
        entry = self.catalog.get(task.model, task.task_type)
        if entry is None or entry.derived_from is None:
            return None
        origin_id = task.input.get(entry.derived_from.field)
        if not isinstance(origin_id, str) or not origin_id:
            return None
        try:
            origin = self.store.tasks.get(task.account_id, origin_id)
        except NotFound:
            return None
        return OriginTask(
            task_id=origin.task_id,
            model=origin.model,
            task_type=origin.task_type,
            input=origin.input,
            output=origin.output or {},
            detail=origin.detail,
            created_at=origin.created_at,
        )

    def with_origin(self, claim: Claim) -> Claim:
        """The claim with its task's origin on it (unchanged for a task that is not a derived operation)."""
        origin = self.origin_of(claim.task)
        return claim if origin is None else dataclasses.replace(claim, origin=origin)

    # -- holding a lease -----------------------------------------------------------------------------------

    def leased(self, worker: WorkerIdentity, task_id: str, lease_id: str) -> Task:
        """The task, when `lease_id` is its current lease and it is in the worker's pool; `Conflict` otherwise (a
        foreign lease is refused like a stale one, so it reveals nothing)."""
        task = self.store.tasks.get_any(task_id)
        if task.lease_id != lease_id or task.pool != worker.pool:
            raise Conflict(f"lease {lease_id} on task {task_id} is not current")
        return task

    def heartbeat(
        self,
        worker: WorkerIdentity,
        task_id: str,
        lease_id: str,
        logs: list[str],
        detail: dict[str, Any] | None,
    ) -> datetime:
        """Renew the lease and record the task's new logs and progress; returns the new expiry."""
        task = self.leased(worker, task_id, lease_id)
        if worker.registered and task.worker_id:
            self._seen(task.worker_id)
        return self.store.leases.heartbeat(task_id, lease_id, self.lease_seconds, logs=logs, detail=detail)

    def complete(
        self,
        worker: WorkerIdentity,
        task_id: str,
        lease_id: str,
        output: dict[str, Any],
        logs: list[str],
        detail: dict[str, Any] | None,
    ) -> None:
        """Complete the task with its output: its price is consumed, once (only what the output used, when its
        entry prices usage, and the rest released in the same transaction)."""
        task = self.leased(worker, task_id, lease_id)
        usage = usage_credits(self.catalog, task, output)
        self.store.leases.complete(task_id, lease_id, output, logs=logs, detail=detail, usage_credits=usage)

    def complete_many(
        self, worker: WorkerIdentity, done: list[tuple[str, str, dict[str, Any], list[str], dict[str, Any] | None]]
    ) -> list[Exception | None]:
        """`complete` for several tasks (task id, lease id, output, logs, detail), billed in one transaction; for
        each, None or the error that refused it (a lease not current), which leaves it as it was."""
        outcomes: list[Exception | None] = [None] * len(done)
        completions: list[Completion] = []
        sent: list[int] = []
        for i, (task_id, lease_id, output, logs, detail) in enumerate(done):
            try:
                task = self.leased(worker, task_id, lease_id)
            except (Conflict, NotFound) as refused:
                outcomes[i] = refused
                continue
            usage = usage_credits(self.catalog, task, output)
            completions.append(Completion(task_id, lease_id, output, logs, detail, usage))
            sent.append(i)
        for i, outcome in zip(sent, self.store.leases.complete_many(completions), strict=True):
            outcomes[i] = outcome if isinstance(outcome, Exception) else None
        return outcomes

    def fail(
        self,
        worker: WorkerIdentity,
        task_id: str,
        lease_id: str,
        error: dict[str, Any],
        logs: list[str],
        detail: dict[str, Any] | None,
    ) -> None:
        """Fail the task with its error: its frozen credits are released."""
        self.leased(worker, task_id, lease_id)
        self.store.leases.fail(task_id, lease_id, error, logs=logs, detail=detail)

    # -- a leased task's files -----------------------------------------------------------------------------

    def read_input(self, worker: WorkerIdentity, task_id: str, lease_id: str, ref: str, field: str) -> InputFile:
        """The bytes of one reference in the task's input, or in its origin's output for a derived operation,
        through the one guarded path (`InputResolver`)."""
        task = self.leased(worker, task_id, lease_id)
        if not mentions(task.input, ref):
            origin = self.origin_of(task)
            if origin is None or not mentions(origin.output, ref):
                raise InvalidRequest(
                    "ref: a worker may only read references that appear in its task's input "
                    "(or in its origin task's output, for an operation on an earlier task)"
                )
        return self.inputs.resolve(ref, field=field)

    def save_output(
        self, worker: WorkerIdentity, task_id: str, lease_id: str, data: bytes, ext: str, content_type: str
    ) -> str:
        """Store an output file of the task, owned by its account for its entry's retention; returns its URL.

        The declared content type is checked here, for both transports, before anything is stored: it is served
        back from the API's origin, so it must be a plain media type that cannot carry script
        (`genmill.domain.media_types`); it is stored in lower case."""
        check_output_type(content_type)
        task = self.leased(worker, task_id, lease_id)
        return store_output(self.files, self.catalog, task, data, ext=ext, content_type=content_type)


def check_output_type(content_type: str) -> None:
    """Refuse (400) an output content type that could carry script when served back from the API's origin."""
    refusal = output_type_refusal(content_type)
    if refusal is not None:
        raise InvalidRequest(refusal)


def store_output(files: FileService, catalog: Catalog, task: Task, data: bytes, *, ext: str, content_type: str) -> str:
    """Store an output file of `task`, owned by its account for its entry's retention, after the content-type
    check; returns its URL. The one path for workers' outputs and for the files the API process's own calls make
    (`engine/inline.py`), so neither can store a type the other refuses."""
    check_output_type(content_type)
    media_type = parse_media_type(content_type)
    assert media_type is not None
    entry = catalog.get(task.model, task.task_type)
    assert entry is not None
    blob = files.save(
        data,
        kind="output",
        ext=ext,
        content_type=media_type,
        retention=entry.retention,
        account_id=task.account_id,
        task_id=task.task_id,
    )
    return files.blob_url(blob)
