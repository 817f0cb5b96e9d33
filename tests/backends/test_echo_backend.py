"""`EchoBackend`: always available, returns the payload, sleeps in slices that notice a cancellation."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime
from typing import Any

import pytest

from genmill.backends.registry import builtin_backends
from genmill.catalog import build_catalog
from genmill.domain.catalog import CatalogEntry
from genmill.domain.records import InputFile, OriginTask
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
    assert backend.entries == (entry.key, ("genmill/echo", "echo-derive"))
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


def derive_entry() -> CatalogEntry:
    found = build_catalog().get("genmill/echo", "echo-derive")
    assert found is not None and found.derived_from is not None
    assert found.derived_from.models == ("genmill/echo",) and found.derived_from.field == "origin_task_id"
    return found


ORIGIN = OriginTask(
    task_id="origin-1",
    model="genmill/echo",
    task_type="echo",
    input={"payload": 1},
    output={"echo": 1, "image_url": "http://server/files/outputs/a.png", "clips": {"c": {"audio_url": "b64"}}},
    detail=None,
    created_at=datetime(2026, 11, 30, 1, 2, 3, tzinfo=UTC),
)


def test_echo_derive_answers_what_it_saw_of_the_origin() -> None:
    entry = derive_entry()
    ctx = MemoryRunContext(origin=ORIGIN)
    output = EchoBackend().run(entry, entry.input_model.model_validate({"origin_task_id": "origin-1"}), ctx)
    assert output["origin"] == {
        "task_id": "origin-1",
        "model": "genmill/echo",
        "task_type": "echo",
        "created_at": "2026-11-30T01:02:03+00:00",
        "output": ORIGIN.output,
    }
    assert ctx.inputs_read == []


def test_echo_derive_reads_every_file_its_origins_output_names_when_asked() -> None:
    entry = derive_entry()
    files = {"http://server/files/outputs/a.png": InputFile(b"png-bytes", "image/png", "a.png")}
    ctx = MemoryRunContext(origin=ORIGIN, files=files)
    inputs = entry.input_model.model_validate({"origin_task_id": "origin-1", "read_files": True})
    ctx.files["b64"] = InputFile(b"abc", "audio/mpeg", "b.mp3")
    output = EchoBackend().run(entry, inputs, ctx)
    assert output["origin"]["files"] == [
        {"path": "image_url", "bytes": 9, "content_type": "image/png"},
        {"path": "clips.c.audio_url", "bytes": 3, "content_type": "audio/mpeg"},
    ]
    assert ctx.inputs_read == [
        ("origin.output.image_url", "http://server/files/outputs/a.png"),
        ("origin.output.clips.c.audio_url", "b64"),
    ]


def test_echo_derive_without_its_origin_fails_clearly() -> None:
    entry = derive_entry()
    with pytest.raises(BackendError, match="the origin task origin-9 is not available"):
        EchoBackend().run(entry, entry.input_model.model_validate({"origin_task_id": "origin-9"}), MemoryRunContext())
