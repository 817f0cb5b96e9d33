"""`EchoBackend`: always available, returns the payload, sleeps in slices that notice a cancellation."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from genmill.backends.registry import builtin_backends
from genmill.catalog import build_catalog
from genmill.domain.catalog import CatalogEntry
from genmill.domain.records import InputFile
from genmill.errors import BackendError
from genmill.models.echo.backend import EchoBackend
from genmill.worker.backendset import BackendSet


class MemoryContext:
    """A `RunContext` that keeps logs and progress in memory; `stop` simulates a lost lease or a cancel."""

    def __init__(self) -> None:
        self.task_id = "test-task"
        self.logs: list[str] = []
        self.fractions: list[float] = []
        self.stop = threading.Event()

    def log(self, line: str) -> None:
        self.logs.append(line)

    def progress(self, fraction: float, note: str = "") -> None:
        self.fractions.append(fraction)

    def read_input(self, ref: str, *, field: str) -> InputFile:
        raise AssertionError("echo reads no input files")

    def save_output(self, data: bytes, *, ext: str, content_type: str) -> str:
        raise AssertionError("echo saves no output files")

    def cancelled(self) -> bool:
        return self.stop.is_set()


@pytest.fixture
def entry() -> CatalogEntry:
    found = build_catalog().get("genmill/echo", "echo")
    assert found is not None
    return found


def run(entry: CatalogEntry, raw: dict[str, Any], ctx: MemoryContext) -> dict[str, Any]:
    backend = EchoBackend()
    backend.load()
    return backend.run(entry, entry.input_model.model_validate(raw), ctx)


def test_it_is_always_available_and_registered(entry: CatalogEntry) -> None:
    backend = EchoBackend()
    assert backend.availability().ok
    assert backend.entries == (entry.key,)
    assert any(isinstance(b, EchoBackend) for b in builtin_backends())
    assert BackendSet(builtin_backends(), build_catalog()).can_run("genmill/echo", "echo")


def test_it_returns_the_payload_and_when_it_started(entry: CatalogEntry) -> None:
    ctx = MemoryContext()
    payload = {"n": 7, "items": [1, "a", None], "nested": {"ok": True}}
    before = time.time()
    output = run(entry, {"payload": payload}, ctx)
    assert output["echo"] == payload
    assert before <= output["started_at"] <= time.time()
    assert len(ctx.logs) == 1
    assert ctx.fractions == []


def test_the_default_payload_is_an_empty_object(entry: CatalogEntry) -> None:
    assert run(entry, {}, MemoryContext())["echo"] == {}


def test_a_sleep_reports_progress_up_to_one(entry: CatalogEntry) -> None:
    ctx = MemoryContext()
    output = run(entry, {"payload": "x", "sleep_ms": 120}, ctx)
    assert output["echo"] == "x"
    assert ctx.fractions, "a sleeping echo reports progress"
    assert ctx.fractions == sorted(ctx.fractions)
    assert ctx.fractions[-1] == pytest.approx(1.0)
    assert "120 ms" in ctx.logs[0]


def test_a_cancelled_sleep_stops_with_a_backend_error(entry: CatalogEntry) -> None:
    ctx = MemoryContext()
    threading.Timer(0.1, ctx.stop.set).start()
    with pytest.raises(BackendError):
        run(entry, {"sleep_ms": 10_000}, ctx)
    assert ctx.logs == []
