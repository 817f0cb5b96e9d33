"""A slow peer of one account stalls nobody else: webhook senders and the in-process worker stay available.

Real servers on 127.0.0.1 drip their answers a byte at a time for far longer than the deadlines; the tests check
that another account's work gets through while those peers are still dripping.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from tests.drip import DripServer, run_drip
from tests.receiver import run_receiver
from tests.support import PillowUpscale, png_bytes

from genmill.app import Runtime, create_app
from genmill.settings import Settings

CREDITS = 10**6


@dataclass
class Server:
    runtime: Runtime
    client: TestClient
    keys: dict[str, str]  # account name -> API key
    accounts: dict[str, str]  # account name -> account id

    def create(self, account: str, image: str, endpoint: str = "") -> str:
        body: dict[str, Any] = {"model": "Qubico/image-toolkit", "task_type": "upscale"}
        body["input"] = {"image": image, "scale": 2}
        if endpoint:
            body["config"] = {"webhook_config": {"endpoint": endpoint}}
        r = self.client.post("/api/v1/task", headers={"X-API-Key": self.keys[account]}, json=body)
        assert r.status_code == 200, r.json()
        return str(r.json()["data"]["task_id"])

    def task(self, account: str, task_id: str) -> dict[str, Any]:
        r = self.client.get(f"/api/v1/task/{task_id}", headers={"X-API-Key": self.keys[account]})
        assert r.status_code == 200
        data: dict[str, Any] = r.json()["data"]
        return data

    def wait_status(self, account: str, task_id: str, statuses: set[str], timeout: float = 60) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            task = self.task(account, task_id)
            if task["status"] in statuses:
                return task
            time.sleep(0.05)
        raise AssertionError(f"task {task_id} never reached {statuses}: {self.task(account, task_id)['status']}")


def serve(tmp_path: Path, **overrides: Any) -> Iterator[Server]:
    settings = Settings(
        data_dir=tmp_path, public_url="http://testserver", workers=1, allow_private_urls=True, **overrides
    )
    runtime = Runtime(settings, backends=[PillowUpscale()])
    keys, accounts = {}, {}
    for name in ("a", "b"):
        account = runtime.store.accounts.create_account(name, credits=CREDITS)
        keys[name], _ = runtime.store.accounts.create_key(account.account_id)
        accounts[name] = account.account_id
    with TestClient(create_app(settings, runtime=runtime)) as client:  # workers and webhook senders run
        yield Server(runtime, client, keys, accounts)
    runtime.store.close()


@pytest.fixture
def webhook_server(tmp_path: Path) -> Iterator[Server]:
    """Four sender threads; a delivery may take 30 s, far longer than any test here waits."""
    yield from serve(tmp_path, webhook_concurrency=4, webhook_timeout=30, fetch_timeout=30)


@pytest.fixture
def fetch_server(tmp_path: Path) -> Iterator[Server]:
    """One in-process worker; an input download may take 1.5 s in all."""
    yield from serve(tmp_path, fetch_timeout=1.5)


def inline_image() -> str:
    return base64.b64encode(png_bytes(6, 4)).decode()


def test_a_slow_receiver_of_one_account_does_not_delay_another_accounts_webhook(webhook_server: Server) -> None:
    srv = webhook_server
    per_account = srv.runtime.webhooks.slots.per_account
    assert per_account == 3  # all four threads but one
    with run_drip(DripServer(interval=0.5)) as drip, run_receiver() as rx:
        slow = [srv.create("a", inline_image(), endpoint=drip.url) for _ in range(4)]
        for _ in range(per_account):  # A's receivers now hold as many sender threads as A may have
            assert drip.connected.acquire(timeout=30)
        fast = srv.create("b", inline_image(), endpoint=rx.url)
        got = rx.wait_until(lambda requests: any(r.json["data"]["task_id"] == fast for r in requests), timeout=20)
        assert any(r.json["data"]["task_id"] == fast for r in got)
        # B's webhook arrived while every one of A's deliveries was still unanswered.
        assert drip.connections == per_account and not drip.finished.is_set()
        for task_id in slow:
            listed = srv.runtime.store.webhooks.for_task(srv.accounts["a"], task_id)
            assert listed[0]["row"].attempts == 0 and listed[0]["attempts"] == []


def test_a_dripping_input_fails_its_task_with_10001_and_frees_the_only_worker(fetch_server: Server) -> None:
    srv = fetch_server
    with run_drip(DripServer(interval=0.5)) as drip:
        assert drip.drip_seconds > 20
        stuck = srv.create("a", drip.url)
        srv.wait_status("a", stuck, {"processing", "failed"})
        other = srv.create("b", inline_image())
        done = srv.wait_status("b", other, {"completed", "failed"}, timeout=drip.drip_seconds / 2)
        assert done["status"] == "completed"
        assert drip.sent < drip.head_length and not drip.finished.is_set()  # B ran while A's URL still dripped
        failed = srv.wait_status("a", stuck, {"completed", "failed"})
    assert failed["status"] == "failed"
    assert failed["error"]["code"] == 10001
    assert "input.image: download timed out (limit 1.5s)" in failed["error"]["message"]
    balances = srv.runtime.store.accounts.get(srv.accounts["a"]).balances
    assert (balances.available, balances.frozen, balances.used) == (CREDITS, 0, 0)  # the price was released
