"""`genmill/echo` `echo`: answer the task's `payload` unchanged, optionally after `sleep_ms` of (interruptible) waiting.

No model, no library, no file: it is always available and loads nothing, so it measures the task system alone
(create → claim → run → complete) and serves as a health check that the whole path works on a deployment.
"""

from __future__ import annotations

import time
from typing import Any

from genmill.backends.base import Availability, Backend, RunContext, ServedBy
from genmill.domain.catalog import CatalogEntry, TaskInput
from genmill.errors import BackendError
from genmill.models.echo.catalog import MODEL, TASK_TYPE

SLICE_SECONDS = 0.05
"""A sleeping echo checks for cancellation and reports progress this often."""


class EchoBackend(Backend):
    """Returns `{"echo": payload, "started_at": <unix time the run began>}`."""

    name = "echo"
    entries = ((MODEL, TASK_TYPE),)

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
        return {"echo": payload, "started_at": started_at}

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
