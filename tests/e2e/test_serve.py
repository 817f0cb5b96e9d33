"""End to end: `genmill keys create` and `genmill serve` as real processes, driven over real HTTP.

Runs the real CPU backends (Real-ESRGAN, MediaPipe, Piper) and the black-box contract check against the
started server.
"""

from __future__ import annotations

import base64
import io
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import wave
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image, ImageDraw

ROOT = Path(__file__).resolve().parents[2]
CONFORMANCE = Path(os.environ.get("GENMILL_CONFORMANCE", ROOT.parent / "shared" / "conformance" / "check.py"))
GENMILL = [sys.executable, "-m", "genmill.cli"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def call(method: str, url: str, key: str | None = None, body: Any = None) -> tuple[int, Any]:
    headers = {"Content-Type": "application/json"}
    if key:
        headers["X-API-Key"] = key
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            raw, code, ctype = r.read(), r.status, r.headers.get("content-type", "")
    except urllib.error.HTTPError as e:
        raw, code, ctype = e.read(), e.code, e.headers.get("content-type", "")
    return code, json.loads(raw) if "json" in ctype else raw


class Server:
    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {
            **os.environ,
            "GENMILL_ALLOW_PRIVATE_URLS": "1",
            "HF_HUB_OFFLINE": "1",
            "GENMILL_DATA_DIR": str(data_dir),
        }
        self.proc: subprocess.Popen[bytes] | None = None
        self.log: io.BufferedWriter
        self.startup_seconds = 0.0

    def cli(self, *args: str) -> str:
        out = subprocess.run([*GENMILL, *args], env=self.env, capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr
        return out.stdout

    def new_key(self, name: str) -> str:
        return self.cli("keys", "create", "--name", name, "--credits", "100000000").strip().splitlines()[-1]

    def start(self) -> None:
        self.log = open(self.data_dir / "server.log", "wb")  # noqa: SIM115 - closed in stop()
        started = time.perf_counter()
        self.proc = subprocess.Popen(
            [*GENMILL, "serve", "--port", str(self.port), "--workers", "2"],
            env=self.env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.time() + 120
        while time.time() < deadline:
            assert self.proc.poll() is None, (self.data_dir / "server.log").read_text()
            try:
                if call("GET", self.url + "/healthz")[0] == 200:
                    self.startup_seconds = time.perf_counter() - started
                    return
            except OSError:
                pass
            time.sleep(0.1)
        raise AssertionError("server did not start: " + (self.data_dir / "server.log").read_text())

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(30)
        self.log.close()

    def log_text(self) -> str:
        return (self.data_dir / "server.log").read_text(errors="replace")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = Server(tmp_path_factory.mktemp("genmill-e2e"))
    srv.cli("db", "upgrade")
    srv.start()
    print(f"\ngenmill serve answered /healthz after {srv.startup_seconds:.2f}s")
    yield srv
    srv.stop()
    # uvicorn finishes a graceful shutdown, then re-raises SIGTERM as its exit status.
    assert srv.proc is not None and srv.proc.returncode in (0, -signal.SIGTERM), srv.log_text()[-3000:]
    assert "Application shutdown complete" in srv.log_text()


@pytest.fixture(scope="module")
def key(server: Server) -> str:
    return server.new_key("e2e")


def run_task(server: Server, key: str, body: dict[str, Any], timeout: float = 240) -> dict[str, Any]:
    code, created = call("POST", server.url + "/api/v1/task", key, body)
    assert code == 200, created
    task_id = created["data"]["task_id"]
    deadline = time.time() + timeout
    while time.time() < deadline:
        _, got = call("GET", f"{server.url}/api/v1/task/{task_id}", key)
        task: dict[str, Any] = got["data"]
        if task["status"] in ("completed", "failed", "cancelled"):
            assert task["status"] == "completed", (task, server.log_text()[-3000:])
            return task
        time.sleep(0.2)
    raise AssertionError(f"task {task_id} did not finish: {server.log_text()[-3000:]}")


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
    task = run_task(
        server,
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
    task = run_task(
        server,
        key,
        {"model": "Qubico/image-toolkit", "task_type": "background-remove", "input": {"image": photo}},
    )
    image = Image.open(io.BytesIO(download(task["output"]["image_url"])))
    assert image.mode == "RGBA" and image.size == size
    alpha = image.getchannel("A")
    low, high = alpha.getextrema()
    assert low < 32 and high > 224  # the background is cut away, the person is kept
    assert alpha.getpixel((size[0] // 2, size[1] // 2)) > 128


def test_tts_speaks_a_sentence(server: Server, key: str) -> None:
    require(server, "Qubico/tts/zero-shot")
    text = "genmill turns this sentence into speech on a plain CPU."
    task = run_task(server, key, {"model": "Qubico/tts", "task_type": "zero-shot", "input": {"gen_text": text}})
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
