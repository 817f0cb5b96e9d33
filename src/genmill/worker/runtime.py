"""The worker: claim a task, run its backend in this thread while its lease is renewed, then complete or fail.

The same class runs in the server's process (`LocalTransport`) and, later, on remote machines; it never touches
the store or the event loop directly.
"""

from __future__ import annotations

import logging
import threading
import time
from contextlib import ExitStack
from typing import Any

from pydantic import ValidationError

from genmill.backends.base import Backend, progress_detail
from genmill.backends.memory_modes import is_out_of_memory
from genmill.domain.catalog import Catalog, CatalogEntry, TaskInput
from genmill.domain.failures import FailureCode, TaskFailure
from genmill.domain.records import Claim, InputFile, OriginTask
from genmill.domain.validation import describe_validation_error
from genmill.errors import BackendError, Conflict, GenmillError, Unauthorized
from genmill.worker.backendset import BackendSet, served_by_json
from genmill.worker.heartbeats import Heartbeats
from genmill.worker.transport import Done, WorkerTransport

log = logging.getLogger("genmill.worker")

FIRST_BEAT_SECONDS = 1.0
"""A running task's first heartbeat comes this soon (not a whole interval later), so that its `detail` says what
runs it while it runs; a task done sooner carries it with its result instead."""


class TaskContext:
    """The `RunContext` a backend sees; buffers logs and progress until the next heartbeat flushes them.

    `served_by` (what runs the task, `genmill.backends.base.ServedBy` in wire form) and what the backend asked it to
    `remember` are part of every `detail` it hands out: a heartbeat replaces the stored `detail` whole, so progress
    must never drop them.
    """

    def __init__(
        self,
        claim: Claim,
        entry: CatalogEntry,
        transport: WorkerTransport,
        served_by: dict[str, Any] | None = None,
    ) -> None:
        self.task_id = claim.task.task_id
        self._claim = claim
        self._entry = entry
        self._transport = transport
        self._lock = threading.Lock()
        self._logs: list[str] = []
        self._base: dict[str, Any] = {"served_by": served_by} if served_by is not None else {}
        self._detail: dict[str, Any] | None = dict(self._base) or None
        self.lost = threading.Event()

    def log(self, line: str) -> None:
        with self._lock:
            self._logs.append(str(line)[:500])

    def progress(self, fraction: float, note: str = "") -> None:
        with self._lock:
            self._detail = {**self._base, **progress_detail(fraction, note)}

    def read_input(self, ref: str, *, field: str) -> InputFile:
        return self._transport.read_input(self._claim, ref, field)

    def save_output(self, data: bytes, *, ext: str, content_type: str) -> str:
        return self._transport.save_output(self._claim, self._entry, data, ext, content_type)

    def cancelled(self) -> bool:
        return self.lost.is_set()

    def origin(self) -> OriginTask | None:
        return self._claim.origin

    def remember(self, key: str, value: Any) -> None:
        with self._lock:
            self._base = {**self._base, key: value}
            self._detail = {**(self._detail or {}), key: value}

    def drain(self) -> tuple[list[str], dict[str, Any] | None]:
        with self._lock:
            logs, self._logs = self._logs, []
            return logs, self._detail


class Worker:
    def __init__(
        self,
        worker_id: str,
        transport: WorkerTransport,
        backends: BackendSet,
        catalog: Catalog,
        *,
        lease_seconds: float,
        heartbeat_seconds: float,
        idle_wait_seconds: float = 5.0,
        capabilities: list[tuple[str, str]] | None = None,
        batch_wait_seconds: float = 0.005,
    ) -> None:
        self.worker_id = worker_id
        self.transport = transport
        self.backends = backends
        self.catalog = catalog
        self.lease_seconds = lease_seconds
        self.heartbeat_seconds = heartbeat_seconds
        self.idle_wait_seconds = idle_wait_seconds
        self.capabilities = capabilities if capabilities is not None else backends.capabilities()
        self.batch_wait_seconds = batch_wait_seconds
        self.heartbeats = Heartbeats(
            lambda claim, logs, detail: transport.heartbeat(claim, lease_seconds, logs, detail),
            heartbeat_seconds,
            name=f"{worker_id}-heartbeat",
        )

    def run_forever(self, stop: threading.Event) -> None:
        try:
            self._claim_until(stop)
        finally:
            self.heartbeats.close()

    def _claim_until(self, stop: threading.Event) -> None:
        capabilities = self.capabilities
        while not stop.is_set():
            try:
                claim = self.transport.claim(self.worker_id, capabilities, self.lease_seconds)
            except Unauthorized:
                log.error("worker %s: the server refused this worker's token (revoked?); stopping", self.worker_id)
                stop.set()
                return
            except Exception:
                log.exception("worker %s: claim failed", self.worker_id)
                stop.wait(1.0)
                continue
            if claim is None:
                self.transport.wait_for_work(self.idle_wait_seconds)
                continue
            self.execute(claim)

    def run_once(self) -> bool:
        """Claim and run one task if there is one (used by tests and by batch tools)."""
        claim = self.transport.claim(self.worker_id, self.capabilities, self.lease_seconds)
        if claim is None:
            return False
        self.execute(claim)
        return True

    def execute(self, claim: Claim) -> None:
        """Run a claimed task, with compatible pending tasks gathered into one batch when its backend batches."""
        task = claim.task
        entry = self.catalog.get(task.model, task.task_type)
        if entry is None or not self.backends.can_run(task.model, task.task_type):
            self._finish_failed(claim, None, f"{task.model}/{task.task_type} is not served by this worker")
            return
        backend = self.backends.backend_for(task.model, task.task_type)
        claims = [claim]
        if backend.batches_for(entry):
            claims += self._gather(claim, backend)
        self._run_group(entry, backend, claims)

    def _gather(self, first: Claim, backend: Backend) -> list[Claim]:
        """Lease more pending tasks that can share `first`'s batch, waiting at most `batch_wait_seconds`."""
        match = {key: first.task.input.get(key) for key in backend.batch_keys}
        deadline = time.monotonic() + self.batch_wait_seconds
        more: list[Claim] = []
        while len(more) + 1 < backend.max_batch_size:
            try:
                more += self.transport.claim_more(
                    self.worker_id, first, match, backend.max_batch_size - 1 - len(more), self.lease_seconds
                )
            except Exception:
                log.exception("task %s: could not gather a batch; running what we have", first.task.task_id)
                break
            if len(more) + 1 >= backend.max_batch_size or time.monotonic() >= deadline:
                break
            time.sleep(0.001)
        return more

    def _run_group(self, entry: CatalogEntry, backend: Backend, claims: list[Claim]) -> None:
        served_by = served_by_json(self.backends.served_by(*entry.key))
        ctxs = [TaskContext(c, entry, self.transport, served_by) for c in claims]
        with ExitStack() as beating:
            for c, ctx in zip(claims, ctxs, strict=True):
                beating.enter_context(self.heartbeats.watch(c, ctx, first_beat=FIRST_BEAT_SECONDS))
            results = self._run_backend(entry, backend, claims, ctxs)
        # A batch's successful results are recorded together (one transaction in-process); the rest one by one.
        together: list[tuple[Claim, TaskContext, dict[str, Any]]] = []
        for c, ctx, result in zip(claims, ctxs, results, strict=True):
            if len(claims) > 1 and not isinstance(result, Exception) and not ctx.lost.is_set():
                together.append((c, ctx, result))
            else:
                self._settle(c, ctx, result)
        if together:
            self._complete_together(together)

    def _complete_together(self, together: list[tuple[Claim, TaskContext, dict[str, Any]]]) -> None:
        """Record several results in one call; each refusal (a lease lost) or failure is logged as `_settle` logs
        it, and leaves that task to its lease's expiry."""
        done: list[Done] = [(c, output, *ctx.drain()) for c, ctx, output in together]
        try:
            outcomes = self.transport.complete_many(done)
        except Exception as failed:
            outcomes = [failed] * len(done)
        for (claim, _, _), outcome in zip(together, outcomes, strict=True):
            if isinstance(outcome, Conflict):
                log.warning("task %s: lease expired before the result was recorded", claim.task.task_id)
            elif outcome is not None:
                log.error(
                    "task %s: could not record the result; the task will be retried",
                    claim.task.task_id,
                    exc_info=outcome,
                )

    def _run_backend(
        self, entry: CatalogEntry, backend: Backend, claims: list[Claim], ctxs: list[TaskContext]
    ) -> list[dict[str, Any] | Exception]:
        results: list[dict[str, Any] | Exception] = [RuntimeError("not run")] * len(claims)
        runnable: list[int] = []
        inputs: list[TaskInput] = []
        for i, (c, ctx) in enumerate(zip(claims, ctxs, strict=True)):
            try:
                inputs.append(entry.input_model.model_validate(c.task.input))
                runnable.append(i)
            except Exception as exc:
                results[i] = exc
                continue
            if c.task.attempts > 1:
                ctx.log(f"attempt {c.task.attempts} of {c.task.max_attempts}")
            if len(claims) > 1:
                ctx.log(f"ran in a batch of {len(claims)} tasks")
        self._attempt(entry, backend, runnable, inputs, ctxs, results)
        out_of_memory = [i for i in runnable if _out_of_memory(results[i])]
        if out_of_memory:
            # Free what can be freed (every idle model on the device, the allocator's cache) and try each task that
            # ran out of memory once more on its own; a second failure is the task's "GPU memory" error.
            unloaded = self.backends.recover(backend)
            for i in out_of_memory:
                ctxs[i].log(f"out of memory on {backend.device}: unloaded {unloaded} other model(s), retrying once")
                self._attempt(entry, backend, [i], [inputs[runnable.index(i)]], ctxs, results)
                failure = results[i]
                if isinstance(failure, BaseException) and _out_of_memory(failure):
                    results[i] = self.backends.memory_error(backend, failure)
                    self.backends.recover(backend)  # leave the device clean for the next task
        return results

    def _attempt(
        self,
        entry: CatalogEntry,
        backend: Backend,
        indices: list[int],
        inputs: list[TaskInput],
        ctxs: list[TaskContext],
        results: list[dict[str, Any] | Exception],
    ) -> None:
        """Load the backend and run the tasks at `indices` (with `inputs`, in order), one call for a batch."""
        try:
            with self.backends.using(backend):
                if len(indices) == 1:
                    i = indices[0]
                    try:
                        results[i] = backend.run(entry, inputs[0], ctxs[i])
                    except Exception as exc:
                        results[i] = exc
                elif indices:
                    outs = backend.run_batch(entry, inputs, [ctxs[i] for i in indices])
                    for i, out in zip(indices, outs, strict=True):
                        results[i] = out
        except Exception as exc:  # loading the model failed: every task of the group fails with it
            for i in indices:
                results[i] = exc

    def _settle(self, claim: Claim, ctx: TaskContext, result: dict[str, Any] | Exception) -> None:
        task = claim.task
        if ctx.lost.is_set():
            log.warning("task %s: lease lost while running; result discarded", task.task_id)
            return
        logs, detail = ctx.drain()
        try:
            if isinstance(result, Exception):
                self.transport.fail(claim, self._failure(task.task_id, result).to_error(), logs, detail)
            else:
                self.transport.complete(claim, result, logs, detail)
        except Conflict:
            log.warning("task %s: lease expired before the result was recorded", task.task_id)
        except Exception:
            # The server could not record the result (unreachable, 5xx after retries). The slot lives on; the
            # lease will expire and the task be retried, so nothing is lost and nothing is billed twice.
            log.exception("task %s: could not record the result; the task will be retried", task.task_id)

    @staticmethod
    def _failure(task_id: str, exc: Exception) -> TaskFailure:
        """What a task fails with when running it raised `exc`: a backend's own failure as it said it; the server
        failing the worker (a 5xx: its database unavailable while an input was read or an output stored) as a
        failure of genmill (10000), not of the client's input; any other genmill error or invalid input as the
        client's input (10001); anything else as a crash (10000)."""
        if isinstance(exc, BackendError):
            return exc.failure
        if isinstance(exc, GenmillError) and exc.status_code >= 500:
            return TaskFailure(FailureCode.BACKEND_FAILED, f"the server could not serve this task: {exc.message}")
        if isinstance(exc, GenmillError):
            return TaskFailure(FailureCode.INPUT_REJECTED, exc.message, detail=exc.detail)
        if isinstance(exc, ValidationError):
            return TaskFailure(FailureCode.INPUT_REJECTED, describe_validation_error(exc, "input"))
        log.error("task %s: backend crashed", task_id, exc_info=exc)
        return TaskFailure(
            FailureCode.BACKEND_FAILED, "the model backend failed unexpectedly", f"{type(exc).__name__}: {exc}"
        )

    def _finish_failed(self, claim: Claim, ctx: TaskContext | None, message: str) -> None:
        error = TaskFailure(FailureCode.BACKEND_FAILED, message).to_error()
        try:
            self.transport.fail(claim, error, [], None)
        except Exception:
            log.exception("task %s: could not record the failure", claim.task.task_id)


def _out_of_memory(result: dict[str, Any] | BaseException) -> bool:
    return isinstance(result, BaseException) and is_out_of_memory(result)
