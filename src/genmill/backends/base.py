"""The backend interface: what a model implementation must provide to the worker.

A backend declares which catalog entries it can run, says whether it can run here (packages, native libraries,
weights), loads its model once per worker, and runs one task at a time in a worker thread. It talks to the rest
of genmill only through `RunContext`, so the same backend runs in the in-process pool and in a remote worker.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, Protocol

from genmill.domain.catalog import CatalogEntry, TaskInput


@dataclass(frozen=True)
class InputFile:
    """A media input resolved to bytes (from an upload, a data URI, base64 or a guarded URL fetch)."""

    data: bytes
    content_type: str
    name: str = ""


@dataclass(frozen=True)
class Availability:
    ok: bool
    reason: str = ""


class RunContext(Protocol):
    """What a running backend may do. Implemented by the worker; backends never touch the store directly."""

    task_id: str

    def log(self, line: str) -> None:
        """Append a short progress line to the task's `logs` (visible to the client)."""

    def progress(self, fraction: float, note: str = "") -> None:
        """Report progress in [0, 1]; stored in the task's `detail`."""

    def read_input(self, ref: str, *, field: str) -> InputFile:
        """Resolve an input reference (URL of this server, data URI, base64, or remote URL) to bytes.

        Raises `genmill.errors.FetchError` naming `field` when it cannot.
        """

    def save_output(self, data: bytes, *, ext: str, content_type: str) -> str:
        """Store an output file with the task's retention and return the public URL to put into `output`."""

    def cancelled(self) -> bool:
        """True when the client or operator asked to stop this task; long backends check it between steps."""


class Backend(ABC):
    """A model implementation. Subclasses set `name` and `entries` and implement the three methods."""

    name: str = ""
    entries: tuple[tuple[str, str], ...] = ()
    """The (model, task_type) catalog keys this backend runs."""

    @abstractmethod
    def availability(self) -> Availability:
        """Whether this backend can run on this machine; cheap (imports, file checks), never loads the model."""

    @abstractmethod
    def load(self) -> None:
        """Load the model into memory. Called once per worker before the first task; must be idempotent."""

    @abstractmethod
    def run(self, entry: CatalogEntry, inputs: TaskInput, ctx: RunContext) -> dict[str, Any]:
        """Run one task and return its `output` object (e.g. `{"image_url": url}`).

        Runs in a worker thread, never on the event loop. Raise `genmill.errors.BackendError` (or
        `FetchError`) to fail the task with a clear message; the worker releases its credits.
        """
