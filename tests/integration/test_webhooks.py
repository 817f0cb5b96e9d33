"""Webhooks to real receivers on loopback: order, signatures, retries while the receiver is down, 410, 4xx."""

from __future__ import annotations

import base64
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import standardwebhooks
from fastapi.testclient import TestClient
from tests.e2e.harness import free_port
from tests.receiver import run_receiver
from tests.support import AlwaysFails, PillowUpscale, png_bytes

from genmill.app import Runtime, create_app
from genmill.settings import Settings


class Hooks:
    def __init__(self, runtime: Runtime, client: TestClient, key: str, account_id: str) -> None:
        self.runtime = runtime
        self.client = client
        self.key = key
        self.account_id = account_id

    def create(self, endpoint: str, secret: str = "", task_type: str = "upscale") -> str:
        image = base64.b64encode(png_bytes(6, 4)).decode()
        body = {
            "model": "Qubico/image-toolkit",
            "task_type": task_type,
            "input": {"image": image, **({"scale": 2} if task_type == "upscale" else {})},
            "config": {"webhook_config": {"endpoint": endpoint, "secret": secret}},
        }
        r = self.client.post("/api/v1/task", headers={"X-API-Key": self.key}, json=body)
        assert r.status_code == 200, r.json()
        return str(r.json()["data"]["task_id"])

    def drain(self, timeout: float = 10) -> None:
        """Run the dispatcher until nothing is pending (waiting out the shrunken retry schedule)."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            if not self.runtime.webhooks.run_once() and self.runtime.store.webhooks.next_due_at() is None:
                return
            time.sleep(0.005)
        raise AssertionError("deliveries still pending")

    def deliveries(self, task_id: str) -> list[dict[str, Any]]:
        r = self.client.get(f"/api/v1/task/{task_id}/webhooks", headers={"X-API-Key": self.key})
        assert r.status_code == 200
        return list(r.json()["data"]["deliveries"])


@pytest.fixture
def hooks(tmp_path: Path) -> Iterator[Hooks]:
    settings = Settings(
        data_dir=tmp_path,
        public_url="http://testserver",
        workers=1,
        allow_private_urls=True,
        webhook_retry_scale=0.002,
        webhook_timeout=2,
    )
    runtime = Runtime(settings, backends=[PillowUpscale(), AlwaysFails()])
    account = runtime.store.accounts.create_account("a", credits=10**9)
    key, _ = runtime.store.accounts.create_key(account.account_id)
    with TestClient(create_app(settings, runtime=runtime, run_workers=False)) as client:
        yield Hooks(runtime, client, key, account.account_id)
    runtime.store.close()


def verify(received: Any, secret: str) -> Any:
    """Check the Standard Webhooks signature with the reference library; returns the parsed body."""
    return standardwebhooks.Webhook(secret).verify(received.body, received.headers)


def test_every_status_change_arrives_in_order_signed(hooks: Hooks) -> None:
    with run_receiver() as rx:
        task_id = hooks.create(rx.url, secret="s3cret")
        assert hooks.runtime.workers[0].run_once()
        hooks.drain()
        got = rx.wait_for(3)
    statuses = [r.json["data"]["status"] for r in got]
    assert statuses == ["pending", "processing", "completed"]
    whsec = "whsec_" + base64.b64encode(b"s3cret").decode()
    for received in got:
        body = verify(received, whsec)
        assert body["data"]["task_id"] == task_id and isinstance(body["timestamp"], int)
        assert received.headers["x-webhook-secret"] == "s3cret"
    final = got[-1].json["data"]
    current = hooks.client.get(f"/api/v1/task/{task_id}", headers={"X-API-Key": hooks.key}).json()["data"]
    assert final == current  # the task exactly as GET returns it
    assert len({r.headers["webhook-id"] for r in got}) == 3
    listed = hooks.deliveries(task_id)
    assert [d["state"] for d in listed] == ["delivered"] * 3
    assert all(d["history"][0]["status_code"] == 200 for d in listed)


def test_a_receiver_that_is_down_gets_everything_when_it_returns(hooks: Hooks) -> None:
    port = free_port()  # nothing listens here yet: connections are refused
    url = f"http://127.0.0.1:{port}/hook"
    task_id = hooks.create(url, secret="k")
    assert hooks.runtime.workers[0].run_once()
    for _ in range(3):
        hooks.runtime.webhooks.run_once()
    first = hooks.deliveries(task_id)[0]
    assert first["state"] == "pending" and first["attempts"] >= 1 and first["last_error"]
    assert hooks.deliveries(task_id)[2]["attempts"] == 0  # later events wait behind the first
    with run_receiver(port) as rx:
        hooks.drain()
        got = rx.wait_for(3)
    assert [r.json["data"]["status"] for r in got] == ["pending", "processing", "completed"]
    ids = [r.headers["webhook-id"] for r in got]
    assert ids == [d["delivery_id"] for d in hooks.deliveries(task_id)]


def test_server_errors_and_429_are_retried(hooks: Hooks) -> None:
    with run_receiver() as rx:
        rx.answers = [503, 429, 500]
        task_id = hooks.create(rx.url)
        hooks.drain()
        got = rx.wait_for(4)
    assert len(got) == 4 and all(r.headers["webhook-id"] == got[0].headers["webhook-id"] for r in got)
    first = hooks.deliveries(task_id)[0]
    assert first["state"] == "delivered" and [h["status_code"] for h in first["history"]] == [503, 429, 500, 200]
    secret = hooks.client.get("/account/webhook_secret", headers={"X-API-Key": hooks.key}).json()["data"]
    verify(got[-1], secret["signing_secret"])  # no task secret: signed with the account's secret
    assert "x-webhook-secret" not in got[-1].headers


def test_410_stops_and_4xx_is_recorded_without_retry_then_replayed(hooks: Hooks) -> None:
    with run_receiver() as rx:
        rx.answers = [410]
        gone = hooks.create(rx.url)
        hooks.drain()
        assert hooks.deliveries(gone)[0]["state"] == "gone" and len(rx.requests) == 1
        rx.answers = [400]
        refused = hooks.create(rx.url)
        hooks.drain()
        delivery = hooks.deliveries(refused)[0]
        assert delivery["state"] == "failed" and delivery["attempts"] == 1 and delivery["last_status_code"] == 400
        r = hooks.client.post(
            f"/api/v1/task/{refused}/webhooks/{delivery['delivery_id']}/replay", headers={"X-API-Key": hooks.key}
        )
        assert r.status_code == 200
        hooks.drain()
        replayed = hooks.deliveries(refused)[0]
        assert replayed["state"] == "delivered" and replayed["attempts"] == 1  # a replay starts a fresh schedule
        assert [h["status_code"] for h in replayed["history"]] == [400, 200]  # the history keeps both
        assert rx.requests[-1].headers["webhook-id"] == delivery["delivery_id"]


def test_private_endpoints_are_refused_unless_allowed(hooks: Hooks) -> None:
    hooks.runtime.webhooks.sender.allow_private = False
    with run_receiver() as rx:
        task_id = hooks.create(rx.url)
        hooks.runtime.webhooks.run_once()
        assert rx.requests == []
    delivery = hooks.deliveries(task_id)[0]
    assert delivery["state"] == "failed" and "private or loopback" in delivery["last_error"]  # not retried
    hooks.runtime.webhooks.run_once()  # the task's next event is no longer held back behind it
    assert hooks.deliveries(task_id)[0]["attempts"] == 1


def test_other_accounts_cannot_see_deliveries(hooks: Hooks) -> None:
    other = hooks.runtime.store.accounts.create_account("b", credits=10)
    key, _ = hooks.runtime.store.accounts.create_key(other.account_id)
    with run_receiver() as rx:
        task_id = hooks.create(rx.url)
    r = hooks.client.get(f"/api/v1/task/{task_id}/webhooks", headers={"X-API-Key": key})
    assert r.status_code == 404
