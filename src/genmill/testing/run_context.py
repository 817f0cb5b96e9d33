"""An in-memory `RunContext`: what a backend sees of genmill, with everything it does kept for the test to read.

A worker's context reads inputs through storage and the guarded fetcher, saves outputs to storage, and sends logs
and progress to the store with its heartbeats. This one resolves inline inputs (data URIs, base64) the way the
worker does, serves any other reference from a dict given up front, keeps outputs in memory under `memory://`
URLs, and records logs and progress in lists. A test stops the task with `cancel()` (from any thread, as a
client's cancel or a lost lease would) or with `cancel_when`, a condition checked each time the backend asks.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from genmill.backends.base import progress_detail
from genmill.domain.records import InputFile, OriginTask
from genmill.errors import FetchError
from genmill.net.media import decode_inline

DEFAULT_MAX_INPUT_BYTES = 20 * 1024 * 1024
"""The server's default cap on one input file (`GENMILL_MAX_INPUT_BYTES`)."""


@dataclass(frozen=True)
class SavedOutput:
    """One file a backend saved with `save_output`, as it passed it."""

    data: bytes
    ext: str
    content_type: str


class MemoryRunContext:
    """A `genmill.backends.base.RunContext` kept in memory.

    `files` maps references that are not inline (URLs of this or another server) to what reading them returns.
    `cancel_when(ctx)` is asked on every `cancelled()`; it lets a test stop a backend at a chosen point, e.g.
    `lambda ctx: bool(ctx.fractions)` stops it after its first progress report.
    """

    def __init__(
        self,
        *,
        task_id: str = "test-task",
        files: Mapping[str, InputFile] | None = None,
        cancel_when: Callable[[MemoryRunContext], bool] | None = None,
        max_input_bytes: int = DEFAULT_MAX_INPUT_BYTES,
        origin: OriginTask | None = None,
    ) -> None:
        self.task_id = task_id
        self.origin_task = origin
        """What `origin()` answers: the earlier task a derived operation works on (its files go into `files`)."""
        self.files = dict(files or {})
        self.cancel_when = cancel_when
        self.max_input_bytes = max_input_bytes
        self.logs: list[str] = []
        self.fractions: list[float] = []
        """Every progress fraction reported, in order."""
        self.notes: list[str] = []
        """The note of every progress report ("" when none), in step with `fractions`."""
        self.inputs_read: list[tuple[str, str]] = []
        """(field, reference) of every `read_input` call, in order."""
        self.remembered: dict[str, Any] = {}
        """What the backend kept in the task's `detail` with `remember`, by key."""
        self.outputs: dict[str, SavedOutput] = {}
        """Saved files by the URL `save_output` returned (memory://1.png, memory://2.wav, ...), in order."""
        self._stop = threading.Event()

    def log(self, line: str) -> None:
        self.logs.append(line)

    def progress(self, fraction: float, note: str = "") -> None:
        self.fractions.append(fraction)
        self.notes.append(note)

    @property
    def detail(self) -> dict[str, Any] | None:
        """The task's `detail` as the worker stores it: what was remembered and the last progress report (None
        before either; `served_by`, which the worker adds, is not a backend's to report)."""
        if not self.fractions:
            return dict(self.remembered) or None
        return {**self.remembered, **progress_detail(self.fractions[-1], self.notes[-1])}

    def read_input(self, ref: str, *, field: str) -> InputFile:
        """`files[ref]`, else the decoded data URI or base64; raises `FetchError` naming `input.<field>` as the
        worker does for an empty, malformed, oversized or unknown reference."""
        self.inputs_read.append((field, ref))
        if not isinstance(ref, str) or not ref.strip():
            raise FetchError(f"input.{field}: expected a URL or base64 data")
        ref = ref.strip()
        if ref in self.files:
            return self.files[ref]
        inline = decode_inline(ref, field=f"input.{field}", max_bytes=self.max_input_bytes)
        if inline is None:
            raise FetchError(f"input.{field}: {ref} is not one of this test's files")
        return inline

    def save_output(self, data: bytes, *, ext: str, content_type: str) -> str:
        url = f"memory://{len(self.outputs) + 1}.{ext}"
        self.outputs[url] = SavedOutput(data, ext, content_type)
        return url

    def output(self, url: str) -> bytes:
        """The bytes saved under `url`."""
        return self.outputs[url].data

    def cancel(self) -> None:
        """Ask the task to stop, as a client's cancel or a lost lease does; safe from any thread."""
        self._stop.set()

    def origin(self) -> OriginTask | None:
        return self.origin_task

    def remember(self, key: str, value: Any) -> None:
        self.remembered[key] = value

    def cancelled(self) -> bool:
        if not self._stop.is_set() and self.cancel_when is not None and self.cancel_when(self):
            self._stop.set()
        return self._stop.is_set()
