"""The worker transport: every call a worker makes to the task system, behind one small interface.

`genmill.engine.local.LocalTransport` calls the server's worker gate in-process; `HttpTransport` speaks the HTTP
worker protocol to the same gate, so `genmill.worker.runtime` runs unchanged on a GPU machine anywhere. Only the
protocol lives here: a remote worker imports it without the engine, the store or SQLAlchemy.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Protocol

from genmill.domain.catalog import CatalogEntry
from genmill.domain.records import Claim, InputFile

Done = tuple[Claim, dict[str, Any], list[str], dict[str, Any] | None]
"""A completed task for `complete_many`: the claim, its output, its last logs and detail."""


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

    def complete_many(self, done: list[Done]) -> list[Exception | None]:
        """Complete several leased tasks (a batch's results), in one transaction where the transport can; for each,
        None or the error that refused or failed it (`genmill.errors.Conflict` when its lease was lost), the others
        unaffected. Raises when none could be recorded (the database unavailable for the one transaction)."""

    def fail(self, claim: Claim, error: dict[str, Any], logs: list[str], detail: dict[str, Any] | None) -> None: ...

    def read_input(self, claim: Claim, ref: str, field: str) -> InputFile: ...

    def save_output(self, claim: Claim, entry: CatalogEntry, data: bytes, ext: str, content_type: str) -> str:
        """Store an output file of the task and return its public URL."""

    def wait_for_work(self, timeout: float) -> None:
        """Block until new work may be available (or the timeout passes)."""
