"""genmill on uvicorn on 127.0.0.1 with GENMILL_LLM_MODELS pointing at a loopback OpenAI-compatible server, an
account with credits and a poor one: what the OpenAI-compatible API tests drive over real HTTP."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from tests.integration.openai_upstream import FakeUpstream
from tests.loopback import free_port, run_uvicorn

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
    with closing(runtime.store), run_uvicorn(app, port), httpx.Client(timeout=30) as http:
        yield Chat(f"http://127.0.0.1:{port}", key, poor_key, account.account_id, runtime, upstream, http)
