"""genmill on uvicorn on 127.0.0.1 with GENMILL_LLM_MODELS pointing at a loopback OpenAI-compatible server, an
account with credits and a poor one: what the OpenAI-compatible API tests drive over real HTTP."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from tests.integration.openai_upstream import FakeUpstream

from genmill.app import Runtime, create_app
from genmill.settings import Settings

POOR_CREDITS = 50


@dataclass
class Chat:
    url: str
    key: str
    poor_key: str
    account_id: str
    runtime: Runtime
    upstream: FakeUpstream
    http: httpx.Client

    def bearer(self, key: str | None = None) -> dict[str, str]:
        return {"Authorization": f"Bearer {key or self.key}"}

    def post(self, body: dict[str, Any], key: str | None = None, path: str = "/v1/chat/completions") -> httpx.Response:
        return self.http.post(f"{self.url}{path}", json=body, headers=self.bearer(key))

    def balances(self) -> tuple[int, int, int]:
        """(available, frozen, used) of the account, checked against its ledger."""
        account = self.runtime.store.accounts.get(self.account_id)
        assert self.runtime.store.accounts.ledger_balances(self.account_id) == account.balances
        return account.balances.available, account.balances.frozen, account.balances.used


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@contextmanager
def serve_chat_api(
    tmp_path: Path, upstream: FakeUpstream, models: dict[str, Any], *, credits: int, **settings: Any
) -> Iterator[Chat]:
    port = free_port()
    config = Settings(
        data_dir=tmp_path,
        workers=0,
        public_url=f"http://127.0.0.1:{port}",
        llm_models=json.dumps(models),
        **settings,
    )
    runtime = Runtime(config)
    account = runtime.store.accounts.create_account("one", credits=credits)
    key, _ = runtime.store.accounts.create_key(account.account_id)
    poor = runtime.store.accounts.create_account("poor", credits=POOR_CREDITS)
    poor_key, _ = runtime.store.accounts.create_key(poor.account_id)
    app = create_app(config, runtime=runtime, run_workers=False)
    server = uvicorn.Server(uvicorn.Config(app, port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.02)
    try:
        with httpx.Client(timeout=30) as http:
            yield Chat(f"http://127.0.0.1:{port}", key, poor_key, account.account_id, runtime, upstream, http)
    finally:
        server.should_exit = True
        thread.join(10)
        runtime.store.close()
