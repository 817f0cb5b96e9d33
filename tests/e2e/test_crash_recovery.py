"""A server killed with SIGKILL mid-task loses nothing: on restart the task is requeued and completes once.

The first server claims a slow Real-ESRGAN upscale and is killed while processing it. A second server on the same
data folder finds the expired lease, requeues the task (attempt 2), runs it, and bills it exactly once.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image
from tests.e2e.harness import Server, call, free_port
from tests.receiver import run_receiver


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    srv = Server(tmp_path, GENMILL_LEASE_SECONDS="2", GENMILL_HEARTBEAT_SECONDS="0.5", GENMILL_REAPER_SECONDS="0.5")
    yield srv
    if srv.proc is not None and srv.proc.poll() is None:
        srv.stop()


def noisy_png(size: int) -> str:
    image = Image.effect_noise((size, size), 60).convert("RGB")
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode()


def test_killed_server_task_is_requeued_and_billed_once(server: Server) -> None:
    key = server.new_key("crash", credits=10_000_000)
    server.start()
    if not any(
        m["available"] and m["task_type"] == "upscale"
        for m in call("GET", server.url + "/api/v1/models")[1]["data"]["models"]
    ):
        pytest.fail("Real-ESRGAN upscale is not available here; see `genmill models`")
    body = {"model": "Qubico/image-toolkit", "task_type": "upscale", "input": {"image": noisy_png(320), "scale": 4}}
    code, created = call("POST", server.url + "/api/v1/task", key, body)
    assert code == 200
    task_id = created["data"]["task_id"]
    price = created["data"]["meta"]["usage"]["frozen"]
    server.wait_for(key, task_id, ("processing",))
    server.kill()

    server.start(port=server.port)  # where it was: the task's input names its stored upload by this server's URL
    done = server.wait_for(key, task_id)
    assert done["status"] == "completed", (done["error"], done["logs"])
    assert any("lease expired on attempt 1" in line for line in done["logs"]), done["logs"]
    assert any("attempt 2 of" in line for line in done["logs"]), done["logs"]
    assert done["meta"]["usage"] == {"type": "quota", "frozen": 0, "consume": price}
    code, image_bytes = call("GET", done["output"]["image_url"])
    assert code == 200 and Image.open(io.BytesIO(image_bytes)).size == (1280, 1280)
    info = call("GET", server.url + "/account/info", key)[1]["data"]["credit_pack_info"]
    assert info == {
        "available_credits": 10_000_000 - price,
        "frozen_credits": 0,
        "used_credits": price,
        "total_credits": 10_000_000,
    }


def test_kill_between_completion_and_delivery_still_delivers(server: Server, tmp_path: Path) -> None:
    """The receiver is down while the task completes; the server is killed; after a restart every event arrives."""
    server.env["GENMILL_WEBHOOK_RETRY_SCALE"] = "0.001"  # retries stay under ~20 s apart
    key = server.new_key("hooks", credits=10_000_000)
    port = free_port()  # the receiver is not listening yet
    server.start()
    body = {
        "model": "Qubico/image-toolkit",
        "task_type": "upscale",
        "input": {"image": noisy_png(16), "scale": 2},
        "config": {"webhook_config": {"endpoint": f"http://127.0.0.1:{port}/hook", "secret": "k"}},
    }
    code, created = call("POST", server.url + "/api/v1/task", key, body)
    assert code == 200
    task_id = created["data"]["task_id"]
    assert server.wait_for(key, task_id)["status"] == "completed"
    server.kill()
    with run_receiver(port) as rx:
        server.start()
        got = rx.wait_until(lambda seen: any(r.json["data"]["status"] == "completed" for r in seen), timeout=120)
    statuses = [r.json["data"]["status"] for r in got]
    # Progress events while processing may add more "processing" deliveries; the order is what matters.
    assert statuses[0] == "pending" and statuses[-1] == "completed", statuses
    assert set(statuses[1:-1]) == {"processing"}, statuses
    assert all(r.json["data"]["task_id"] == task_id for r in got)
