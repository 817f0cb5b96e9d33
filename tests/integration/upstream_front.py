"""The front genmill of the upstream tests: in-process (ASGI) with its worker stepped by hand, running nothing
itself but an `UpstreamBackend` that forwards to a second genmill on loopback."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from genmill.app import Runtime, create_app
from genmill.backends.upstream import UpstreamBackend
from genmill.settings import Settings


@dataclass
class Front:
    client: TestClient
    runtime: Runtime
    key: str

    def create(self, entry: tuple[str, str], **inputs: Any) -> str:
        body = {"model": entry[0], "task_type": entry[1], "input": inputs}
        r = self.client.post("/api/v1/task", headers={"X-API-Key": self.key}, json=body)
        assert r.status_code == 200, r.text
        return str(r.json()["data"]["task_id"])

    def task(self, task_id: str) -> dict[str, Any]:
        return dict(self.client.get(f"/api/v1/task/{task_id}", headers={"X-API-Key": self.key}).json()["data"])

    def run(self, task_id: str) -> dict[str, Any]:
        """Step the front's worker once (it must find a task) and return the task as it is then."""
        assert self.runtime.workers[0].run_once()
        return self.task(task_id)

    def credits(self) -> dict[str, Any]:
        r = self.client.get("/account/info", headers={"X-API-Key": self.key})
        return dict(r.json()["data"]["credit_pack_info"])


@contextmanager
def serve_front(data_dir: Path, backend: UpstreamBackend, credits: int, **settings: Any) -> Iterator[Front]:
    """The server clients talk to, with one account holding `credits`; `backend` is unloaded at the end."""
    config = Settings(data_dir=data_dir, public_url="http://testserver", workers=1, **settings)
    runtime = Runtime(config, backends=[backend])
    account = runtime.store.accounts.create_account("client", credits=credits)
    key, _ = runtime.store.accounts.create_key(account.account_id)
    with TestClient(create_app(config, runtime=runtime, run_workers=False)) as client:
        yield Front(client, runtime, key)
    backend.unload()
    runtime.store.close()
