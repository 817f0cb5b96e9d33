"""`EchoBackend`: always available, returns the payload, sleeps in slices that notice a cancellation."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from genmill.backends.registry import builtin_backends
from genmill.catalog import build_catalog
from genmill.domain.catalog import CatalogEntry
from genmill.errors import BackendError
from genmill.models.echo.backend import EchoBackend
from genmill.testing import MemoryRunContext
from genmill.worker.backendset import BackendSet


@pytest.fixture
def entry() -> CatalogEntry:
    found = build_catalog().get("genmill/echo", "echo")
    assert found is not None
    return found


def run(entry: CatalogEntry, raw: dict[str, Any], ctx: MemoryRunContext) -> dict[str, Any]:
    backend = EchoBackend()
    backend.load()
    try:
        return backend.run(entry, entry.input_model.model_validate(raw), ctx)
    finally:
        assert ctx.inputs_read == [] and ctx.outputs == {}, "echo reads no input files and saves no output files"


def test_it_is_always_available_and_registered(entry: CatalogEntry) -> None:
    backend = EchoBackend()
    assert backend.availability().ok
    assert backend.entries == (entry.key,)
    assert any(isinstance(b, EchoBackend) for b in builtin_backends())
    assert BackendSet(builtin_backends(), build_catalog()).can_run("genmill/echo", "echo")


def test_it_returns_the_payload_and_when_it_started(entry: CatalogEntry) -> None:
    ctx = MemoryRunContext()
    payload = {"n": 7, "items": [1, "a", None], "nested": {"ok": True}}
    before = time.time()
    output = run(entry, {"payload": payload}, ctx)
    assert output["echo"] == payload
    assert before <= output["started_at"] <= time.time()
    assert len(ctx.logs) == 1
    assert ctx.fractions == []


def test_the_default_payload_is_an_empty_object(entry: CatalogEntry) -> None:
    assert run(entry, {}, MemoryRunContext())["echo"] == {}


def test_a_sleep_reports_progress_up_to_one(entry: CatalogEntry) -> None:
    ctx = MemoryRunContext()
    output = run(entry, {"payload": "x", "sleep_ms": 120}, ctx)
    assert output["echo"] == "x"
    assert ctx.fractions, "a sleeping echo reports progress"
    assert ctx.fractions == sorted(ctx.fractions)
    assert ctx.fractions[-1] == pytest.approx(1.0)
    assert "120 ms" in ctx.logs[0]


def test_a_cancelled_sleep_stops_with_a_backend_error(entry: CatalogEntry) -> None:
    ctx = MemoryRunContext()
    threading.Timer(0.1, ctx.cancel).start()  # as a lost lease or a cancel would
    with pytest.raises(BackendError):
        run(entry, {"sleep_ms": 10_000}, ctx)
    assert ctx.logs == []
