"""Billing by what was used, through the API with a real backend: a per-frame task freezes its cap at create and
consumes only the frames its video had, releasing the rest in the same transaction."""

from __future__ import annotations

import base64
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from genmill.app import Runtime, create_app
from genmill.backends.video_io import ffmpeg_exe
from genmill.models.toolkits.video_catalog import UPSCALE_MAX_FRAMES, upscale_price_for_frames
from genmill.models.toolkits.video_upscale import VideoUpscaleBackend
from genmill.settings import Settings
from genmill.store.tables import ledger

pytestmark = pytest.mark.backends

CREDITS = 10**9


def pattern_mp4(tmp_path: Path, frames: int) -> str:
    """A real H.264 MP4 of `frames` frames (ffmpeg's test pattern, 64x48 at 12 fps), as a data URI."""
    out = tmp_path / f"testsrc-{frames}.mp4"
    command = [ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi", "-i"]
    command += ["testsrc=size=64x48:rate=12", "-frames:v", str(frames), "-c:v", "libx264", "-preset", "ultrafast"]
    subprocess.run([*command, "-pix_fmt", "yuv420p", str(out)], check=True, timeout=60)
    return "data:video/mp4;base64," + base64.b64encode(out.read_bytes()).decode()


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[TestClient, Runtime, dict[str, str], str]]:
    backend = VideoUpscaleBackend("lanczos")
    availability = backend.availability()
    if not availability.ok:
        pytest.skip(f"{backend.name} unavailable: {availability.reason}")
    settings = Settings(data_dir=tmp_path, public_url="http://testserver", workers=1)
    runtime = Runtime(settings, backends=[backend])
    app = create_app(settings, runtime=runtime, run_workers=False)
    account = runtime.store.accounts.create_account("frames", credits=CREDITS)
    key, _ = runtime.store.accounts.create_key(account.account_id)
    with TestClient(app) as client:
        yield client, runtime, {"X-API-Key": key}, account.account_id
    runtime.store.close()


def test_a_12_frame_video_upscale_consumes_12_frames_not_the_240_frame_cap(
    served: tuple[TestClient, Runtime, dict[str, str], str], tmp_path: Path
) -> None:
    client, runtime, headers, account_id = served
    body = {"model": "Qubico/video-toolkit", "task_type": "upscale", "input": {"video": pattern_mp4(tmp_path, 12)}}
    created = client.post("/api/v1/task", headers=headers, json=body).json()["data"]
    cap = upscale_price_for_frames(UPSCALE_MAX_FRAMES)
    assert cap == 720_000 and created["meta"]["usage"] == {"type": "quota", "frozen": cap, "consume": 0}

    assert runtime.workers[0].run_once()
    done = client.get(f"/api/v1/task/{created['task_id']}", headers=headers).json()["data"]
    used = upscale_price_for_frames(12)
    assert done["status"] == "completed", done["error"]
    assert done["output"]["frames"] == 12 and done["output"]["video_url"]
    assert done["meta"]["usage"] == {"type": "quota", "frozen": 0, "consume": used} and used == 36_000

    info = client.get("/account/info", headers=headers).json()["data"]["credit_pack_info"]
    assert info == {
        "available_credits": CREDITS - used,
        "frozen_credits": 0,
        "used_credits": used,
        "total_credits": CREDITS,
    }
    accounts = runtime.store.accounts
    assert accounts.ledger_balances(account_id) == accounts.get(account_id).balances
    with runtime.store.engine.connect() as conn:
        movements = conn.execute(
            sa.select(ledger.c.kind, ledger.c.amount)
            .where(ledger.c.task_id == created["task_id"])
            .order_by(ledger.c.entry_id)
        ).all()
    assert [tuple(m) for m in movements] == [("freeze", cap), ("consume", used), ("release", cap - used)]
