"""A server for the legacy-endpoint tests: the real image and video face swap backends where MediaPipe is
installed, and an
in-process double serving the Midjourney, Kling and Luma entries (nothing here runs a GPU model). The double
saves real files and answers each entry's unified output shape; a prompt containing "fail" makes it fail, and
its gate holds a task in processing."""

from __future__ import annotations

import io
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient
from PIL import Image
from tests.support import AlwaysFails

from genmill.app import Runtime, create_app
from genmill.backends.base import Availability, Backend, RunContext
from genmill.domain.catalog import CatalogEntry, TaskInput
from genmill.errors import BackendError
from genmill.models.toolkits.faces import FaceSwapBackend
from genmill.models.toolkits.video_face_swap import VideoFaceSwapBackend
from genmill.settings import Settings

MP4_STUB = b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom"
"""An MP4 header: the double stores it as its video (no decoder reads it here)."""


def png(color: tuple[int, int, int], size: tuple[int, int] = (8, 8)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, format="PNG")
    return buffer.getvalue()


class ServiceDouble(Backend):
    """Serves PiAPI's resold services' entries the legacy endpoints map onto, in their unified output shapes."""

    name = "test-legacy-services"
    entries = (
        ("midjourney", "imagine"),
        ("midjourney", "upscale"),
        ("midjourney", "describe"),
        ("midjourney", "seed"),
        ("kling", "video_generation"),
        ("kling", "extend_video"),
        ("luma", "video_generation"),
        ("luma", "extend_video"),
    )

    def __init__(self) -> None:
        self.gate = threading.Event()
        self.gate.set()

    def availability(self) -> Availability:
        return Availability(True)

    def load(self) -> None:
        pass

    def run(self, entry: CatalogEntry, inputs: TaskInput, ctx: RunContext) -> dict[str, Any]:
        ctx.progress(0.4, "drawing")
        self.gate.wait(30)
        if "fail" in str(getattr(inputs, "prompt", "")):
            raise BackendError("the service refused the prompt", raw_message="moderation: flagged")
        if entry.model == "midjourney":
            return self.midjourney(entry.task_type, ctx)
        video = ctx.save_output(MP4_STUB, ext="mp4", content_type="video/mp4")
        cover = ctx.save_output(png((10, 20, 30)), ext="png", content_type="image/png")
        if entry.model == "kling":
            work = {
                "status": 99,
                "type": "m2v_txt2video",
                "cover": {"resource": cover, "resource_without_watermark": "", "height": 8, "width": 8, "duration": 0},
                "video": {
                    "resource": video,
                    "resource_without_watermark": video,
                    "height": 8,
                    "width": 8,
                    "duration": 5000,
                },
            }
            return {"type": "m2v_txt2video", "status": 99, "works": [work]}
        asset = {"width": 8, "height": 8}
        return {
            "prompt": str(getattr(inputs, "prompt", "")),
            "internal_state": "completed",
            "video": {"url": video, **asset},
            "video_raw": {"url": video, **asset},
            "thumbnail": {"url": cover, **asset},
            "last_frame": {"url": cover, **asset},
        }

    def midjourney(self, task_type: str, ctx: RunContext) -> dict[str, Any]:
        if task_type == "describe":
            return {"description": "1️⃣ a red fox in snow --ar 1:1"}
        if task_type == "seed":
            return {"seed": 1234567}
        if task_type == "upscale":
            return {"image_url": ctx.save_output(png((200, 0, 0)), ext="png", content_type="image/png"), "actions": []}
        singles = [ctx.save_output(png((60 * i, 0, 0)), ext="png", content_type="image/png") for i in range(4)]
        grid = ctx.save_output(png((9, 9, 9), (16, 16)), ext="png", content_type="image/png")
        actions = ["reroll", "upscale1", "upscale2", "upscale3", "upscale4", "variation1"]
        return {"image_url": grid, "image_urls": singles, "temporary_image_urls": singles, "actions": actions}


class GatedFaceSwap(FaceSwapBackend):
    """The real image face swap, held at the double's gate after reporting that it started, so that a test can
    read a face swap in processing."""

    def __init__(self, gate: threading.Event) -> None:
        super().__init__()
        self.gate = gate

    def run(self, entry: CatalogEntry, inputs: TaskInput, ctx: RunContext) -> dict[str, Any]:
        ctx.progress(0.1, "finding faces")
        self.gate.wait(30)
        return super().run(entry, inputs, ctx)


@dataclass
class Legacy:
    http: TestClient
    runtime: Runtime
    double: ServiceDouble
    face_swap: bool
    key: str
    other_key: str
    poor_key: str

    def headers(self, key: str | None = None) -> dict[str, str]:
        return {"X-API-KEY": key or self.key}

    def unified(self, task_id: str, key: str | None = None) -> dict[str, Any]:
        answer = self.http.get(f"/api/v1/task/{task_id}", headers=self.headers(key))
        assert answer.status_code == 200, answer.text
        data: dict[str, Any] = answer.json()["data"]
        return data

    def credits(self, key: str | None = None) -> dict[str, int]:
        info = self.http.get("/account/info", headers=self.headers(key)).json()["data"]
        return dict(info["credit_pack_info"])

    def refusal(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        """POST a body that must be refused: the 400 answer's JSON, once it is seen that no credit moved."""
        before = self.credits()
        answer = self.http.post(path, json=body, headers=self.headers())
        assert answer.status_code == 400, (path, body.keys(), answer.text)
        assert self.credits() == before
        refused: dict[str, Any] = answer.json()
        return refused

    def run_worker(self) -> None:
        assert self.runtime.workers[0].run_once()

    @staticmethod
    def reported_progress(task: dict[str, Any]) -> bool:
        return task["status"] == "processing" and "progress" in (task["detail"] or {})

    @contextmanager
    def processing(self, task_id: str) -> Iterator[None]:
        """Hold the task in processing (the double waits at its gate, its progress reported by a heartbeat) for
        the body of the `with`."""
        self.double.gate.clear()
        worker = threading.Thread(target=self.runtime.workers[0].run_once)
        worker.start()
        try:
            deadline = time.monotonic() + 10
            while not self.reported_progress(self.unified(task_id)):
                assert time.monotonic() < deadline, "the task never started"
                time.sleep(0.02)
            yield
        finally:
            self.double.gate.set()
            worker.join(30)


def legacy_server(tmp_path: Path) -> Iterator[Legacy]:
    settings = Settings(
        data_dir=tmp_path, public_url="http://testserver", workers=1, allow_private_urls=True, heartbeat_seconds=0.1
    )
    double = ServiceDouble()
    face_swappers: list[Backend] = [GatedFaceSwap(double.gate), VideoFaceSwapBackend()]
    face_swap = all(backend.availability().ok for backend in face_swappers)
    backends: list[Backend] = [double, AlwaysFails(), *(face_swappers if face_swap else [])]
    runtime = Runtime(settings, backends=backends)
    accounts = runtime.store.accounts
    one = accounts.create_account("one", credits=10**9, max_concurrency=4)
    key, _ = accounts.create_key(one.account_id)
    two = accounts.create_account("two", credits=10**9)
    other_key, _ = accounts.create_key(two.account_id)
    poor = accounts.create_account("poor", credits=0)
    poor_key, _ = accounts.create_key(poor.account_id)
    with TestClient(create_app(settings, runtime=runtime, run_workers=False)) as client:
        yield Legacy(client, runtime, double, face_swap, key, other_key, poor_key)
    double.gate.set()
    runtime.store.close()
