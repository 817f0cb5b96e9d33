"""An app on a real SQLite file, driven through real HTTP requests in-process (ASGI), workers stepped by hand
(`api`); and for the SDK's and the CLI's tests, real servers on loopback (`server` directly and forwarding,
`plain` directly only) and a small PNG to send them (`photo`)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from tests.integration.client_servers import Server, direct, forwarding
from tests.support import AlwaysFails, Missing, PillowUpscale, png_bytes

from genmill.app import Runtime, create_app
from genmill.settings import Settings


@dataclass
class Api:
    client: TestClient
    runtime: Runtime
    key: str
    key2: str
    account_id: str
    upscaler: PillowUpscale

    def h(self, key: str | None = None) -> dict[str, str]:
        return {"X-API-Key": key or self.key}

    def run_worker(self) -> bool:
        return self.runtime.workers[0].run_once()


@pytest.fixture
def api(tmp_path: Path) -> Iterator[Api]:
    settings = Settings(
        data_dir=tmp_path,
        public_url="http://testserver",
        workers=1,
        allow_private_urls=True,
        max_request_bytes=20 * 1024 * 1024,
    )
    upscaler = PillowUpscale()
    runtime = Runtime(settings, backends=[upscaler, AlwaysFails(), Missing()])
    app = create_app(settings, runtime=runtime, run_workers=False)
    account = runtime.store.accounts.create_account("one", credits=10_000_000, max_concurrency=2)
    key, _ = runtime.store.accounts.create_key(account.account_id, "k1")
    other = runtime.store.accounts.create_account("two", credits=10_000_000)
    key2, _ = runtime.store.accounts.create_key(other.account_id, "k2")
    with TestClient(app) as client:
        yield Api(client, runtime, key, key2, account.account_id, upscaler)
    runtime.store.close()


@pytest.fixture(params=["direct", "forwarding"])
def server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Server]:
    with (direct if request.param == "direct" else forwarding)(tmp_path) as running:
        yield running


@pytest.fixture
def plain(tmp_path: Path) -> Iterator[Server]:
    with direct(tmp_path) as running:
        yield running


@pytest.fixture
def photo(tmp_path: Path) -> Path:
    path = tmp_path / "photo.png"
    path.write_bytes(png_bytes(8, 6))
    return path
