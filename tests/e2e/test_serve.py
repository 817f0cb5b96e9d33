"""End to end: `genmill keys create` and `genmill serve` as real processes, driven over real HTTP.

Runs the real CPU backends (Real-ESRGAN, MediaPipe, Piper) and the black-box contract check against the
started server.
"""

from __future__ import annotations

import base64
import io
import os
import signal
import subprocess
import sys
import wave
from collections.abc import Iterator
from pathlib import Path
from typing import cast

import pytest
from PIL import Image, ImageDraw
from tests.e2e.harness import Server, call

ROOT = Path(__file__).resolve().parents[2]
CONFORMANCE = Path(os.environ.get("GENMILL_CONFORMANCE", ROOT.parent / "shared" / "conformance" / "check.py"))


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = Server(tmp_path_factory.mktemp("genmill-e2e"))
    srv.cli("db", "upgrade")
    srv.start("--workers", "2")
    print(f"\ngenmill serve answered /healthz after {srv.startup_seconds:.2f}s")
    yield srv
    status = srv.stop()
    # uvicorn finishes a graceful shutdown, then re-raises SIGTERM as its exit status.
    assert status in (0, -signal.SIGTERM), srv.log_text()[-3000:]
    assert "Application shutdown complete" in srv.log_text()


@pytest.fixture(scope="module")
def key(server: Server) -> str:
    return server.new_key("e2e")


def models_served(server: Server) -> dict[str, bool]:
    _, body = call("GET", server.url + "/api/v1/models")
    return {f"{m['model']}/{m['task_type']}": m["available"] for m in body["data"]["models"]}


def require(server: Server, entry: str) -> None:
    if not models_served(server).get(entry):
        _, body = call("GET", server.url + "/api/v1/models")
        reasons = [b for b in body["data"]["backends"] if not b["available"]]
        pytest.fail(f"{entry} is not served here: {reasons}")


def photo_data_uri(width: int, height: int) -> str:
    image = Image.new("RGB", (width, height), (70, 120, 180))
    draw = ImageDraw.Draw(image)
    draw.ellipse((width * 0.3, height * 0.1, width * 0.7, height * 0.5), fill=(224, 172, 140))
    draw.rectangle((width * 0.2, height * 0.5, width * 0.8, height), fill=(40, 40, 60))
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def download(url: str) -> bytes:
    code, data = call("GET", url)
    assert code == 200
    assert isinstance(data, bytes)
    return data


def test_upscale_doubles_the_image(server: Server, key: str) -> None:
    require(server, "Qubico/image-toolkit/upscale")
    task = server.run_task(
        key,
        {
            "model": "Qubico/image-toolkit",
            "task_type": "upscale",
            "input": {"image": photo_data_uri(48, 32), "scale": 2},
        },
    )
    image = Image.open(io.BytesIO(download(task["output"]["image_url"])))
    assert image.size == (96, 64)
    assert task["meta"]["usage"]["consume"] > 0


def portrait_data_uri() -> tuple[str, tuple[int, int]]:
    """A real photograph of a person: the portrait matplotlib (a mediapipe dependency) ships as sample data."""
    import matplotlib

    path = Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"
    with Image.open(path) as image:
        size = image.size
    return "data:image/jpeg;base64," + base64.b64encode(path.read_bytes()).decode(), size


def test_background_remove_gives_a_transparent_png(server: Server, key: str) -> None:
    require(server, "Qubico/image-toolkit/background-remove")
    photo, size = portrait_data_uri()
    task = server.run_task(
        key,
        {"model": "Qubico/image-toolkit", "task_type": "background-remove", "input": {"image": photo}},
    )
    image = Image.open(io.BytesIO(download(task["output"]["image_url"])))
    assert image.mode == "RGBA" and image.size == size
    alpha = image.getchannel("A")
    low, high = cast(tuple[int, int], alpha.getextrema())  # one band: its (min, max)
    assert low < 32 and high > 224  # the background is cut away, the person is kept
    centre = alpha.getpixel((size[0] // 2, size[1] // 2))
    assert isinstance(centre, int) and centre > 128


def test_tts_speaks_a_sentence(server: Server, key: str) -> None:
    require(server, "Qubico/tts/zero-shot")
    text = "genmill turns this sentence into speech on a plain CPU."
    task = server.run_task(key, {"model": "Qubico/tts", "task_type": "zero-shot", "input": {"gen_text": text}})
    with wave.open(io.BytesIO(download(task["output"]["audio_url"]))) as wav:
        seconds = wav.getnframes() / wav.getframerate()
    assert 1.5 < seconds < 15, seconds


def test_conformance_check_passes(server: Server, key: str) -> None:
    if not CONFORMANCE.exists():
        if os.environ.get("CI"):
            pytest.fail(f"the contract check is missing at {CONFORMANCE}")
        pytest.skip(f"the contract check is not at {CONFORMANCE} (set GENMILL_CONFORMANCE)")
    key2 = server.new_key("e2e-other")
    out = subprocess.run(
        [
            sys.executable,
            str(CONFORMANCE),
            "--url",
            server.url,
            "--key",
            key,
            "--key2",
            key2,
            "--timeout",
            "180",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    print(out.stdout)
    assert out.returncode == 0, out.stdout + out.stderr
