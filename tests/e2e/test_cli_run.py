"""End to end, as the README tells a new user: `genmill serve` as a real process, then the real
`genmill run Qubico/image-toolkit upscale image=@photo.png -o out/` in a shell, finding the image in out/."""

from __future__ import annotations

import io
import os
import re
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image
from tests.e2e.harness import GENMILL, Server
from tests.support import png_bytes

import genmill

SRC = Path(genmill.__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = Server(tmp_path_factory.mktemp("genmill-cli-run"))
    srv.cli("db", "upgrade")
    srv.start("--workers", "1")
    yield srv
    assert srv.stop() in (0, -signal.SIGTERM), srv.log_text()[-3000:]


def run_genmill(server: Server, key: str, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    # The user's shell runs in their own folder: the package path must not depend on the working directory.
    path = os.pathsep.join(filter(None, [str(SRC), os.environ.get("PYTHONPATH", "")]))
    env = {**os.environ, "PYTHONPATH": path, "GENMILL_URL": server.url, "GENMILL_API_KEY": key}
    return subprocess.run([*GENMILL, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


BASE64_RUN = re.compile(r"[A-Za-z0-9+/]{200,}")


def test_genmill_run_saves_the_upscaled_photo_into_out(server: Server, tmp_path: Path) -> None:
    key = server.new_key("cli")
    (tmp_path / "photo.png").write_bytes(png_bytes(24, 16))

    done = run_genmill(
        server, key, tmp_path, "run", "Qubico/image-toolkit", "upscale", "image=@photo.png", "-o", "out/"
    )

    assert done.returncode == 0, done.stderr
    saved = sorted((tmp_path / "out").iterdir())
    assert len(saved) == 1 and saved[0].suffix == ".png"
    assert Image.open(io.BytesIO(saved[0].read_bytes())).size == (48, 32)  # the default scale is 2
    assert done.stdout.split() == [f"out/{saved[0].name}"]  # stdout: where the file is, nothing else
    assert re.search(r"task \S+ completed", done.stderr) and "saved 1 file(s) into out" in done.stderr
    assert not BASE64_RUN.search(done.stdout + done.stderr)

    task_id = re.search(r"task (\S+) created", done.stderr)
    assert task_id is not None
    shown = run_genmill(server, key, tmp_path, "task", "get", task_id.group(1))
    assert shown.returncode == 0 and "completed" in shown.stdout and "output: http" in shown.stdout
    listed = run_genmill(server, key, tmp_path, "task", "list")
    assert listed.returncode == 0 and listed.stdout.startswith(task_id.group(1))


def test_no_wait_then_watch_and_the_exit_codes_of_refusals(server: Server, tmp_path: Path) -> None:
    key = server.new_key("cli-watch")
    (tmp_path / "photo.png").write_bytes(png_bytes(16, 16))

    created = run_genmill(
        server, key, tmp_path, "run", "Qubico/image-toolkit", "upscale", "image=@photo.png", "scale:=3", "--no-wait"
    )
    assert created.returncode == 0, created.stderr
    watched = run_genmill(server, key, tmp_path, "task", "watch", created.stdout.strip(), "-o", "watched")
    assert watched.returncode == 0, watched.stderr
    (image,) = (tmp_path / "watched").iterdir()
    assert Image.open(io.BytesIO(image.read_bytes())).size == (48, 48)

    refused = run_genmill(
        server, key, tmp_path, "run", "Qubico/image-toolkit", "upscale", "image=@photo.png", "scale=11"
    )
    assert refused.returncode == 3 and "input.scale" in refused.stderr
    missing = run_genmill(server, key, tmp_path, "run", "Qubico/image-toolkit", "upscale", "image=@nowhere.png")
    assert missing.returncode == 2 and "no such file" in missing.stderr
    no_key = run_genmill(server, "", tmp_path, "task", "list")
    assert no_key.returncode == 2 and "GENMILL_API_KEY" in no_key.stderr
