"""genmill's additions to the PiAPI contract: Idempotency-Key, Prefer: wait, and the live event stream."""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from tests.support import PillowUpscale, png_bytes

from genmill.app import Runtime, create_app
from genmill.settings import Settings


class Client:
    def __init__(self, client: TestClient, runtime: Runtime, key: str, upscaler: PillowUpscale) -> None:
        self.http = client
        self.runtime = runtime
        self.key = key
        self.upscaler = upscaler

    def headers(self, **extra: str) -> dict[str, str]:
        return {"X-API-Key": self.key, **extra}

    def credits(self) -> dict[str, int]:
        return dict(self.http.get("/account/info", headers=self.headers()).json()["data"]["credit_pack_info"])


def body(scale: int = 2) -> dict[str, Any]:
    image = base64.b64encode(png_bytes(6, 4)).decode()
    return {"model": "Qubico/image-toolkit", "task_type": "upscale", "input": {"image": image, "scale": scale}}


@pytest.fixture
def api(tmp_path: Path) -> Iterator[Client]:
    """A server whose in-process worker runs (the upscaler's gate lets a test hold a task in processing)."""
    settings = Settings(data_dir=tmp_path, public_url="http://testserver", workers=1, heartbeat_seconds=0.2)
    upscaler = PillowUpscale()
    runtime = Runtime(settings, backends=[upscaler])
    account = runtime.store.accounts.create_account("a", credits=10**9)
    key, _ = runtime.store.accounts.create_key(account.account_id)
    with TestClient(create_app(settings, runtime=runtime)) as client:
        yield Client(client, runtime, key, upscaler)
        upscaler.gate.set()
    runtime.store.close()


def test_idempotent_create_returns_the_same_task_once(api: Client) -> None:
    api.upscaler.gate.clear()
    before = api.credits()
    first = api.http.post("/api/v1/task", headers=api.headers(**{"Idempotency-Key": "order-1"}), json=body())
    again = api.http.post("/api/v1/task", headers=api.headers(**{"Idempotency-Key": "order-1"}), json=body())
    assert first.status_code == again.status_code == 200
    assert first.json()["data"]["task_id"] == again.json()["data"]["task_id"]
    assert again.headers["Idempotent-Replayed"] == "true" and "Idempotent-Replayed" not in first.headers
    price = first.json()["data"]["meta"]["usage"]["frozen"]
    assert api.credits()["available_credits"] == before["available_credits"] - price  # charged once
    clash = api.http.post("/api/v1/task", headers=api.headers(**{"Idempotency-Key": "order-1"}), json=body(scale=3))
    assert clash.status_code == 409 and "Idempotency-Key" in clash.json()["message"]
    other = api.http.post("/api/v1/task", headers=api.headers(**{"Idempotency-Key": "order-2"}), json=body())
    assert other.json()["data"]["task_id"] != first.json()["data"]["task_id"]
    too_long = api.http.post("/api/v1/task", headers=api.headers(**{"Idempotency-Key": "k" * 300}), json=body())
    assert too_long.status_code == 400


def test_prefer_wait_holds_the_answer_until_the_task_finishes(api: Client) -> None:
    r = api.http.post("/api/v1/task", headers=api.headers(Prefer="wait=20"), json=body())
    assert r.status_code == 200 and r.headers["Preference-Applied"] == "wait=20"
    task = r.json()["data"]
    assert task["status"] == "completed" and task["output"]["image_url"]


def test_prefer_wait_gives_up_after_n_seconds(api: Client) -> None:
    api.upscaler.gate.clear()
    created = api.http.post("/api/v1/task", headers=api.headers(), json=body()).json()["data"]
    r = api.http.get(f"/api/v1/task/{created['task_id']}", headers=api.headers(Prefer="wait=1"))
    assert r.json()["data"]["status"] in ("pending", "processing")
    api.upscaler.gate.set()
    r = api.http.get(f"/api/v1/task/{created['task_id']}", headers=api.headers(Prefer="respond-async, wait=30"))
    assert r.json()["data"]["status"] == "completed"
    capped = api.http.get(f"/api/v1/task/{created['task_id']}", headers=api.headers(Prefer="wait=999"))
    assert capped.headers["Preference-Applied"] == "wait=60"


def parse_sse(text: str) -> list[dict[str, Any]]:
    events = []
    for block in text.strip().split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.splitlines() if not line.startswith(":"))
        if fields:
            events.append({"id": int(fields["id"]), "event": fields["event"], "data": json.loads(fields["data"])})
    return events


def test_event_stream_follows_the_task_and_resumes(api: Client) -> None:
    api.upscaler.gate.clear()
    task_id = api.http.post("/api/v1/task", headers=api.headers(), json=body()).json()["data"]["task_id"]
    releaser = threading.Timer(0.5, api.upscaler.gate.set)
    releaser.start()
    with api.http.stream("GET", f"/api/v1/task/{task_id}/events", headers=api.headers()) as stream:
        assert stream.headers["content-type"].startswith("text/event-stream")
        text = "".join(stream.iter_text())
    releaser.join()
    events = parse_sse(text)
    statuses = [e["data"]["status"] for e in events if e["event"] == "status"]
    assert statuses[0] == "pending" and "processing" in statuses and statuses[-1] == "completed"
    assert [e["id"] for e in events] == sorted(e["id"] for e in events)
    assert events[-1]["data"]["output"]["image_url"]
    resumed = api.http.get(
        f"/api/v1/task/{task_id}/events", headers=api.headers(**{"Last-Event-ID": str(events[0]["id"])})
    )
    assert [e["id"] for e in parse_sse(resumed.text)] == [e["id"] for e in events[1:]]


def test_event_stream_of_another_account_is_404(api: Client) -> None:
    task_id = api.http.post("/api/v1/task", headers=api.headers(), json=body()).json()["data"]["task_id"]
    other = api.runtime.store.accounts.create_account("b", credits=1)
    key, _ = api.runtime.store.accounts.create_key(other.account_id)
    assert api.http.get(f"/api/v1/task/{task_id}/events", headers={"X-API-Key": key}).status_code == 404
    bad = api.http.get(f"/api/v1/task/{task_id}/events", headers=api.headers(**{"Last-Event-ID": "x"}))
    assert bad.status_code == 400
