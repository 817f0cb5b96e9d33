"""The backend interface: what a model implementation must provide to the worker.

A backend declares which catalog entries it can run, says whether it can run here (packages, native libraries,
weights), loads its model once per worker, and runs one task at a time in a worker thread. It talks to the rest
of genmill only through `RunContext`, so the same backend runs in the in-process pool and in a remote worker.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from genmill.domain.catalog import CatalogEntry, TaskInput
from genmill.domain.records import InputFile, OriginTask
from genmill.errors import BackendError


@dataclass(frozen=True)
class Availability:
    ok: bool
    reason: str = ""


@dataclass(frozen=True)
class Resident:
    """One thing a loaded backend keeps in memory on one device: a pipeline, a transformer, shared encoders.

    Backends that load the same thing (AI Hug and Wan image-to-video read one pipeline; every FLUX.1 variant has
    the same text encoders and VAE) name it with the same `key`, so the model cache counts it once and never
    evicts one backend to make room for another that needs nothing new.
    """

    key: str
    device: str
    """"cpu" or "cuda:N": whose memory budget it counts against."""
    nbytes: int


@dataclass(frozen=True)
class ServedBy:
    """What really runs a catalog entry on this backend, said before anyone pays (`/api/v1/models`, the task's
    `detail`, `genmill models`).

    `stand_in` is True when it is another model than the one the entry names (MusicGen for ACE-Step); `limits`
    are the ways it honours the entry only in part ("lyrics are not sung", "2x Lanczos, not super-resolution").
    """

    model: str
    """The model that runs, e.g. "MusicGen (facebook/musicgen-small)"."""
    stand_in: bool = False
    limits: tuple[str, ...] = ()


def progress_detail(fraction: float, note: str = "") -> dict[str, Any]:
    """A task's `detail` after a progress report, as the worker stores it: the fraction clamped to 0..1 and
    rounded to four places, and the note when there is one."""
    return {"progress": round(max(0.0, min(1.0, fraction)), 4), **({"note": note} if note else {})}


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

    def origin(self) -> OriginTask | None:
        """The earlier task a derived operation works on (its entry has `derived_from`); None for other tasks.

        Files its output names may be read with `read_input`, like the task's own inputs."""

    def remember(self, key: str, value: Any) -> None:
        """Keep a JSON `value` under `key` in the task's `detail` for as long as the task is kept, beside
        `served_by` and progress, whether it completes or fails; e.g. the upstream task id that a later operation
        on this task must name."""


class Backend(ABC):
    """A model implementation. Subclasses set `name` and `entries` and implement the three methods."""

    name: str = ""
    entries: tuple[tuple[str, str], ...] = ()
    """The (model, task_type) catalog keys this backend runs."""
    device: str = "cpu"
    """Where the model runs ("cpu", "cuda:N", "vulkan:N"); its memory counts against that device's budget."""
    memory_bytes: int = 0
    """The loaded model's footprint, used by the worker's model cache (0: negligible). Backends whose memory is
    shared with others or spread over devices describe it with `residents()` instead."""
    working_bytes: int = 0
    """Memory a run needs on `device` beyond what stays loaded (activations); the cache keeps it free."""
    requirements: tuple[str, ...] = ()
    """Extra packages the backend needs (shown by `genmill models` when missing)."""
    max_batch_size: int = 1
    """More than 1: the worker may gather compatible pending tasks and hand them to `run_batch` together."""
    batch_keys: tuple[str, ...] = ()
    """Input fields whose values must be equal for tasks to share a batch (e.g. width, height, steps)."""

    def residents(self) -> list[Resident]:
        """What this backend holds once loaded, per device; valid after `availability()` said ok.

        The default is one private resident of `memory_bytes` on `device`.
        """
        if not self.memory_bytes:
            return []
        return [Resident(f"backend:{self.name}", self.device, self.memory_bytes)]

    def served_by(self, entry: CatalogEntry) -> ServedBy:
        """What runs `entry` here; backends that stand in for another model or honour an entry in part override
        it. The default: this backend's own model, in full."""
        return ServedBy(self.name)

    def check_request(self, entry: CatalogEntry, inputs: TaskInput) -> None:  # noqa: B027 - optional hook
        """Refuse, when the task is created and before anyone pays, inputs this backend can tell at once it cannot
        honour (a language its voice does not speak, a reference voice it cannot clone): raise
        `genmill.errors.InputRejected` naming the field. Runs in the API process: cheap, never loads the model.
        Backends repeat the check in `run` for tasks created where they were not known (remote workers)."""

    def memory_note(self) -> str:
        """Where and how the model runs, for `genmill models` (e.g. "cuda:0, model-offload: ..."); "" when there
        is nothing to say."""
        return ""

    @abstractmethod
    def availability(self) -> Availability:
        """Whether this backend can run on this machine; cheap (imports, file checks), never loads the model."""

    @abstractmethod
    def load(self) -> None:
        """Load the model into memory. Called once per worker before the first task; must be idempotent."""

    def unload(self) -> None:  # noqa: B027 - optional hook, a no-op by default
        """Drop every reference to the model (the cache calls this for the least recently used model when memory
        runs short, then collects garbage and empties the device's allocator cache). Must be idempotent."""

    def run_batch(
        self, entry: CatalogEntry, inputs: list[TaskInput], ctxs: list[RunContext]
    ) -> list[dict[str, Any] | Exception]:
        """Run compatible tasks together; one output or exception per task, in order.

        The default runs them one by one; batching backends override it to make one model call.
        """
        results: list[dict[str, Any] | Exception] = []
        for one, ctx in zip(inputs, ctxs, strict=True):
            try:
                results.append(self.run(entry, one, ctx))
            except Exception as exc:
                results.append(exc)
        return results

    def batches_for(self, entry: CatalogEntry) -> bool:
        """Whether the worker gathers pending tasks of `entry` into batches; a backend batching some entries only
        narrows it (Flux batches txt2img, not its image tasks)."""
        return self.max_batch_size > 1

    @abstractmethod
    def run(self, entry: CatalogEntry, inputs: TaskInput, ctx: RunContext) -> dict[str, Any]:
        """Run one task and return its `output` object (e.g. `{"image_url": url}`).

        Runs in a worker thread, never on the event loop. Raise `genmill.errors.BackendError` (or
        `FetchError`) to fail the task with a clear message; the worker releases its credits.
        """


class UnservedBackend(Backend):
    """A catalog entry that nothing installed here can honestly run, listed (never available) so that
    `genmill models` and the start-up log say why instead of a bare "no backend"."""

    def __init__(self, name: str, entries: tuple[tuple[str, str], ...], reason: str) -> None:
        self.name = name
        self.entries = entries
        self.reason = reason

    def availability(self) -> Availability:
        return Availability(False, self.reason)

    def load(self) -> None:
        raise BackendError(self.reason)

    def run(self, entry: CatalogEntry, inputs: TaskInput, ctx: RunContext) -> dict[str, Any]:
        raise BackendError(self.reason)


class Prefetched:
    """A task's `RunContext` with its media inputs already fetched, so that URL fetches (seconds, for remote ones)
    happen before a backend takes its shared model lock instead of while the accelerator waits.

    `refs` are (field name, reference) pairs; empty and non-string references are skipped.
    """

    def __init__(self, ctx: RunContext, refs: Iterable[tuple[str, object]]) -> None:
        self.ctx = ctx
        self.task_id = ctx.task_id
        self.files = {
            ref: ctx.read_input(ref, field=name) for name, ref in refs if isinstance(ref, str) and ref.strip()
        }

    def read_input(self, ref: str, *, field: str) -> InputFile:
        return self.files[ref] if ref in self.files else self.ctx.read_input(ref, field=field)

    def log(self, line: str) -> None:
        self.ctx.log(line)

    def progress(self, fraction: float, note: str = "") -> None:
        self.ctx.progress(fraction, note)

    def save_output(self, data: bytes, *, ext: str, content_type: str) -> str:
        return self.ctx.save_output(data, ext=ext, content_type=content_type)

    def cancelled(self) -> bool:
        return self.ctx.cancelled()

    def origin(self) -> OriginTask | None:
        return self.ctx.origin()

    def remember(self, key: str, value: Any) -> None:
        self.ctx.remember(key, value)
