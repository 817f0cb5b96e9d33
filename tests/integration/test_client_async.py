"""`genmill.client.AsyncClient` against real genmill servers on 127.0.0.1 (directly, and through a genmill that
forwards to another as its upstream), the same calls as test_client.py in asyncio."""

from __future__ import annotations

import asyncio
import io
import threading
from pathlib import Path

import httpx
import pytest
from PIL import Image
from tests.integration.client_servers import MODEL, Server
from tests.integration.client_transports import AsyncRecording, Fault

from genmill.client import (
    AsyncClient,
    BadRequest,
    ConnectionFailed,
    NotFound,
    Task,
    TaskFailed,
    TaskStatus,
    WaitTimeout,
)


def test_run_uploads_waits_and_downloads(server: Server, photo: Path, tmp_path: Path) -> None:
    async def scenario() -> Task:
        async with AsyncClient(server.url, server.key) as client:
            return await client.run(MODEL, "upscale", {"image": photo, "scale": 3}, output_dir=tmp_path / "out")

    task = asyncio.run(scenario())
    assert task.status is TaskStatus.COMPLETED and len(task.files) == 1
    assert Image.open(io.BytesIO(task.files[0].read_bytes())).size == (24, 18)


@pytest.mark.parametrize("events", ["stream", "polling", "absent"])
def test_wait_by_stream_by_polling_and_where_the_stream_is_absent(server: Server, photo: Path, events: str) -> None:
    def rule(request: httpx.Request, _: int) -> Fault | None:
        return Fault.NO_EVENTS if events == "absent" and request.url.path.endswith("/events") else None

    transport = AsyncRecording(rule)
    server.upscaler.gate.clear()
    seen: list[TaskStatus] = []

    async def scenario() -> tuple[str, Task]:
        async with AsyncClient(server.url, server.key, transport=transport, use_events=events != "polling") as client:
            created = await client.create(MODEL, "upscale", {"image": photo})
            threading.Timer(1.0, server.upscaler.gate.set).start()
            return created.task_id, await client.wait(
                created.task_id, timeout=60, on_update=lambda t: seen.append(t.status)
            )

    task_id, done = asyncio.run(scenario())
    assert done.status is TaskStatus.COMPLETED and seen[-1] is TaskStatus.COMPLETED
    polls = len([p for p in transport.paths() if p == f"/api/v1/task/{task_id}"])
    streams = len([p for p in transport.paths() if p.endswith("/events")])
    assert streams == {"stream": 1, "polling": 0, "absent": 1}[events]
    assert polls == 1 if events == "stream" else polls >= 2  # the stream needs only the first GET


def test_timeout_failure_cancel_and_errors(plain: Server, photo: Path) -> None:
    plain.upscaler.gate.clear()

    async def scenario() -> None:
        async with AsyncClient(plain.url, plain.key) as client:
            image = await client.upload(photo)
            held = await client.create(MODEL, "upscale", {"image": image})
            with pytest.raises(WaitTimeout) as timed_out:
                await client.wait(held.task_id, timeout=0.5)
            assert timed_out.value.task.task_id == held.task_id
            pending = await client.create(MODEL, "upscale", {"image": image})
            assert (await client.cancel(pending.task_id)).status is TaskStatus.CANCELLED
            with pytest.raises(BadRequest):
                await client.cancel(pending.task_id)
            with pytest.raises(NotFound):
                await client.get("00000000-0000-0000-0000-000000000000")
            plain.upscaler.gate.set()
            with pytest.raises(TaskFailed) as failed:
                await client.run(MODEL, "background-remove", {"image": image}, timeout=60)
            assert failed.value.task.status is TaskStatus.FAILED
            listed = [t.task_id async for t in client.history(page_size=1)]
            assert listed[1:3] == [pending.task_id, held.task_id] and len(listed) == 3

    asyncio.run(scenario())


def test_retries_reads_always_and_creates_only_with_a_key(plain: Server, photo: Path) -> None:
    def rule(request: httpx.Request, index: int) -> Fault | None:
        if request.url.path == "/account/info":
            return (Fault.REFUSE, Fault.ANSWER_503, None)[min(index, 2)]
        if request.url.path == "/api/v1/task" and request.method == "POST":
            key = request.headers.get("idempotency-key")
            earlier = [r for r in transport.requests[:index] if r.url.path == request.url.path and r.method == "POST"]
            if not any(r.headers.get("idempotency-key") == key for r in earlier):
                return Fault.LOSE_ANSWER  # the first attempt of each create reaches the server, its answer is lost
        return None

    transport = AsyncRecording(rule)

    async def scenario() -> list[Task]:
        async with AsyncClient(plain.url, plain.key, transport=transport) as client:
            assert (await client.account()).account_id == plain.account_id
            image = await client.upload(photo)
            with pytest.raises(ConnectionFailed):
                await client.create(MODEL, "upscale", {"image": image})
            task = await client.create(MODEL, "upscale", {"image": image}, retry=True)
            assert (await client.wait(task.task_id, timeout=60)).status is TaskStatus.COMPLETED
            return [t async for t in client.history()]

    tasks = asyncio.run(scenario())
    assert transport.paths()[:3] == ["/account/info"] * 3
    creates = [r for r in transport.requests if r.url.path == "/api/v1/task" and r.method == "POST"]
    assert len(creates) == 3 and creates[1].headers["idempotency-key"] == creates[2].headers["idempotency-key"]
    assert len(tasks) == 2  # the unkeyed create (its answer lost) and one task from the retried keyed create
