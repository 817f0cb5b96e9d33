"""Helpers for running backends directly in tests (no store, no server): an in-memory `RunContext`, inline
image references, and a fixture helper that skips a backend this machine cannot run."""

from __future__ import annotations

import base64
import io
import time
from collections.abc import Iterator

import pytest
from PIL import Image

from genmill.backends.base import Backend
from genmill.domain.records import InputFile


def image_ref(image: Image.Image, fmt: str = "PNG") -> str:
    """A data: URI of the image, as a client would send it."""
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return f"data:image/{fmt.lower()};base64," + base64.b64encode(buffer.getvalue()).decode()


def ready(backend: Backend) -> Iterator[Backend]:
    """Skip when the backend cannot run here; otherwise load it once and report how long that took."""
    availability = backend.availability()
    if not availability.ok:
        pytest.skip(f"{backend.name} unavailable: {availability.reason}")
    started = time.perf_counter()
    backend.load()
    print(f"\n{backend.name}: load {time.perf_counter() - started:.2f}s")
    yield backend


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


class CancelAfterProgress(MemoryContext):
    """A context whose task is cancelled as soon as the backend reports any progress (stops after one step)."""

    def cancelled(self) -> bool:
        return bool(self.fractions)
