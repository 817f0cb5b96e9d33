"""Input problems the toolkit backends find in the worker end the task with error code 10001 (an input the
backend cannot use), not 10000 (a backend failure); run through a real Runtime
with the real backends. Inputs here pass the checks at create (a valid header, a URL-shaped reference), so only
the backend can see what is wrong."""

from __future__ import annotations

import base64
import io
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from genmill.app import Runtime
from genmill.backends.base import Backend
from genmill.backends.video_io import ffmpeg_exe
from genmill.domain.states import TaskStatus
from genmill.errors import INPUT_ERROR_CODE
from genmill.models.toolkits.faces import FaceSwapBackend
from genmill.models.toolkits.upscale import RealEsrganUpscaleBackend
from genmill.models.toolkits.video_upscale import VideoUpscaleBackend
from genmill.settings import Settings

pytestmark = pytest.mark.backends


@pytest.fixture
def runtime(tmp_path: Path) -> Iterator[Runtime]:
    backends: list[Backend] = [RealEsrganUpscaleBackend("anime"), FaceSwapBackend(), VideoUpscaleBackend("lanczos")]
    for backend in backends:
        availability = backend.availability()
        if not availability.ok:
            pytest.skip(f"{backend.name} unavailable: {availability.reason}")
    rt = Runtime(Settings(data_dir=tmp_path, public_url="http://testserver", workers=1), backends=backends)
    yield rt
    rt.store.close()


def png_uri(image: Image.Image) -> str:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def truncated_png() -> str:
    """A PNG whose header reads fine (so create accepts it) but whose pixels are cut off."""
    buffer = io.BytesIO()
    Image.effect_noise((64, 64), 60).convert("RGB").save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()[:200]).decode()


def five_frame_mp4(tmp_path: Path) -> str:
    out = tmp_path / "short.mp4"
    cmd = [ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi", "-i", "testsrc=size=32x24:rate=5"]
    subprocess.run([*cmd, "-frames:v", "5", "-c:v", "libx264", "-pix_fmt", "yuv420p", str(out)], check=True)
    return "data:video/mp4;base64," + base64.b64encode(out.read_bytes()).decode()


def run_to_failure(rt: Runtime, model: str, task_type: str, inputs: dict[str, Any]) -> dict[str, Any]:
    account = rt.store.accounts.create_account(f"{task_type}-{model}", credits=10**9)
    task, _ = rt.tasks.create_task(account, model, task_type, inputs, None)
    assert rt.workers[0].run_once()
    done = rt.store.tasks.get(account.account_id, task.task_id)
    assert done.status is TaskStatus.FAILED
    assert done.error is not None
    return done.error


def test_input_problems_end_with_code_10001(runtime: Runtime, tmp_path: Path) -> None:
    no_face = png_uri(Image.new("RGB", (64, 64), (120, 160, 200)))
    cases: list[tuple[str, str, dict[str, Any], str]] = [
        ("Qubico/image-toolkit", "upscale", {"image": truncated_png(), "scale": 2}, "image: not a decodable image"),
        ("Qubico/image-toolkit", "face-swap", {"swap_image": no_face, "target_image": no_face}, "no face was found"),
        ("Qubico/video-toolkit", "upscale", {"video": five_frame_mp4(tmp_path)}, "video: 5 frames, at least 10"),
    ]
    for model, task_type, inputs, message in cases:
        error = run_to_failure(runtime, model, task_type, inputs)
        assert error["code"] == INPUT_ERROR_CODE, (task_type, error)
        assert message in error["message"], (task_type, error)
