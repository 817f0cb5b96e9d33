"""`WorkerTransport` for the server's own worker threads: the worker gate, called in-process.

A thin adapter: every call goes to `WorkerGate` with the same checks a remote worker's calls meet over HTTP. The
in-process workers serve the public pool and are not in the worker registry (this process's backends are what
they can run). Where a remote worker long-polls its claim, an in-process worker waits on the bus's wake-up.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from genmill.domain.catalog import CatalogEntry
from genmill.domain.records import PUBLIC_POOL, Claim, InputFile
from genmill.domain.serving import Entry
from genmill.engine.gate import WorkerGate, WorkerIdentity
from genmill.worker.transport import Done
from genmill.worker.wakeup import Wakeup


class LocalTransport:
    def __init__(self, gate: WorkerGate, wakeup: Wakeup, *, pool: str = PUBLIC_POOL) -> None:
        self.gate = gate
        self.wakeup = wakeup
        self.pool = pool
        self._seen = wakeup.generation
        self._capabilities: tuple[Entry, ...] = ()

    def _as(self, worker_id: str = "") -> WorkerIdentity:
        return WorkerIdentity(self.pool, worker_id, self._capabilities)

    def claim(self, worker_id: str, capabilities: Iterable[Entry], lease_seconds: float) -> Claim | None:
        """The gate's next task (the lease lasts the gate's `lease_seconds`, which in-process workers share)."""
        self._seen = self.wakeup.generation
        self._capabilities = tuple(capabilities)
        return self.gate.claim(self._as(worker_id))

    def claim_more(
        self, worker_id: str, first: Claim, match: dict[str, Any], limit: int, lease_seconds: float
    ) -> list[Claim]:
        task = first.task
        return self.gate.claim_more(self._as(worker_id), task.model, task.task_type, match, limit)

    def heartbeat(self, claim: Claim, lease_seconds: float, logs: list[str], detail: dict[str, Any] | None) -> None:
        self.gate.heartbeat(self._as(), claim.task.task_id, claim.lease_id, logs, detail)

    def complete(self, claim: Claim, output: dict[str, Any], logs: list[str], detail: dict[str, Any] | None) -> None:
        self.gate.complete(self._as(), claim.task.task_id, claim.lease_id, output, logs, detail)

    def complete_many(self, done: list[Done]) -> list[Exception | None]:
        """The batch's results, billed in one transaction."""
        items = [(c.task.task_id, c.lease_id, output, logs, detail) for c, output, logs, detail in done]
        return self.gate.complete_many(self._as(), items)

    def fail(self, claim: Claim, error: dict[str, Any], logs: list[str], detail: dict[str, Any] | None) -> None:
        self.gate.fail(self._as(), claim.task.task_id, claim.lease_id, error, logs, detail)

    def read_input(self, claim: Claim, ref: str, field: str) -> InputFile:
        return self.gate.read_input(self._as(), claim.task.task_id, claim.lease_id, ref, field)

    def save_output(self, claim: Claim, entry: CatalogEntry, data: bytes, ext: str, content_type: str) -> str:
        return self.gate.save_output(self._as(), claim.task.task_id, claim.lease_id, data, ext, content_type)

    def wait_for_work(self, timeout: float) -> None:
        self.wakeup.wait(self._seen, timeout)
