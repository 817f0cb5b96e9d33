"""`genmill mcp` driven by the MCP SDK's own client, against a real genmill on loopback.

The genmill server runs the Pillow test upscaler with one in-process worker behind uvicorn; `genmill mcp` runs as
a subprocess, reached over stdio (`stdio_client`) and over streamable HTTP (`streamable_http_client`), exactly as
an agent's MCP client reaches it. Nothing is faked between the client and the upscaled pixels.
"""

from __future__ import annotations

import base64
import io
import math
import os
import socket
import struct
import subprocess
import sys
import time
import wave
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from mcp.client.session import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp_types import CallToolResult, ImageContent, ResourceLink, TextContent
from PIL import Image
from tests.integration.client_servers import serve
from tests.loopback import free_port
from tests.support import PillowUpscale, png_bytes

from genmill.backends.base import Availability, Backend, RunContext
from genmill.domain.catalog import CatalogEntry, TaskInput
from genmill.mcp_server.connection import ClientGenmillConnection, GenmillAPIError

REPO = Path(__file__).resolve().parents[2]
UPSCALE_PRICE = 20_000  # the image toolkit's upscale, docs/credits.md
TOOLS = {
    "list_models", "create_task", "get_task", "wait_for_task", "cancel_task", "get_task_outputs", "account_credits"
}  # fmt: skip

Transport = Callable[[str, str, Path], Any]


class ToneSpeaker(Backend):
    """Serves `Qubico/tts` in these tests with a 440 Hz tone, 0.05 s per character: a real WAV, no model."""

    name = "test-tone-speaker"
    entries = (("Qubico/tts", "zero-shot"),)
    rate = 8000

    def availability(self) -> Availability:
        return Availability(True)

    def load(self) -> None:
        pass

    def run(self, entry: CatalogEntry, inputs: TaskInput, ctx: RunContext) -> dict[str, Any]:
        frames = int(len(inputs.gen_text) * 0.05 * self.rate)  # type: ignore[attr-defined]
        samples = (int(8000 * math.sin(2 * math.pi * 440 * i / self.rate)) for i in range(frames))
        buf = io.BytesIO()
        with wave.open(buf, "wb") as out:
            out.setnchannels(1)
            out.setsampwidth(2)
            out.setframerate(self.rate)
            out.writeframes(b"".join(struct.pack("<h", sample) for sample in samples))
        return {"audio_url": ctx.save_output(buf.getvalue(), ext="wav", content_type="audio/wav")}


@dataclass
class Genmill:
    url: str
    key: str
    upscaler: PillowUpscale
    tmp: Path


@pytest.fixture
def genmill(tmp_path: Path) -> Iterator[Genmill]:
    upscaler = PillowUpscale()
    with serve(tmp_path / "server", [upscaler, ToneSpeaker()], upscaler) as server:
        yield Genmill(server.url, server.key, upscaler, tmp_path)


def mcp_env(url: str, key: str) -> dict[str, str]:
    return {"PYTHONPATH": str(REPO / "src"), "GENMILL_URL": url, "GENMILL_API_KEY": key, "HF_HUB_OFFLINE": "1"}


@asynccontextmanager
async def over_stdio(url: str, key: str, tmp: Path) -> AsyncIterator[ClientSession]:
    params = StdioServerParameters(
        command=sys.executable, args=["-m", "genmill.cli", "mcp"], env=mcp_env(url, key), cwd=str(REPO)
    )
    with (tmp / "mcp-stdio.log").open("w") as errlog:
        async with stdio_client(params, errlog=errlog) as (read, write), ClientSession(read, write) as session:
            await session.initialize()
            yield session


@asynccontextmanager
async def over_http(url: str, key: str, tmp: Path) -> AsyncIterator[ClientSession]:
    port = free_port()
    with (tmp / "mcp-http.log").open("w") as errlog:
        process = subprocess.Popen(
            [sys.executable, "-m", "genmill.cli", "mcp", "--transport", "http", "--port", str(port)],
            env={**os.environ, **mcp_env(url, key)},
            cwd=REPO,
            stdout=errlog,
            stderr=errlog,
        )
        try:
            deadline = time.monotonic() + 30
            while True:
                try:
                    with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                        break
                except OSError:
                    assert process.poll() is None, (tmp / "mcp-http.log").read_text()
                    assert time.monotonic() < deadline, "genmill mcp --transport http did not listen"
                    await anyio.sleep(0.1)
            endpoint = f"http://127.0.0.1:{port}/mcp"
            async with streamable_http_client(endpoint) as (read, write), ClientSession(read, write) as session:
                await session.initialize()
                yield session
        finally:
            process.terminate()
            process.wait(10)


TRANSPORTS = pytest.mark.parametrize("transport", [over_stdio, over_http], ids=["stdio", "http"])


def run(test: Callable[[], Coroutine[Any, Any, None]]) -> None:
    anyio.run(test)


def text_of(result: CallToolResult) -> str:
    return "\n".join(block.text for block in result.content if isinstance(block, TextContent))


def structured(result: CallToolResult) -> dict[str, Any]:
    assert not result.is_error, text_of(result)
    assert isinstance(result.structured_content, dict), result
    return dict(result.structured_content)


def data_uri(data: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(data).decode()


@TRANSPORTS
def test_an_agent_lists_creates_waits_and_sees_the_upscaled_image(genmill: Genmill, transport: Transport) -> None:
    async def scenario() -> None:
        async with transport(genmill.url, genmill.key, genmill.tmp) as session:
            tools = await session.list_tools()
            assert {tool.name for tool in tools.tools} == TOOLS
            schemas = {tool.name: tool.input_schema for tool in tools.tools}
            assert set(schemas["create_task"]["required"]) == {"model", "task_type", "input"}

            listed = structured(
                await session.call_tool("list_models", {"model": "Qubico/image-toolkit", "task_type": "upscale"})
            )
            (entry,) = listed["models"]
            assert entry["available"] is True
            assert entry["list_price_credits"] == UPSCALE_PRICE
            assert entry["list_price_usd"] == pytest.approx(0.002)
            assert "image" in entry["input_schema"]["properties"]
            assert "scale" in entry["input_schema"]["properties"]

            before = structured(await session.call_tool("account_credits", {}))["credits"]

            inputs = {"image": data_uri(png_bytes(24, 16)), "scale": 2}
            task = structured(
                await session.call_tool(
                    "create_task", {"model": "Qubico/image-toolkit", "task_type": "upscale", "input": inputs}
                )
            )
            task_id = task["task_id"]

            progress: list[tuple[float, float | None, str | None]] = []

            async def on_progress(value: float, total: float | None, message: str | None) -> None:
                progress.append((value, total, message))

            waited = structured(
                await session.call_tool(
                    "wait_for_task", {"task_id": task_id, "timeout_seconds": 60}, progress_callback=on_progress
                )
            )
            assert waited["finished"] is True
            assert waited["task"]["status"] == "completed", waited
            assert progress, "no progress notification arrived"
            assert progress[-1][:2] == (100, 100)

            outputs = await session.call_tool("get_task_outputs", {"task_id": task_id})
            assert not outputs.is_error, text_of(outputs)
            images = [block for block in outputs.content if isinstance(block, ImageContent)]
            assert len(images) == 1
            assert images[0].mime_type == "image/png"
            decoded = Image.open(io.BytesIO(base64.b64decode(images[0].data)))
            assert decoded.size == (48, 32)

            linked = await session.call_tool("get_task_outputs", {"task_id": task_id, "max_inline_bytes": 10})
            links = [block for block in linked.content if isinstance(block, ResourceLink)]
            assert [link.mime_type for link in links] == ["image/png"]
            assert str(links[0].uri).startswith(f"{genmill.url}/files/")
            assert not any(isinstance(block, ImageContent) for block in linked.content)

            after = structured(await session.call_tool("account_credits", {}))["credits"]
            assert before["available_credits"] - after["available_credits"] == UPSCALE_PRICE

    run(scenario)


@TRANSPORTS
def test_bad_input_and_a_wrong_key_come_back_as_tool_errors(genmill: Genmill, transport: Transport) -> None:
    async def scenario() -> None:
        async with transport(genmill.url, genmill.key, genmill.tmp) as session:
            inputs = {"image": data_uri(png_bytes(8, 8)), "scale": 11}
            bad = await session.call_tool(
                "create_task", {"model": "Qubico/image-toolkit", "task_type": "upscale", "input": inputs}
            )
            assert bad.is_error
            assert "input.scale" in text_of(bad)
            assert "Traceback" not in text_of(bad)

            too_long = await session.call_tool("wait_for_task", {"task_id": "x", "timeout_seconds": 10_000})
            assert too_long.is_error
            assert "timeout_seconds" in text_of(too_long)

            unknown = await session.call_tool("get_task", {"task_id": "no-such-task"})
            assert unknown.is_error
            assert "not found" in text_of(unknown).lower()

        async with transport(genmill.url, "not-a-key", genmill.tmp) as session:
            refused = await session.call_tool("account_credits", {})
            assert refused.is_error
            assert "key" in text_of(refused).lower()
            assert "Traceback" not in text_of(refused)

    run(scenario)


def test_a_waiting_task_is_cancelled_and_a_running_one_is_waited_for_within_the_bound(genmill: Genmill) -> None:
    async def scenario() -> None:
        genmill.upscaler.gate.clear()  # the first task holds the only worker
        async with over_stdio(genmill.url, genmill.key, genmill.tmp) as session:
            inputs = {"image": data_uri(png_bytes(8, 8)), "scale": 2}
            args = {"model": "Qubico/image-toolkit", "task_type": "upscale", "input": inputs}
            running = structured(await session.call_tool("create_task", args))["task_id"]
            waiting = structured(await session.call_tool("create_task", args))["task_id"]

            bounded = structured(await session.call_tool("wait_for_task", {"task_id": running, "timeout_seconds": 1}))
            assert bounded["finished"] is False
            assert bounded["task"]["status"] in {"pending", "processing"}

            cancelled = structured(await session.call_tool("cancel_task", {"task_id": waiting}))
            assert cancelled["status"] == "cancelled"
            not_yet = await session.call_tool("get_task_outputs", {"task_id": waiting})
            assert not_yet.is_error
            assert "cancelled" in text_of(not_yet)

            genmill.upscaler.gate.set()
            done = structured(await session.call_tool("wait_for_task", {"task_id": running, "timeout_seconds": 60}))
            assert done["task"]["status"] == "completed"

    run(scenario)


def test_an_audio_output_comes_back_as_a_resource_link_to_the_wav(genmill: Genmill) -> None:
    async def scenario() -> None:
        async with over_stdio(genmill.url, genmill.key, genmill.tmp) as session:
            args = {"model": "Qubico/tts", "task_type": "zero-shot", "input": {"gen_text": "Hello there."}}
            task_id = structured(await session.call_tool("create_task", args))["task_id"]
            waited = structured(await session.call_tool("wait_for_task", {"task_id": task_id, "timeout_seconds": 60}))
            assert waited["task"]["status"] == "completed", waited
            outputs = await session.call_tool("get_task_outputs", {"task_id": task_id})
            assert not outputs.is_error, text_of(outputs)
            (link,) = [block for block in outputs.content if isinstance(block, ResourceLink)]
            assert link.mime_type == "audio/wav"
            assert link.description == f"audio_url of task {task_id}"
            assert not any(isinstance(block, ImageContent) for block in outputs.content)
            async with httpx.AsyncClient() as http:
                fetched = await http.get(str(link.uri))
            assert fetched.status_code == 200
            with wave.open(io.BytesIO(fetched.content)) as played:
                assert played.getnframes() == int(len("Hello there.") * 0.05 * ToneSpeaker.rate)

    run(scenario)


@pytest.mark.parametrize("call", ["models", "account"])
def test_an_unreachable_server_is_a_clear_error(call: str) -> None:
    connection = ClientGenmillConnection(f"http://127.0.0.1:{free_port()}", "gm_x", max_retries=0)

    async def scenario() -> None:
        try:
            with pytest.raises(GenmillAPIError, match="cannot reach the genmill server"):
                await getattr(connection, call)()
        finally:
            await connection.aclose()

    run(scenario)
