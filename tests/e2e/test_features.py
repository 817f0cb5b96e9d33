"""genmill's additions, end to end against `genmill serve`: Idempotency-Key, Prefer: wait, Server-Sent Events."""

from __future__ import annotations

import base64
import io
import json
import urllib.request
from collections.abc import Iterator

import pytest
from PIL import Image
from tests.e2e.harness import Server, call_full


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = Server(tmp_path_factory.mktemp("genmill-features"), GENMILL_HEARTBEAT_SECONDS="0.5")
    srv.start()
    yield srv
    srv.stop()


def upscale(size: int = 24) -> dict[str, object]:
    buf = io.BytesIO()
    Image.effect_noise((size, size), 40).convert("RGB").save(buf, format="PNG")
    image = base64.b64encode(buf.getvalue()).decode()
    return {"model": "Qubico/image-toolkit", "task_type": "upscale", "input": {"image": image, "scale": 2}}


def test_idempotency_and_wait(server: Server) -> None:
    key = server.new_key("features")
    body = upscale()
    code, first, headers = call_full(
        "POST", server.url + "/api/v1/task", key, body, {"Idempotency-Key": "e2e-1", "Prefer": "wait=60"}
    )
    assert code == 200 and headers["preference-applied"] == "wait=60"
    assert first["data"]["status"] == "completed", first["data"]
    code, again, headers = call_full("POST", server.url + "/api/v1/task", key, body, {"Idempotency-Key": "e2e-1"})
    assert again["data"]["task_id"] == first["data"]["task_id"] and headers["idempotent-replayed"] == "true"
    code, _, _ = call_full("POST", server.url + "/api/v1/task", key, upscale(16), {"Idempotency-Key": "e2e-1"})
    assert code == 409
    info = call_full("GET", server.url + "/account/info", key)[1]["data"]["credit_pack_info"]
    assert info["used_credits"] == first["data"]["meta"]["usage"]["consume"]  # billed once


def test_event_stream(server: Server) -> None:
    key = server.new_key("stream")
    _, created, _ = call_full("POST", server.url + "/api/v1/task", key, upscale(64))
    task_id = created["data"]["task_id"]
    request = urllib.request.Request(f"{server.url}/api/v1/task/{task_id}/events", headers={"X-API-Key": key})
    with urllib.request.urlopen(request, timeout=120) as stream:
        assert stream.headers["content-type"].startswith("text/event-stream")
        text = stream.read().decode()
    events = [
        dict(line.split(": ", 1) for line in block.splitlines() if not line.startswith(":"))
        for block in text.strip().split("\n\n")
    ]
    statuses = [json.loads(e["data"])["status"] for e in events if e.get("event") == "status"]
    assert statuses[0] == "pending" and statuses[-1] == "completed", statuses
    assert json.loads(events[-1]["data"])["output"]["image_url"]
