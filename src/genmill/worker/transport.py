"""The worker transport: every call a worker makes to the task system, behind one small interface.

`LocalTransport` calls the store and file service in-process. A remote transport (HTTP worker protocol) will
implement the same methods, so `genmill.worker.runtime` runs unchanged on a GPU machine anywhere.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Protocol

from genmill.domain.catalog import CatalogEntry
from genmill.domain.records import Claim, InputFile
from genmill.storage.files import FileService
from genmill.store import Store
from genmill.worker.inputs import InputResolver
from genmill.worker.wakeup import Wakeup


class WorkerTransport(Protocol):
    def claim(self, worker_id: str, capabilities: Iterable[tuple[str, str]], lease_seconds: float) -> Claim | None: ...

    def claim_more(
        self, worker_id: str, first: Claim, match: dict[str, Any], limit: int, lease_seconds: float
    ) -> list[Claim]:
        """Lease up to `limit` more pending tasks like `first` whose inputs agree on `match` (no waiting)."""

    def heartbeat(self, claim: Claim, lease_seconds: float, logs: list[str], detail: dict[str, Any] | None) -> None:
        """Renew the lease; raises `genmill.errors.Conflict` when the lease was lost."""

    def complete(
        self, claim: Claim, output: dict[str, Any], logs: list[str], detail: dict[str, Any] | None
    ) -> None: ...

    def fail(self, claim: Claim, error: dict[str, Any], logs: list[str], detail: dict[str, Any] | None) -> None: ...

    def read_input(self, claim: Claim, ref: str, field: str) -> InputFile: ...

    def save_output(self, claim: Claim, entry: CatalogEntry, data: bytes, ext: str, content_type: str) -> str:
        """Store an output file of the task and return its public URL."""

    def wait_for_work(self, timeout: float) -> None:
        """Block until new work may be available (or the timeout passes)."""


class LocalTransport:
    def __init__(self, store: Store, files: FileService, inputs: InputResolver, wakeup: Wakeup) -> None:
        self.store = store
        self.files = files
        self.inputs = inputs
        self.wakeup = wakeup
        self._seen = wakeup.generation

    def claim(self, worker_id: str, capabilities: Iterable[tuple[str, str]], lease_seconds: float) -> Claim | None:
        self._seen = self.wakeup.generation
        return self.store.leases.claim_next_task(worker_id, capabilities, lease_seconds)

    def claim_more(
        self, worker_id: str, first: Claim, match: dict[str, Any], limit: int, lease_seconds: float
    ) -> list[Claim]:
        task = first.task
        return self.store.leases.claim_matching(
            worker_id, task.model, task.task_type, match=match, limit=limit, lease_seconds=lease_seconds
        )

    def heartbeat(self, claim: Claim, lease_seconds: float, logs: list[str], detail: dict[str, Any] | None) -> None:
        self.store.leases.heartbeat(claim.task.task_id, claim.lease_id, lease_seconds, logs=logs, detail=detail)

    def complete(self, claim: Claim, output: dict[str, Any], logs: list[str], detail: dict[str, Any] | None) -> None:
        self.store.leases.complete(claim.task.task_id, claim.lease_id, output, logs=logs, detail=detail)

    def fail(self, claim: Claim, error: dict[str, Any], logs: list[str], detail: dict[str, Any] | None) -> None:
        self.store.leases.fail(claim.task.task_id, claim.lease_id, error, logs=logs, detail=detail)

    def read_input(self, claim: Claim, ref: str, field: str) -> InputFile:
        return self.inputs.resolve(ref, field=field)

    def save_output(self, claim: Claim, entry: CatalogEntry, data: bytes, ext: str, content_type: str) -> str:
        blob = self.files.save(
            data,
            kind="output",
            ext=ext,
            content_type=content_type,
            retention=entry.retention,
            account_id=claim.task.account_id,
            task_id=claim.task.task_id,
        )
        return self.files.blob_url(blob)

    def wait_for_work(self, timeout: float) -> None:
        self.wakeup.wait(self._seen, timeout)
