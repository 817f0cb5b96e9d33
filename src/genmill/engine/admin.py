"""The operator's operations: accounts, keys, top-ups, worker tokens, operator tokens, and the deployment views.

The admin API (`genmill.api.admin`) only maps HTTP onto these calls; the CLI's `genmill admin token` uses the
same store calls. Everything here crosses accounts, which is why it sits behind an operator token and never an
account key.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from genmill.domain.records import Account, ApiKey, OperatorToken, TopUp, WorkerToken
from genmill.store import Store
from genmill.store.ops import QueueDepth, SeenWorker
from genmill.worker.backendset import BackendSet


@dataclass(frozen=True)
class InProcessWorkers:
    """The worker threads of this server process and what their backends hold on each device."""

    slots: int
    capabilities: list[tuple[str, str]]
    loaded_backends: list[str]
    memory_used_bytes: dict[str, int]


class Administration:
    def __init__(
        self,
        store: Store,
        backend_sets: list[BackendSet],
        *,
        worker_slots: int,
        worker_seen_seconds: float,
    ) -> None:
        self.store = store
        self.backend_sets = backend_sets
        self.worker_slots = worker_slots
        self.worker_seen = timedelta(seconds=worker_seen_seconds)

    # --- operators -----------------------------------------------------------------------------------------------

    def authenticate(self, plaintext: str) -> OperatorToken | None:
        return self.store.operators.authenticate(plaintext)

    # --- accounts and their keys ---------------------------------------------------------------------------------

    def create_account(self, name: str, *, credits: int, max_concurrency: int) -> Account:
        return self.store.accounts.create_account(name, credits=credits, max_concurrency=max_concurrency)

    def accounts(self) -> list[Account]:
        return self.store.accounts.list_accounts()

    def account(self, account_id: str) -> Account:
        return self.store.accounts.get(account_id)

    def update_account(
        self, account_id: str, *, is_enabled: bool | None = None, max_concurrency: int | None = None
    ) -> Account:
        return self.store.operators.update_account(account_id, is_enabled=is_enabled, max_concurrency=max_concurrency)

    def topup(
        self, account_id: str, credits: int, idempotency_key: str, operator: OperatorToken
    ) -> tuple[Account, TopUp]:
        return self.store.operators.topup(account_id, credits, idempotency_key, operator.token_id)

    def create_key(self, account_id: str, name: str) -> tuple[str, ApiKey]:
        return self.store.accounts.create_key(account_id, name)

    def api_keys(self, account_id: str | None = None) -> list[ApiKey]:
        return [k for k in self.store.accounts.list_keys() if account_id is None or k.account_id == account_id]

    def revoke_key(self, key_id: str) -> None:
        self.store.accounts.revoke_key(key_id)

    # --- worker tokens -------------------------------------------------------------------------------------------

    def create_worker_token(self, name: str, account_id: str | None) -> tuple[str, WorkerToken]:
        return self.store.workers.create_token(name, account_id)

    def worker_tokens(self) -> list[WorkerToken]:
        return self.store.workers.list_tokens()

    def revoke_worker_token(self, token_id: str) -> None:
        self.store.workers.revoke_token(token_id)

    # --- views ---------------------------------------------------------------------------------------------------

    def remote_workers(self) -> list[SeenWorker]:
        """Remote workers seen within GENMILL_WORKER_SEEN_SECONDS."""
        return self.store.ops.workers_seen(self.worker_seen)

    def in_process_workers(self) -> InProcessWorkers:
        capabilities: set[tuple[str, str]] = set()
        loaded: list[str] = []
        used: dict[str, int] = {}
        if self.worker_slots:
            for backends in self.backend_sets:
                capabilities.update(backends.capabilities())
                loaded.extend(backends.cache.loaded())
                for device, nbytes in backends.cache.used_by_device().items():
                    used[device] = used.get(device, 0) + nbytes
        return InProcessWorkers(self.worker_slots, sorted(capabilities), loaded, used)

    def queue(self) -> list[QueueDepth]:
        return self.store.ops.queue_depth()

    def webhook_failures(self, limit: int) -> list[dict[str, Any]]:
        return self.store.ops.webhook_failures(limit)
