"""`genmill/echo` `echo`: answer the task's `payload` unchanged, optionally after `sleep_ms` of (interruptible) waiting.

No model, no library, no file: it is always available and loads nothing, so it measures the task system alone
(create → claim → run → complete) and serves as a health check that the whole path works on a deployment.

`echo-derive` does the same and adds what the worker handed it of the origin task (`RunContext.origin()`): its id,
entry, creation time and output, and with `read_files` the size and type of every file that output names, read
through `ctx.read_input` as a real derived operation reads its origin's image or video.
"""

from __future__ import annotations

import time
from typing import Any

from genmill.backends.base import Availability, Backend, RunContext, ServedBy
from genmill.domain.catalog import CatalogEntry, TaskInput
from genmill.domain.output_files import file_refs
from genmill.errors import BackendError
from genmill.models.echo.catalog import DERIVE_TASK_TYPE, MODEL, TASK_TYPE

SLICE_SECONDS = 0.05
"""A sleeping echo checks for cancellation and reports progress this often."""


class EchoBackend(Backend):
    """Returns `{"echo": payload, "started_at": <unix time the run began>}`, and for `echo-derive` the origin."""

    name = "echo"
    entries = ((MODEL, TASK_TYPE), (MODEL, DERIVE_TASK_TYPE))

    def availability(self) -> Availability:
        return Availability(True)

    def load(self) -> None:
        return None

    def served_by(self, entry: CatalogEntry) -> ServedBy:
        return ServedBy("genmill echo (no model: the payload comes back unchanged)")

    def run(self, entry: CatalogEntry, inputs: TaskInput, ctx: RunContext) -> dict[str, Any]:
        started_at = time.time()
        payload = getattr(inputs, "payload", {})
        sleep_ms = int(getattr(inputs, "sleep_ms", 0) or 0)
        if sleep_ms > 0:
            self._sleep(sleep_ms / 1000.0, ctx)
        ctx.log(f"echo: returned the payload after {sleep_ms} ms")
        if entry.task_type == DERIVE_TASK_TYPE:
            return {"echo": payload, "started_at": started_at, "origin": self._origin(inputs, ctx)}
        return {"echo": payload, "started_at": started_at}

    @staticmethod
    def _origin(inputs: TaskInput, ctx: RunContext) -> dict[str, Any]:
        """What this worker was handed of the origin task, and of the files its output names when asked."""
        origin = ctx.origin()
        if origin is None:
            raise BackendError(f"the origin task {getattr(inputs, 'origin_task_id', '')} is not available")
        seen: dict[str, Any] = {
            "task_id": origin.task_id,
            "model": origin.model,
            "task_type": origin.task_type,
            "created_at": origin.created_at.isoformat(),
            "output": origin.output,
        }
        if getattr(inputs, "read_files", False):
            files = []
            for path, ref in file_refs(origin.output):
                found = ctx.read_input(ref, field=f"origin.output.{path}")
                files.append({"path": path, "bytes": len(found.data), "content_type": found.content_type})
            seen["files"] = files
            ctx.log(f"echo: read {len(files)} file(s) of origin task {origin.task_id}")
        return seen

    @staticmethod
    def _sleep(seconds: float, ctx: RunContext) -> None:
        begun = time.monotonic()
        deadline = begun + seconds
        while True:
            if ctx.cancelled():
                raise BackendError("echo was stopped before its sleep ended")
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            time.sleep(min(SLICE_SECONDS, remaining))
            ctx.progress(min(1.0, (time.monotonic() - begun) / seconds))
