"""Remote workers over real HTTP on loopback: register, long-poll, run, upload, complete; pools; leases; tokens."""

from __future__ import annotations

import base64
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from tests.support import PillowUpscale, png_bytes

from genmill.app import Runtime, create_app
from genmill.backends.base import Backend
from genmill.catalog import build_catalog
from genmill.errors import Conflict, Unauthorized
from genmill.settings import Settings
from genmill.worker.backendset import BackendSet
from genmill.worker.http_transport import HttpTransport
from genmill.worker.runtime import Worker

UPSCALE = ("Qubico/image-toolkit", "upscale")


@dataclass
class Served:
    url: str
    runtime: Runtime

    def account(self, name: str = "acct") -> tuple[str, str]:
        account = self.runtime.store.accounts.create_account(name, credits=10**9)
        key, _ = self.runtime.store.accounts.create_key(account.account_id)
        return account.account_id, key

    def create(self, key: str, **config: Any) -> httpx.Response:
        body = {
            "model": UPSCALE[0],
            "task_type": UPSCALE[1],
            "input": {"image": base64.b64encode(png_bytes(6, 4)).decode(), "scale": 2},
            **({"config": config} if config else {}),
        }
        return httpx.post(self.url + "/api/v1/task", headers={"X-API-Key": key}, json=body, timeout=30)

    def task(self, key: str, task_id: str) -> dict[str, Any]:
        r = httpx.get(f"{self.url}/api/v1/task/{task_id}", headers={"X-API-Key": key}, timeout=30)
        return dict(r.json()["data"])


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    """An API-only server (no in-process workers) on a real loopback port."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    settings = Settings(data_dir=tmp_path, public_url=f"http://127.0.0.1:{port}", workers=0, lease_seconds=30)
    runtime = Runtime(settings, backends=[])
    server = uvicorn.Server(uvicorn.Config(create_app(settings, runtime=runtime), port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.02)
    yield Served(f"http://127.0.0.1:{port}", runtime)
    server.should_exit = True
    thread.join(10)
    runtime.store.close()


def remote_worker(url: str, token: str, backend: Backend | None = None) -> tuple[Worker, HttpTransport]:
    catalog = build_catalog()
    transport = HttpTransport(url, token, claim_wait=5)
    backends = BackendSet([backend or PillowUpscale()], catalog)
    registered = transport.register("test-worker", backends.capabilities())
    worker = Worker(
        transport.worker_id,
        transport,
        backends,
        catalog,
        lease_seconds=registered.lease_seconds,
        heartbeat_seconds=registered.heartbeat_seconds,
    )
    return worker, transport


def test_api_only_replica_refuses_until_a_worker_registers_then_a_remote_worker_runs_it(served: Served) -> None:
    _, key = served.account()
    refused = served.create(key)
    assert refused.status_code == 400 and "no worker" in refused.json()["message"]
    token, _ = served.runtime.store.workers.create_token("gpu-1")
    worker, transport = remote_worker(served.url, token)
    created = served.create(key)
    assert created.status_code == 200
    task_id = created.json()["data"]["task_id"]
    assert worker.run_once()
    done = served.task(key, task_id)
    assert done["status"] == "completed" and done["meta"]["is_using_private_pool"] is False
    image = httpx.get(done["output"]["image_url"], timeout=30)
    assert image.status_code == 200 and image.headers["content-type"] == "image/png"
    info = httpx.get(served.url + "/account/info", headers={"X-API-Key": key}).json()["data"]["credit_pack_info"]
    assert info["used_credits"] == done["meta"]["usage"]["consume"] > 0 and info["frozen_credits"] == 0
    transport.close()


def test_long_poll_returns_as_soon_as_work_arrives(served: Served) -> None:
    _, key = served.account()
    token, _ = served.runtime.store.workers.create_token()
    worker, transport = remote_worker(served.url, token)
    transport.claim_wait = 25
    got: list[Any] = []
    poller = threading.Thread(target=lambda: got.append(transport.claim(worker.worker_id, [UPSCALE], 30)))
    poller.start()
    time.sleep(0.5)  # the poll is now parked on the server
    task_id = served.create(key).json()["data"]["task_id"]
    poller.join(20)
    assert not poller.is_alive() and got and got[0] is not None and got[0].task.task_id == task_id
    transport.close()


def test_stale_or_foreign_leases_are_refused(served: Served) -> None:
    _, key = served.account()
    token, _ = served.runtime.store.workers.create_token()
    worker, transport = remote_worker(served.url, token)
    served.create(key)
    claim = transport.claim(worker.worker_id, [UPSCALE], 30)
    assert claim is not None
    transport.complete(claim, {"image_url": "x"}, [], None)
    with pytest.raises(Conflict):
        transport.complete(claim, {"image_url": "x"}, [], None)  # completes and bills once
    other_account, _ = served.account("other")
    private_token, _ = served.runtime.store.workers.create_token("theirs", other_account)
    _, foreign = remote_worker(served.url, private_token)
    served.create(key)
    claim2 = transport.claim(worker.worker_id, [UPSCALE], 30)
    assert claim2 is not None
    with pytest.raises(Conflict):
        foreign.complete(claim2, {"image_url": "x"}, [], None)
    transport.close()
    foreign.close()


def test_private_pool_tasks_run_only_on_the_accounts_workers(served: Served) -> None:
    account_id, key = served.account("owner")
    _, other_key = served.account("other")
    public_token, _ = served.runtime.store.workers.create_token("public")
    public_worker, public_transport = remote_worker(served.url, public_token)
    refused = served.create(key, service_mode="private")
    assert refused.status_code == 400 and "private pool" in refused.json()["message"]
    private_token, _ = served.runtime.store.workers.create_token("own", account_id)
    private_worker, private_transport = remote_worker(served.url, private_token)
    created = served.create(key, service_mode="private")
    assert created.status_code == 200
    task = created.json()["data"]
    assert task["meta"]["is_using_private_pool"] is True and task["meta"]["usage"]["frozen"] == 0
    public_transport.claim_wait = 0
    assert public_worker.run_once() is False  # the public pool never sees it
    assert served.create(other_key, service_mode="private").status_code == 400
    assert private_worker.run_once()
    assert served.task(key, task["task_id"])["status"] == "completed"
    public_transport.close()
    private_transport.close()


def test_revoked_tokens_are_refused(served: Served) -> None:
    token, record = served.runtime.store.workers.create_token()
    _, transport = remote_worker(served.url, token)
    served.runtime.store.workers.revoke_token(record.token_id)
    with pytest.raises(Unauthorized):
        transport.claim(transport.worker_id, [UPSCALE], 30)
    r = httpx.post(served.url + "/api/v1/workers/claim", json={"worker_id": "x"}, headers={"X-API-Key": "k"})
    assert r.status_code == 401 and r.json()["code"] == 401
    transport.close()


def test_workers_may_only_read_their_own_inputs_and_store_media(served: Served) -> None:
    _, key = served.account()
    token, _ = served.runtime.store.workers.create_token()
    worker, transport = remote_worker(served.url, token)
    served.create(key)
    claim = transport.claim(worker.worker_id, [UPSCALE], 30)
    assert claim is not None
    own = transport.read_input(claim, claim.task.input["image"], "image")
    assert own.content_type == "image/png"
    with pytest.raises(Exception, match="only read references that appear in its task"):
        transport.read_input(claim, "https://example.com/other.png", "image")
    headers = {"Authorization": f"Bearer {token}"}
    params = {"lease_id": claim.lease_id, "ext": "html", "content_type": "text/html"}
    r = httpx.put(
        f"{served.url}/api/v1/workers/tasks/{claim.task.task_id}/outputs",
        params=params,
        content=b"<script>",
        headers=headers,
    )
    assert r.status_code == 400 and "content_type" in r.json()["message"]
    transport.close()
