"""The upstream backend against a second, real genmill server on loopback.

The front server runs `UpstreamBackend` only; the upstream runs the Pillow test upscaler (and a backend that
always fails) with its own in-process worker. Tasks go through the front's real API and worker.
"""

from __future__ import annotations

import base64
import io
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image
from tests.integration.client_servers import serve
from tests.integration.upstream_front import Front, serve_front
from tests.support import AlwaysFails, PillowUpscale, png_bytes

from genmill.app import Runtime
from genmill.backends.registry import upstream_backends
from genmill.backends.upstream import UpstreamBackend, parse_upstream_models
from genmill.catalog import build_catalog
from genmill.domain.catalog import CatalogEntry
from genmill.errors import BackendError
from genmill.settings import Settings
from genmill.testing import MemoryRunContext

MODEL = "Qubico/image-toolkit"
UPSCALE = (MODEL, "upscale")
FAILS_UPSTREAM = (MODEL, "background-remove")  # the upstream runs AlwaysFails for it
NOT_SERVED_UPSTREAM = (MODEL, "segment")  # the upstream has no backend for it: its create answers 400


@dataclass
class Upstream:
    url: str
    key: str
    runtime: Runtime
    upscaler: PillowUpscale

    def task(self, task_id: str) -> dict[str, Any]:
        r = httpx.get(f"{self.url}/api/v1/task/{task_id}", headers={"X-API-Key": self.key}, timeout=30)
        return dict(r.json()["data"])


@pytest.fixture
def upstream(tmp_path: Path) -> Iterator[Upstream]:
    """A second genmill on a real loopback port with one in-process worker."""
    upscaler = PillowUpscale()
    with serve(tmp_path / "upstream", [upscaler, AlwaysFails()], upscaler) as server:
        yield Upstream(server.url, server.key, server.runtime, upscaler)


def make_backend(upstream: Upstream, **overrides: Any) -> UpstreamBackend:
    options: dict[str, Any] = {
        "base_url": upstream.url,
        "api_key": upstream.key,
        "entries": [UPSCALE, FAILS_UPSTREAM, NOT_SERVED_UPSTREAM],
        "poll_interval": 0.05,
        "timeout": 30,
        "allow_private": True,
        "local_url": "http://testserver",
        **overrides,
    }
    return UpstreamBackend(**options)


@pytest.fixture
def front(tmp_path: Path, upstream: Upstream) -> Iterator[Front]:
    """The server clients talk to: it runs nothing itself and forwards every task to `upstream`."""
    with serve_front(tmp_path / "front", make_backend(upstream), 10_000_000) as front:
        yield front


def test_forwarded_upscale_completes_and_its_output_is_stored_here(front: Front, upstream: Upstream) -> None:
    # An input that is this server's own file: the upstream cannot reach it, so it must travel inline.
    upload = front.client.post(
        "/api/ephemeral_resource",
        headers={"X-API-Key": front.key},
        json={"file_name": "in.png", "file_data": base64.b64encode(png_bytes(6, 4)).decode()},
    )
    image_url = upload.json()["data"]["url"]
    assert image_url.startswith("http://testserver/files/")
    task_id = front.create(UPSCALE, image=image_url, scale=2)

    assert front.runtime.workers[0].run_once()

    done = front.task(task_id)
    assert done["status"] == "completed", done["error"]
    local_url = done["output"]["image_url"]
    assert local_url.startswith("http://testserver/files/outputs/")
    served = front.client.get(local_url.removeprefix("http://testserver"))
    assert served.status_code == 200 and served.headers["content-type"] == "image/png"
    assert Image.open(io.BytesIO(served.content)).size == (12, 8)

    forwarded = [line for line in done["logs"] if line.startswith("forwarded to upstream task ")]
    assert forwarded, done["logs"]
    upstream_id = forwarded[0].rsplit(" ", 1)[-1]
    assert any(line.startswith("upstream: resizing 6x4 by 2") for line in done["logs"])
    remote = upstream.task(upstream_id)
    assert remote["status"] == "completed"
    # It travelled inline; the upstream (genmill here) stored it as an upload and its task names that file.
    assert remote["input"]["image"].startswith(f"{upstream.url}/files/uploads/")
    assert remote["output"]["image_url"].startswith(upstream.url)  # only the upstream's own copy points there
    credits = front.credits()
    assert credits["used_credits"] == done["meta"]["usage"]["consume"] > 0 and credits["frozen_credits"] == 0


def test_a_task_the_upstream_refuses_fails_here_without_charging(front: Front) -> None:
    task_id = front.create(NOT_SERVED_UPSTREAM, image=base64.b64encode(png_bytes(4, 4)).decode(), prompt="person")
    failed = front.run(task_id)
    assert failed["status"] == "failed"
    assert failed["error"]["message"].startswith("the upstream provider refused to create the task")
    assert "no worker" in failed["error"]["raw_message"]  # the upstream's own 400 message
    credits = front.credits()
    assert credits["used_credits"] == 0 and credits["frozen_credits"] == 0


def test_an_upstream_task_failure_fails_here_with_its_message(front: Front) -> None:
    task_id = front.create(FAILS_UPSTREAM, image=base64.b64encode(png_bytes(4, 4)).decode())
    failed = front.run(task_id)
    assert failed["status"] == "failed"
    assert failed["error"]["message"] == (
        "the upstream provider failed the task: the segmentation model rejected the image"
    )
    assert failed["error"]["raw_message"] == "the segmentation model rejected the image"
    assert "upstream: about to fail" in failed["logs"]
    credits = front.credits()
    assert credits["used_credits"] == 0 and credits["frozen_credits"] == 0


def stop_when_forwarded(ctx: MemoryRunContext) -> bool:
    """A `cancel_when` that stops the task as soon as the backend says it forwarded it."""
    return any(line.startswith("forwarded to upstream") for line in ctx.logs)


def upscale_entry() -> CatalogEntry:
    entry = build_catalog().get(*UPSCALE)
    assert entry is not None
    return entry


def test_cancelling_here_cancels_the_pending_upstream_task(upstream: Upstream) -> None:
    upstream.upscaler.gate.clear()  # the upstream's only worker gets stuck on a first task…
    blocker = httpx.post(
        upstream.url + "/api/v1/task",
        headers={"X-API-Key": upstream.key},
        json={"model": MODEL, "task_type": "upscale", "input": {"image": base64.b64encode(png_bytes(4, 4)).decode()}},
        timeout=30,
    ).json()["data"]["task_id"]
    deadline = time.monotonic() + 10
    while upstream.task(blocker)["status"] != "processing" and time.monotonic() < deadline:
        time.sleep(0.02)
    # …so the forwarded task stays pending there.
    entry = upscale_entry()
    backend = make_backend(upstream)
    ctx = MemoryRunContext(task_id="local-task", cancel_when=stop_when_forwarded)
    inputs = entry.input_model.model_validate({"image": base64.b64encode(png_bytes(4, 4)).decode(), "scale": 2})
    with pytest.raises(BackendError, match="cancelled"):
        backend.run(entry, inputs, ctx)
    upstream_id = ctx.logs[0].rsplit(" ", 1)[-1]
    assert f"cancelled upstream task {upstream_id}" in ctx.logs
    assert upstream.task(upstream_id)["status"] == "cancelled"
    assert ctx.outputs == {}
    upstream.upscaler.gate.set()
    backend.unload()


def test_direct_run_copies_every_output_url(upstream: Upstream) -> None:
    """Without a front server: the output object is rewritten to what `save_output` returned."""
    entry = upscale_entry()
    backend = make_backend(upstream)
    ctx = MemoryRunContext(task_id="local-task")
    inputs = entry.input_model.model_validate({"image": base64.b64encode(png_bytes(5, 3)).decode(), "scale": 3})
    output = backend.run(entry, inputs, ctx)
    assert output == {"image_url": "memory://1.png"}
    assert Image.open(io.BytesIO(ctx.output("memory://1.png"))).size == (15, 9)
    backend.unload()


def test_availability_names_the_missing_setting() -> None:
    assert UpstreamBackend(base_url="", api_key="k", entries=[UPSCALE]).availability().reason == (
        "GENMILL_UPSTREAM_URL is not set"
    )
    assert (
        "GENMILL_UPSTREAM_API_KEY"
        in UpstreamBackend(base_url="https://api.example", api_key="", entries=[UPSCALE]).availability().reason
    )
    assert (
        "GENMILL_UPSTREAM_MODELS"
        in UpstreamBackend(base_url="https://api.example", api_key="k", entries=[]).availability().reason
    )
    assert UpstreamBackend(base_url="https://api.example", api_key="k", entries=[UPSCALE]).availability().ok


def test_settings_build_the_upstream_backend(tmp_path: Path) -> None:
    catalog = build_catalog()
    entries, unknown = parse_upstream_models("Qubico/image-toolkit/upscale, Qubico/tts, nope/x", catalog)
    assert entries == [UPSCALE, ("Qubico/tts", "zero-shot")] and unknown == ["nope/x"]
    assert upstream_backends(Settings(data_dir=tmp_path)) == []
    settings = Settings(
        data_dir=tmp_path,
        upstream_url="https://api.example",
        upstream_api_key="secret",
        upstream_models="Qubico/image-toolkit/upscale",
    )
    assert "secret" not in repr(settings)
    [backend] = upstream_backends(settings, catalog)
    assert isinstance(backend, UpstreamBackend)
    assert backend.entries == (UPSCALE,) and backend.availability().ok


def test_the_server_offers_forwarded_entries_from_its_settings(tmp_path: Path) -> None:
    from genmill.app import Runtime
    from genmill.settings import Settings as Configured

    settings = Configured(
        data_dir=tmp_path,
        upstream_url="http://127.0.0.1:9",
        upstream_api_key="k",
        upstream_models="Qubico/hunyuan/txt2video",
        backends="upstream",
    )
    runtime = Runtime(settings)
    try:
        assert runtime.serving.serves("Qubico/hunyuan", "txt2video", "public")
        assert not runtime.serving.serves("Qubico/hunyuan", "fast-txt2video", "public")
    finally:
        runtime.store.close()
