"""The SDK's pure core: answers to results and exceptions, retry decisions, SSE reading, file names, tasks."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from rich.console import Console

from genmill.cli_client import Watcher
from genmill.client import BadRequest, NotFound, ProtocolError, RateLimited, ServerError, Task, TaskStatus, core


def wire_task(**overrides: object) -> dict[str, object]:
    return {
        "task_id": "t-1", "model": "Qubico/image-toolkit", "task_type": "upscale", "status": "processing",
        "input": {}, "output": None, "config": {}, "meta": {}, "detail": {"progress": 40}, "logs": ["a", "b"],
        "error": {"code": 0, "message": "", "raw_message": "", "detail": None}, **overrides,
    }  # fmt: skip


def test_the_envelope_gives_data_or_the_error_with_status_code_and_message() -> None:
    assert core.parse_answer(200, {}, b'{"code": 200, "data": {"x": 1}, "message": "success"}') == {"x": 1}
    body = (
        b'{"code": 400, "data": null, "message": "input.note: NUL", "detail": {"field": "input.note", "rule": "NUL"}}'
    )
    with pytest.raises(BadRequest) as bad:
        core.parse_answer(400, {}, body)
    assert (bad.value.status, bad.value.code, bad.value.message, bad.value.field) == (
        400,
        400,
        "input.note: NUL",
        "input.note",
    )
    with pytest.raises(RateLimited) as limited:
        core.parse_answer(429, {"Retry-After": "3"}, b'{"code": 429, "data": null, "message": "slow down"}')
    assert limited.value.retry_after == 3.0
    with pytest.raises(ServerError):
        core.parse_answer(502, {}, b"<html>bad gateway</html>")
    with pytest.raises(NotFound):  # HTTP 200 carrying an error code, as some PiAPI answers do
        core.parse_answer(200, {}, b'{"code": 404, "data": null, "message": "task not found"}')
    with pytest.raises(ProtocolError):
        core.parse_answer(200, {}, b"not json")


def test_retries_follow_the_rules() -> None:
    policy = core.RetryPolicy(max_retries=3, base_delay=0.5, max_delay=4)
    assert policy.retry_status(503, idempotent=True) and not policy.retry_status(503, idempotent=False)
    assert policy.retry_status(429, idempotent=False)  # a refusal changed nothing: safe to send again
    assert not policy.retry_status(400, idempotent=True) and not policy.retry_status(501, idempotent=True)
    assert all(0.25 <= policy.delay(0) <= 0.5 for _ in range(50))
    assert all(2 <= policy.delay(6) <= 4 for _ in range(50))  # capped at max_delay
    assert policy.delay(0, retry_after=3) == 3
    assert core.create_request("m", "t", {}).idempotent is False
    keyed = core.create_request("m", "t", {}, idempotency_key="k", webhook="http://h/x", webhook_secret="s")
    assert keyed.idempotent and keyed.headers == {"Idempotency-Key": "k"}
    assert keyed.json["config"] == {"webhook_config": {"endpoint": "http://h/x", "secret": "s"}}


def test_sse_frames_become_tasks_and_comments_are_skipped() -> None:
    decoder = core.SseDecoder()
    data = json.dumps(wire_task(status="completed"))
    lines = [": keep-alive", "", "id: 7", "event: status", f"data: {data}", ""]
    events = [e for e in map(decoder.feed, lines) if e is not None]
    assert len(events) == 1
    event_id, task = core.task_from_event(events[0])
    assert event_id == 7 and task is not None and task.status is TaskStatus.COMPLETED


def test_task_status_progress_and_output_urls() -> None:
    task = Task.from_wire(
        wire_task(
            status="Completed", output={"image_url": "https://a/x.png", "more": [{"u": "http://b/y.wav"}, "text"]}
        )
    )
    assert task.status is TaskStatus.COMPLETED and task.progress == 40.0
    assert task.output_urls == ["https://a/x.png", "http://b/y.wav"]
    assert TaskStatus.parse("canceled") is TaskStatus.CANCELLED
    with pytest.raises(ProtocolError):
        Task.from_wire({"status": "completed"})


def test_file_names_are_safe_and_unique_and_the_key_stays_home() -> None:
    taken: set[str] = set()
    names = [
        core.file_name_for(u, taken)
        for u in ("http://h/files/a.png", "http://h/other/a.png", "http://h/../%2e%2e/", "http://h/x")
    ]
    assert names == ["a.png", "a-1.png", "output", "x"]
    assert core.same_origin("http://127.0.0.1:8000/files/a", "http://127.0.0.1:8000")
    assert not core.same_origin("http://127.0.0.1:8001/files/a", "http://127.0.0.1:8000")
    assert not core.same_origin("https://cdn.example/a", "http://127.0.0.1:8000")


def test_paths_in_an_input_are_found_and_replaced() -> None:
    photo, mask = Path("photo.png"), Path("mask.png")
    value = {"image": photo, "layers": [{"mask": mask}], "prompt": "x"}
    assert core.local_paths(value) == [photo, mask]
    assert core.replace_paths(value, {photo: "u1", mask: "u2"}) == {
        "image": "u1",
        "layers": [{"mask": "u2"}],
        "prompt": "x",
    }


def test_the_watcher_draws_a_bar_on_a_terminal_and_lines_elsewhere() -> None:
    plain_out = io.StringIO()
    with Watcher(Console(file=plain_out, width=100)) as plain:
        plain.update(Task.from_wire(wire_task()))
        plain.update(Task.from_wire(wire_task(logs=["a", "b", "c"])))
        plain.update(Task.from_wire(wire_task(status="completed", logs=["a", "b", "c"])))
    assert plain_out.getvalue().splitlines() == [
        "  a",
        "  b",
        "task t-1 processing 40%",
        "  c",
        "task t-1 completed 100%",
    ]
    live_out = io.StringIO()
    with Watcher(Console(file=live_out, width=100, force_terminal=True)) as live:
        live.update(Task.from_wire(wire_task()))
    assert "t-1 processing" in live_out.getvalue() and "40%" in live_out.getvalue() and "━" in live_out.getvalue()
