"""The worker: claim a task, run its backend in this thread with a heartbeat beside it, then complete or fail.

The same class runs in the server's process (`LocalTransport`) and, later, on remote machines; it never touches
the store or the event loop directly.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from genmill.backends.base import InputFile
from genmill.domain.catalog import Catalog, CatalogEntry
from genmill.domain.records import Claim
from genmill.errors import BackendError, Conflict, GenmillError, Unauthorized
from genmill.worker.backendset import BackendSet
from genmill.worker.transport import WorkerTransport

log = logging.getLogger("genmill.worker")

INTERNAL_ERROR_CODE = 10000
INPUT_ERROR_CODE = 10001


class TaskContext:
    """The `RunContext` a backend sees; buffers logs and progress until the next heartbeat flushes them."""

    def __init__(self, claim: Claim, entry: CatalogEntry, transport: WorkerTransport) -> None:
        self.task_id = claim.task.task_id
        self._claim = claim
        self._entry = entry
        self._transport = transport
        self._lock = threading.Lock()
        self._logs: list[str] = []
        self._detail: dict[str, Any] | None = None
        self.lost = threading.Event()

    def log(self, line: str) -> None:
        with self._lock:
            self._logs.append(str(line)[:500])

    def progress(self, fraction: float, note: str = "") -> None:
        with self._lock:
            self._detail = {
                "progress": round(max(0.0, min(1.0, fraction)), 4),
                **({"note": note} if note else {}),
            }

    def read_input(self, ref: str, *, field: str) -> InputFile:
        return self._transport.read_input(self._claim, ref, field)

    def save_output(self, data: bytes, *, ext: str, content_type: str) -> str:
        return self._transport.save_output(self._claim, self._entry, data, ext, content_type)

    def cancelled(self) -> bool:
        return self.lost.is_set()

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
    ) -> None:
        self.worker_id = worker_id
        self.transport = transport
        self.backends = backends
        self.catalog = catalog
        self.lease_seconds = lease_seconds
        self.heartbeat_seconds = heartbeat_seconds
        self.idle_wait_seconds = idle_wait_seconds
        self.capabilities = capabilities if capabilities is not None else backends.capabilities()

    def run_forever(self, stop: threading.Event) -> None:
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
        task = claim.task
        entry = self.catalog.get(task.model, task.task_type)
        ctx = TaskContext(claim, entry, self.transport) if entry else None
        if entry is None or ctx is None:
            self._finish_failed(claim, None, f"{task.model}/{task.task_type} is not in this worker's catalog")
            return
        stop_beat = threading.Event()
        beat = threading.Thread(target=self._heartbeat, args=(claim, ctx, stop_beat), daemon=True)
        beat.start()
        output: dict[str, Any] | None = None
        error: dict[str, Any] | None = None
        try:
            backend = self.backends.backend_for(task.model, task.task_type)
            inputs = entry.input_model.model_validate(task.input)
            if task.attempts > 1:
                ctx.log(f"attempt {task.attempts} of {task.max_attempts}")
            self.backends.ensure_loaded(backend)
            output = backend.run(entry, inputs, ctx)
        except BackendError as exc:
            error = {
                "code": exc.code,
                "message": exc.message,
                "raw_message": exc.raw_message,
                "detail": exc.detail,
            }
        except GenmillError as exc:
            error = {
                "code": INPUT_ERROR_CODE,
                "message": exc.message,
                "raw_message": exc.message,
                "detail": exc.detail,
            }
        except Exception as exc:
            log.exception("task %s: backend crashed", task.task_id)
            error = {
                "code": INTERNAL_ERROR_CODE,
                "message": "the model backend failed unexpectedly",
                "raw_message": f"{type(exc).__name__}: {exc}",
                "detail": None,
            }
        finally:
            stop_beat.set()
            beat.join()
        if ctx.lost.is_set():
            log.warning("task %s: lease lost while running; result discarded", task.task_id)
            return
        logs, detail = ctx.drain()
        try:
            if error is None and output is not None:
                self.transport.complete(claim, output, logs, detail)
            else:
                self.transport.fail(
                    claim,
                    error
                    or {
                        "code": INTERNAL_ERROR_CODE,
                        "message": "no output",
                        "raw_message": "",
                        "detail": None,
                    },
                    logs,
                    detail,
                )
        except Conflict:
            log.warning("task %s: lease expired before the result was recorded", task.task_id)
        except Exception:
            # The server could not record the result (unreachable, 5xx after retries). The slot lives on; the
            # lease will expire and the task be retried, so nothing is lost and nothing is billed twice.
            log.exception("task %s: could not record the result; the task will be retried", task.task_id)

    def _finish_failed(self, claim: Claim, ctx: TaskContext | None, message: str) -> None:
        error = {"code": INTERNAL_ERROR_CODE, "message": message, "raw_message": message, "detail": None}
        try:
            self.transport.fail(claim, error, [], None)
        except Exception:
            log.exception("task %s: could not record the failure", claim.task.task_id)

    def _heartbeat(self, claim: Claim, ctx: TaskContext, stop: threading.Event) -> None:
        while not stop.wait(self.heartbeat_seconds):
            logs, detail = ctx.drain()
            try:
                self.transport.heartbeat(claim, self.lease_seconds, logs, detail)
            except Conflict:
                ctx.lost.set()
                return
            except Exception:
                log.exception("task %s: heartbeat failed; will retry", claim.task.task_id)
