"""The admin API's bodies and answers (`genmill.api.admin`): plain typed objects, not PiAPI's envelope, since no
PiAPI client calls these routes; errors still answer the one error envelope."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from genmill.domain.records import Account, ApiKey, WorkerToken


class Credits(BaseModel):
    available: int
    frozen: int
    used: int
    total: int


class AccountOut(BaseModel):
    account_id: str
    name: str
    plan: str
    is_enabled: bool
    max_concurrency: int = Field(..., description="Tasks of the account that may run at once; more are staged.")
    credits: Credits
    created_at: datetime

    @classmethod
    def of(cls, account: Account) -> AccountOut:
        b = account.balances
        return cls(
            account_id=account.account_id,
            name=account.name,
            plan=account.plan,
            is_enabled=account.is_enabled,
            max_concurrency=account.max_concurrency,
            credits=Credits(available=b.available, frozen=b.frozen, used=b.used, total=b.total),
            created_at=account.created_at,
        )


class AccountCreate(BaseModel):
    name: str = Field(..., min_length=1, max_length=200)
    credits: int = Field(0, ge=0, description="Credits to start with (1 USD = 10,000,000 credits).")
    max_concurrency: int = Field(5, ge=1, le=10_000)


class AccountUpdate(BaseModel):
    is_enabled: bool | None = Field(None, description="false disables the account: its keys stop working.")
    max_concurrency: int | None = Field(None, ge=1, le=10_000)


class TopUpCreate(BaseModel):
    credits: int = Field(..., gt=0, le=2**62, description="Credits to add (1 USD = 10,000,000 credits).")


class TopUpOut(BaseModel):
    idempotency_key: str
    credits: int
    created_at: datetime
    replayed: bool = Field(..., description="true when this Idempotency-Key was seen before and nothing moved.")
    account: AccountOut


class KeyOut(BaseModel):
    key_id: str
    account_id: str
    name: str
    prefix: str = Field(..., description="The first characters of the key, to tell keys apart.")
    created_at: datetime
    revoked_at: datetime | None

    @classmethod
    def of(cls, key: ApiKey) -> KeyOut:
        return cls(
            key_id=key.key_id,
            account_id=key.account_id,
            name=key.name,
            prefix=key.prefix,
            created_at=key.created_at,
            revoked_at=key.revoked_at,
        )


class KeyCreate(BaseModel):
    name: str = Field("", max_length=200)


class KeyCreated(BaseModel):
    key: KeyOut
    secret: str = Field(..., description="The API key itself: shown in this answer only, never again.")


class WorkerTokenOut(BaseModel):
    token_id: str
    name: str
    pool: str = Field(..., description="'public', or the account id of a private pool.")
    prefix: str
    created_at: datetime
    revoked_at: datetime | None

    @classmethod
    def of(cls, token: WorkerToken) -> WorkerTokenOut:
        return cls(
            token_id=token.token_id,
            name=token.name,
            pool=token.pool,
            prefix=token.prefix,
            created_at=token.created_at,
            revoked_at=token.revoked_at,
        )


class WorkerTokenCreate(BaseModel):
    name: str = Field("", max_length=200)
    account_id: str | None = Field(None, description="Bind the token to this account's private pool.")


class WorkerTokenCreated(BaseModel):
    token: WorkerTokenOut
    secret: str = Field(..., description="The worker token itself: shown in this answer only, never again.")


class Capability(BaseModel):
    model: str
    task_type: str


class RemoteWorkerOut(BaseModel):
    worker_id: str
    name: str
    pool: str
    capabilities: list[Capability]
    registered_at: datetime
    last_seen_at: datetime


class InProcessWorkersOut(BaseModel):
    slots: int = Field(..., description="Worker threads of the process that answered (GENMILL_WORKERS).")
    capabilities: list[Capability]
    loaded_backends: list[str]
    memory_used_bytes: dict[str, int] = Field(
        ..., description="Per device, what the loaded models of this process hold (the model cache's count)."
    )


class WorkersOut(BaseModel):
    in_process: InProcessWorkersOut
    remote: list[RemoteWorkerOut] = Field(..., description="Remote workers seen within GENMILL_WORKER_SEEN_SECONDS.")


class QueueRow(BaseModel):
    model: str
    task_type: str
    pool: str
    status: str = Field(..., description="pending (waits for a worker) or staged (behind the account's limit).")
    count: int


class WebhookFailure(BaseModel):
    delivery_id: str
    task_id: str
    account_id: str
    endpoint: str
    state: str = Field(..., description="failed (a 4xx), gone (410) or exhausted (retried for a day).")
    attempts: int
    last_status_code: int | None
    last_error: str | None
    created_at: datetime
    next_attempt_at: datetime

    @classmethod
    def of(cls, row: dict[str, Any]) -> WebhookFailure:
        return cls.model_validate(row)
