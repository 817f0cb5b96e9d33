"""Plain records that cross the store boundary. No I/O, no ORM: the store builds them from rows."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from genmill.domain.ledger import Balances
from genmill.domain.states import TaskStatus


@dataclass(frozen=True)
class Account:
    account_id: str
    name: str
    plan: str
    is_enabled: bool
    max_concurrency: int
    balances: Balances
    created_at: datetime


@dataclass(frozen=True)
class ApiKey:
    key_id: str
    account_id: str
    name: str
    prefix: str
    created_at: datetime
    revoked_at: datetime | None


@dataclass(frozen=True)
class Task:
    task_id: str
    account_id: str
    model: str
    task_type: str
    family: str
    status: TaskStatus
    input: dict[str, Any]
    config: dict[str, Any]
    output: dict[str, Any] | None
    detail: dict[str, Any] | None
    logs: list[str]
    error: dict[str, Any] | None
    price: int
    frozen_credits: int
    consumed_credits: int
    service_mode: str
    priority: int
    attempts: int
    max_attempts: int
    created_at: datetime
    started_at: datetime | None
    ended_at: datetime | None
    outputs_deleted_at: datetime | None = None
    lease_id: str | None = None
    lease_expires_at: datetime | None = None
    worker_id: str | None = None
    retention_seconds: int = 0
    pool: str = "public"
    usage_type: str = "quota"
    """PiAPI's `meta.usage.type` of the task's entry when it was created ("quota", "point" or "llm")."""


@dataclass(frozen=True)
class OriginTask:
    """The earlier task a derived operation works on, as the worker running the derived task sees it.

    Only what a backend needs to continue the work: the origin's entry, its stored input and output, its
    `detail` (an upstream backend keeps the upstream task id there) and when it was created. A worker may read
    the files this output names, like the files of its own task's input.
    """

    task_id: str
    model: str
    task_type: str
    input: dict[str, Any]
    output: dict[str, Any]
    detail: dict[str, Any] | None
    created_at: datetime


@dataclass(frozen=True)
class NewTask:
    """Everything the API layer decided before the create transaction: validated input and frozen price."""

    account_id: str
    model: str
    task_type: str
    family: str
    input: dict[str, Any]
    config: dict[str, Any]
    price: int
    service_mode: str
    retention_seconds: int
    priority: int = 0
    max_attempts: int = 3
    pool: str = "public"
    usage_type: str = "quota"

    def admitted(self, task_id: str, status: TaskStatus, now: datetime) -> Task:
        """The task this create writes once admitted as `status` (pending or staged), its price frozen."""
        return Task(
            task_id=task_id,
            account_id=self.account_id,
            model=self.model,
            task_type=self.task_type,
            family=self.family,
            status=status,
            input=self.input,
            config=self.config,
            output=None,
            detail=None,
            logs=[],
            error=None,
            price=self.price,
            frozen_credits=self.price,
            consumed_credits=0,
            service_mode=self.service_mode,
            priority=self.priority,
            attempts=0,
            max_attempts=self.max_attempts,
            created_at=now,
            started_at=None,
            ended_at=None,
            retention_seconds=self.retention_seconds,
            pool=self.pool,
            usage_type=self.usage_type,
        )


@dataclass(frozen=True)
class Claim:
    """A task handed to a worker, valid while `lease_id` is current and `lease_expires_at` is in the future."""

    task: Task
    lease_id: str
    lease_expires_at: datetime
    origin: OriginTask | None = None
    """The earlier task, when the claimed task is a derived operation (its entry has `derived_from`)."""


@dataclass(frozen=True)
class Blob:
    key: str
    account_id: str | None
    task_id: str | None
    kind: str
    content_type: str
    size: int
    created_at: datetime
    expires_at: datetime
    deleted_at: datetime | None


@dataclass(frozen=True)
class InputFile:
    """A media input resolved to bytes (from an upload, a data URI, base64 or a guarded URL fetch).

    A plain record rather than a backend type: the fetchers in `genmill.net` produce it, the worker hands it to
    backends through `RunContext.read_input`, and neither of them should depend on the other's layer for it.
    """

    data: bytes
    content_type: str
    name: str = ""


@dataclass
class TaskPage:
    tasks: list[Task] = field(default_factory=list)
    total: int = 0


@dataclass(frozen=True)
class EventRef:
    """A committed task event, as announced to in-process listeners (workers, webhooks, waiters)."""

    event_id: int
    task_id: str
    account_id: str
    status: str
    kind: str
    has_delivery: bool
    model: str = ""
    task_type: str = ""
    pool: str = ""
    """What the task needs of a worker (its entry and pool), so a pending task wakes only a worker that can run
    it; empty when unknown (an event announced by an older replica)."""
    task: Task | None = field(default=None, compare=False, repr=False)
    """The task as the committed transaction wrote it, on events of this process (never sent to others): what
    the metrics count and log, without reading the row back after each commit."""


@dataclass(frozen=True)
class StoredEvent:
    """A task event as the outbox (`task_events`) keeps it: what a progress stream replays.

    The event that changes a task's status is `genmill.domain.states.TaskEvent`, the only type of that name.
    """

    event_id: int
    task_id: str
    kind: str
    status: str
    snapshot: dict[str, Any]
    created_at: datetime


@dataclass(frozen=True)
class Idempotency:
    """An `Idempotency-Key` and a digest of the request it guards."""

    key: str
    request_hash: str
    ttl: timedelta


@dataclass(frozen=True)
class WorkerToken:
    token_id: str
    name: str
    account_id: str | None  # set for a private-pool token
    prefix: str
    created_at: datetime
    revoked_at: datetime | None

    @property
    def pool(self) -> str:
        return self.account_id or PUBLIC_POOL


PUBLIC_POOL = "public"


@dataclass(frozen=True)
class OperatorToken:
    """A credential of the admin API: an operator's, owned by no account."""

    token_id: str
    name: str
    prefix: str
    created_at: datetime
    revoked_at: datetime | None


@dataclass(frozen=True)
class TopUp:
    """An admin top-up under its Idempotency-Key: `replayed` when the key was seen before and nothing moved."""

    idempotency_key: str
    account_id: str
    credits: int
    created_at: datetime
    replayed: bool
