"""An app on a real SQLite file, driven through real HTTP requests in-process (ASGI), workers stepped by hand."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from tests.support import AlwaysFails, Missing, PillowUpscale

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
