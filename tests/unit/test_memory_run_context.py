"""`genmill.testing.MemoryRunContext`, the in-memory `RunContext` backend tests (genmill's and plugins') run with."""

from __future__ import annotations

import base64
import threading

import pytest

from genmill.backends.base import RunContext
from genmill.domain.records import InputFile
from genmill.errors import FetchError
from genmill.testing import MemoryRunContext, SavedOutput

PNG_HEADER = b"\x89PNG\r\n\x1a\n" + b"\x00" * 8


def test_it_is_a_run_context() -> None:
    ctx: RunContext = MemoryRunContext(task_id="t1")
    assert ctx.task_id == "t1"


def test_inline_inputs_decode_as_the_worker_decodes_them_and_other_references_come_from_files() -> None:
    remote = InputFile(b"voice", "audio/wav", "voice.wav")
    ctx = MemoryRunContext(files={"https://example.com/voice.wav": remote})
    data_uri = "data:image/png;base64," + base64.b64encode(PNG_HEADER).decode()
    assert ctx.read_input(data_uri, field="image") == InputFile(PNG_HEADER, "image/png")
    assert ctx.read_input(base64.b64encode(PNG_HEADER).decode(), field="image").content_type == "image/png"  # sniffed
    assert ctx.read_input(" https://example.com/voice.wav ", field="ref_audio") is remote
    with pytest.raises(FetchError, match=r"^input\.video: https://example\.com/x\.mp4 is not one of this test's"):
        ctx.read_input("https://example.com/x.mp4", field="video")
    with pytest.raises(FetchError, match=r"^input\.image: expected a URL or base64 data"):
        ctx.read_input("  ", field="image")
    with pytest.raises(FetchError, match=r"^input\.image"):
        ctx.read_input("data:image/png;base64,not base64!", field="image")
    assert [field for field, _ in ctx.inputs_read] == ["image", "image", "ref_audio", "video", "image", "image"]


def test_outputs_are_kept_in_order_with_their_type() -> None:
    ctx = MemoryRunContext()
    first = ctx.save_output(b"png", ext="png", content_type="image/png")
    second = ctx.save_output(b"wav", ext="wav", content_type="audio/wav")
    assert (first, second) == ("memory://1.png", "memory://2.wav")
    assert list(ctx.outputs.values()) == [
        SavedOutput(b"png", "png", "image/png"),
        SavedOutput(b"wav", "wav", "audio/wav"),
    ]
    assert ctx.output(second) == b"wav"


def test_logs_and_progress_are_recorded_and_detail_is_what_the_worker_stores() -> None:
    ctx = MemoryRunContext()
    assert ctx.detail is None
    ctx.log("loading")
    ctx.progress(0.123456, "step 1/8")
    ctx.progress(1.5)
    assert ctx.logs == ["loading"] and ctx.fractions == [0.123456, 1.5] and ctx.notes == ["step 1/8", ""]
    assert ctx.detail == {"progress": 1.0}
    ctx.progress(0.123456, "step 1/8")
    assert ctx.detail == {"progress": 0.1235, "note": "step 1/8"}


def test_a_cancel_from_another_thread_or_a_condition_stops_the_task() -> None:
    ctx = MemoryRunContext()
    assert not ctx.cancelled()
    worker = threading.Thread(target=ctx.cancel)
    worker.start()
    worker.join()
    assert ctx.cancelled()
    once_under_way = MemoryRunContext(cancel_when=lambda ctx: bool(ctx.fractions))
    assert not once_under_way.cancelled()
    once_under_way.progress(0.1)
    assert once_under_way.cancelled() and once_under_way.cancelled()  # stays cancelled
