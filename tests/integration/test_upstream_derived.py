"""Forwarding operations on an earlier task, and PiAPI's output shapes, through two real genmills on loopback.

The front forwards `genmill/echo` (`echo` and `echo-derive`) to the upstream, which runs `EchoBackend` with its
own in-process worker (and the Pillow test upscaler, to hold its worker busy when a test needs a task to wait
there). A forwarded task keeps its upstream id in `detail.upstream_task_id`; a derived task sends its origin's
upstream id, so the upstream works on its own copy of the origin.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from tests.integration.upstream_front import Front, serve_front
from tests.loopback import free_port, run_uvicorn
from tests.support import PillowUpscale, png_bytes

from genmill.app import Runtime, create_app
from genmill.backends.upstream import UpstreamBackend
from genmill.catalog import build_catalog
from genmill.domain.catalog import CatalogEntry
from genmill.domain.clock import ManualClock
from genmill.domain.records import OriginTask
from genmill.errors import BackendError
from genmill.models.echo.backend import EchoBackend
from genmill.settings import Settings
from genmill.store import Store
from genmill.store.migrate import upgrade
from genmill.testing import MemoryRunContext

ECHO = ("genmill/echo", "echo")
DERIVE = ("genmill/echo", "echo-derive")
PRICE = 5
CREDITS = 1000


@dataclass
class Upstream:
    url: str
    key: str
    runtime: Runtime
    clock: ManualClock
    upscaler: PillowUpscale

    def call(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        r = httpx.request(method, self.url + path, headers={"X-API-Key": self.key}, timeout=30, **kwargs)
        assert r.status_code == 200, r.text
        return dict(r.json()["data"])

    def task(self, task_id: str) -> dict[str, Any]:
        return self.call("GET", f"/api/v1/task/{task_id}")

    def upload(self, data: bytes, name: str) -> str:
        body = {"file_name": name, "file_data": base64.b64encode(data).decode()}
        return str(self.call("POST", "/api/ephemeral_resource", json=body)["url"])

    def task_count(self) -> int:
        with self.runtime.store.engine.connect() as conn:
            return int(conn.execute(sa.text("SELECT count(*) FROM tasks")).scalar_one())


@pytest.fixture
def upstream(tmp_path: Path) -> Iterator[Upstream]:
    """A second genmill on a real loopback port with one in-process worker; its store's clock can be stepped."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    settings = Settings(data_dir=tmp_path / "upstream", public_url=url, workers=1, allow_private_urls=True)
    database = settings.resolved_database_url()
    upgrade(database)
    clock = ManualClock()
    upscaler = PillowUpscale()
    runtime = Runtime(settings, backends=[EchoBackend(), upscaler], store=Store.from_url(database, clock=clock))
    account = runtime.store.accounts.create_account("operator", credits=10**9)
    key, _ = runtime.store.accounts.create_key(account.account_id)
    with run_uvicorn(create_app(settings, runtime=runtime), port):
        yield Upstream(url, key, runtime, clock, upscaler)
        upscaler.gate.set()
    runtime.store.close()


def make_backend(upstream: Upstream) -> UpstreamBackend:
    return UpstreamBackend(
        base_url=upstream.url,
        api_key=upstream.key,
        entries=[ECHO, DERIVE],
        poll_interval=0.05,
        timeout=30,
        allow_private=True,
        local_url="http://testserver",
    )


@pytest.fixture
def front(tmp_path: Path, upstream: Upstream) -> Iterator[Front]:
    """The server clients talk to: it forwards every echo task to `upstream` and runs nothing itself."""
    with serve_front(tmp_path / "front", make_backend(upstream), CREDITS, echo_price_credits=PRICE) as front:
        yield front


def forwarded_origin(front: Front) -> tuple[str, str]:
    """A front echo task run upstream; returns its id here and its id upstream."""
    origin_id = front.create(ECHO, payload={"n": 1})
    done = front.run(origin_id)
    assert done["status"] == "completed", done["error"]
    upstream_id = done["detail"]["upstream_task_id"]
    assert f"forwarded to upstream task {upstream_id}" in done["logs"]
    assert done["detail"]["served_by"]["model"].startswith("upstream: ")  # the worker's own entry is kept
    return origin_id, str(upstream_id)


def test_a_derived_task_names_its_origins_upstream_id_upstream(front: Front, upstream: Upstream) -> None:
    origin_id, upstream_origin = forwarded_origin(front)
    task_id = front.create(DERIVE, origin_task_id=origin_id, payload="again", sleep_ms=200)
    done = front.run(task_id)
    assert done["status"] == "completed", done["error"]
    assert done["input"]["origin_task_id"] == origin_id  # the client's own id, as it sent it
    remote = upstream.task(done["detail"]["upstream_task_id"])
    assert remote["status"] == "completed" and remote["input"]["origin_task_id"] == upstream_origin
    assert done["output"]["origin"]["task_id"] == upstream_origin
    assert done["output"]["origin"]["output"]["echo"] == {"n": 1}
    assert done["output"]["echo"] == "again"
    # Progress and logs of the upstream run are relayed, beside what the worker keeps in the detail.
    assert "upstream: echo: returned the payload after 200 ms" in done["logs"]
    assert done["detail"]["progress"] == 1.0 and done["detail"]["served_by"]["model"].startswith("upstream: ")
    assert front.credits()["used_credits"] == 2 * PRICE


def test_an_origin_that_did_not_run_upstream_fails_before_anything_is_sent(front: Front, upstream: Upstream) -> None:
    origin_id = front.create(ECHO, payload={"n": 1})
    store = front.runtime.store
    claim = store.leases.claim_next_task("elsewhere", [ECHO], 30)  # completed by some other worker, not forwarded
    assert claim is not None and claim.task.task_id == origin_id
    store.leases.complete(origin_id, claim.lease_id, {"echo": {"n": 1}})
    sent_before = upstream.task_count()
    task_id = front.create(DERIVE, origin_task_id=origin_id)
    failed = front.run(task_id)
    assert failed["status"] == "failed"
    assert failed["error"]["code"] == 10001
    assert failed["error"]["message"].startswith(f"origin {origin_id} did not run upstream")
    assert upstream.task_count() == sent_before
    assert front.credits()["used_credits"] == PRICE and front.credits()["frozen_credits"] == 0


def test_the_upstreams_refusal_of_a_stale_origin_is_relayed(front: Front, upstream: Upstream) -> None:
    origin_id, upstream_origin = forwarded_origin(front)
    upstream.clock.advance(4 * 3600)  # here the origin is fresh; upstream it is four hours old
    failed = front.run(front.create(DERIVE, origin_task_id=origin_id))
    assert failed["status"] == "failed"
    assert failed["error"]["message"].startswith("the upstream provider refused to create the task: ")
    assert failed["error"]["raw_message"].startswith(
        f"input.origin_task_id: task {upstream_origin} was created 4.0 hours ago"
    )
    assert front.credits()["used_credits"] == PRICE and front.credits()["frozen_credits"] == 0


def test_an_upstream_failure_of_a_derived_task_is_relayed(front: Front) -> None:
    # The origin's output names something that is not a file anywhere: reading it fails the task upstream.
    origin_id = front.create(ECHO, payload={"image_url": "no-such-file"})
    assert front.run(origin_id)["status"] == "completed"
    failed = front.run(front.create(DERIVE, origin_task_id=origin_id, read_files=True))
    assert failed["status"] == "failed"
    assert failed["error"]["code"] == 10001
    assert failed["error"]["message"].startswith("the upstream provider failed the task: ")
    assert "origin.output.echo.image_url" in failed["error"]["message"]
    assert front.credits()["used_credits"] == PRICE and front.credits()["frozen_credits"] == 0


def derive_entry() -> CatalogEntry:
    entry = build_catalog().get(*DERIVE)
    assert entry is not None
    return entry


def test_cancelling_here_cancels_the_pending_derived_task_upstream(upstream: Upstream) -> None:
    echo = {"model": ECHO[0], "task_type": ECHO[1], "input": {}}
    upstream_origin = upstream.call("POST", "/api/v1/task", json=echo)["task_id"]
    deadline = time.monotonic() + 10
    while upstream.task(upstream_origin)["status"] != "completed" and time.monotonic() < deadline:
        time.sleep(0.02)
    upstream.upscaler.gate.clear()  # the upstream's only worker gets stuck on a task…
    image = base64.b64encode(png_bytes(4, 4)).decode()
    body = {"model": "Qubico/image-toolkit", "task_type": "upscale", "input": {"image": image}}
    blocker = upstream.call("POST", "/api/v1/task", json=body)["task_id"]
    while upstream.task(blocker)["status"] != "processing" and time.monotonic() < deadline:
        time.sleep(0.02)
    # …so the forwarded derived task stays pending there.
    origin = OriginTask(
        task_id="local-origin",
        model=ECHO[0],
        task_type=ECHO[1],
        input={},
        output={"echo": {}},
        detail={"upstream_task_id": upstream_origin},
        created_at=datetime.now(UTC),
    )
    ctx = MemoryRunContext(
        task_id="local-task", origin=origin, cancel_when=lambda c: any("forwarded" in line for line in c.logs)
    )
    entry = derive_entry()
    backend = make_backend(upstream)
    with pytest.raises(BackendError, match="cancelled"):
        backend.run(entry, entry.input_model.model_validate({"origin_task_id": "local-origin"}), ctx)
    upstream_id = ctx.remembered["upstream_task_id"]
    assert ctx.detail == {"upstream_task_id": upstream_id}
    assert f"cancelled upstream task {upstream_id}" in ctx.logs
    cancelled = upstream.task(upstream_id)
    assert cancelled["status"] == "cancelled" and cancelled["input"]["origin_task_id"] == upstream_origin
    upstream.upscaler.gate.set()
    backend.unload()


def test_every_file_of_piapis_output_shapes_is_copied_once(upstream: Upstream) -> None:
    """Kling's `resource*`, Luma's `*.url`, Suno's `clips.<id>.*_url`, Midjourney's `*_urls`: all copied here,
    each distinct file once however many keys name it; other values are left as they are."""
    a = upstream.upload(png_bytes(3, 3), "a.png")
    b = upstream.upload(png_bytes(5, 5), "b.png")
    payload = {
        "works": [{"video": {"resource": a, "resource_without_watermark": b}, "cover": {"resource": a}}],
        "video": {"url": a},
        "video_raw": {"url": b},
        "thumbnail": {"url": a},
        "last_frame": {"url": a},
        "clips": {"c-1": {"audio_url": b, "image_url": a, "title": "kept"}},
        "image_url": a,
        "image_urls": [a, b],
        "temporary_image_urls": [b],
        "discord_image_url": a,
        "intermediate_image_urls": [a],
        "prompt": a,  # a URL under a key that names no file stays as it is
    }
    entry = build_catalog().get(*ECHO)
    assert entry is not None
    backend = make_backend(upstream)
    ctx = MemoryRunContext(task_id="local-task")
    output = backend.run(entry, entry.input_model.model_validate({"payload": payload}), ctx)
    backend.unload()
    assert list(ctx.outputs) == ["memory://1.png", "memory://2.png"]
    assert ctx.output("memory://1.png") == png_bytes(3, 3) and ctx.output("memory://2.png") == png_bytes(5, 5)
    local = {a: "memory://1.png", b: "memory://2.png"}
    expected = {
        "works": [
            {"video": {"resource": local[a], "resource_without_watermark": local[b]}, "cover": {"resource": local[a]}}
        ],
        "video": {"url": local[a]},
        "video_raw": {"url": local[b]},
        "thumbnail": {"url": local[a]},
        "last_frame": {"url": local[a]},
        "clips": {"c-1": {"audio_url": local[b], "image_url": local[a], "title": "kept"}},
        "image_url": local[a],
        "image_urls": [local[a], local[b]],
        "temporary_image_urls": [local[b]],
        "discord_image_url": local[a],
        "intermediate_image_urls": [local[a]],
        "prompt": a,
    }
    assert output["echo"] == expected
