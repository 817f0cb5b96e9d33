"""An in-memory `RunContext` for running backends directly in tests (no store, no server)."""

from __future__ import annotations

import base64

from genmill.backends.base import InputFile


class MemoryContext:
    """A `RunContext` that keeps logs, progress and outputs in memory and resolves base64 inputs."""

    def __init__(self) -> None:
        self.task_id = "test-task"
        self.logs: list[str] = []
        self.fractions: list[float] = []
        self.outputs: dict[str, tuple[bytes, str]] = {}
        self.stop = False

    def log(self, line: str) -> None:
        self.logs.append(line)

    def progress(self, fraction: float, note: str = "") -> None:
        self.fractions.append(fraction)

    def read_input(self, ref: str, *, field: str) -> InputFile:
        return InputFile(data=base64.b64decode(ref.split(",", 1)[-1]), content_type="application/octet-stream")

    def save_output(self, data: bytes, *, ext: str, content_type: str) -> str:
        url = f"memory://{len(self.outputs)}.{ext}"
        self.outputs[url] = (data, content_type)
        return url

    def cancelled(self) -> bool:
        return self.stop

    def output(self, url: str) -> bytes:
        return self.outputs[url][0]
