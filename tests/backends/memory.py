"""Helpers for running backends directly in tests (no store, no server), next to `genmill.testing`'s in-memory
`RunContext`: inline image references, and a fixture helper that skips a backend this machine cannot run."""

from __future__ import annotations

import base64
import io
import time
from collections.abc import Callable, Iterator

import pytest
from PIL import Image

from genmill.backends.base import Backend
from genmill.testing import MemoryRunContext


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


def after_steps(steps: int) -> Callable[[MemoryRunContext], bool]:
    """A `cancel_when` that stops a diffusion backend after `steps` denoising steps (its "step i/n" notes)."""
    return lambda ctx: sum(1 for note in ctx.notes if note.startswith("step ")) >= steps
