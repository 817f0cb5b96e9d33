"""The database schema, shared by SQLite and PostgreSQL and by the Alembic migrations.

Tables hold state only; the rules that change it live in `genmill.domain` and the queries in the
`genmill.store` modules next to this one.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Dialect


class UTCDateTime(sa.TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every engine (SQLite stores naive text, so normalise both ways)."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if isinstance(value, str):
            value = datetime.fromisoformat(value)
        assert isinstance(value, datetime)
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


JSONType = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
Credits = sa.BigInteger

metadata = sa.MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
    }
)

accounts = sa.Table(
    "accounts",
    metadata,
    sa.Column("account_id", sa.String(36), primary_key=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("plan", sa.String(50), nullable=False),
    sa.Column("is_enabled", sa.Boolean, nullable=False),
    sa.Column("max_concurrency", sa.Integer, nullable=False),
    # The three credit buckets; their sum is the total ever topped up. Rebuildable from `ledger`.
    sa.Column("available_credits", Credits, nullable=False),
    sa.Column("frozen_credits", Credits, nullable=False),
    sa.Column("used_credits", Credits, nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    # Signs webhooks of tasks that gave no secret of their own (Standard Webhooks `whsec_…`).
    sa.Column("webhook_signing_secret", sa.String(100), nullable=True),
)

api_keys = sa.Table(
    "api_keys",
    metadata,
    sa.Column("key_id", sa.String(36), primary_key=True),
    sa.Column("account_id", sa.String(36), sa.ForeignKey("accounts.account_id"), nullable=False, index=True),
    sa.Column("name", sa.String(200), nullable=False),
    # SHA-256 of the key; the plaintext is shown once at creation and never stored.
    sa.Column("key_hash", sa.String(64), nullable=False, unique=True),
    sa.Column("prefix", sa.String(16), nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("revoked_at", UTCDateTime, nullable=True),
)

ledger = sa.Table(
    "ledger",
    metadata,
    sa.Column("entry_id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("account_id", sa.String(36), sa.ForeignKey("accounts.account_id"), nullable=False, index=True),
    sa.Column("task_id", sa.String(36), nullable=True, index=True),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("amount", Credits, nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
)

tasks = sa.Table(
    "tasks",
    metadata,
    sa.Column("task_id", sa.String(36), primary_key=True),
    sa.Column("account_id", sa.String(36), sa.ForeignKey("accounts.account_id"), nullable=False),
    sa.Column("model", sa.String(100), nullable=False),
    sa.Column("task_type", sa.String(100), nullable=False),
    sa.Column("family", sa.String(50), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("input", JSONType, nullable=False),
    sa.Column("config", JSONType, nullable=False),
    sa.Column("output", JSONType, nullable=True),
    sa.Column("detail", JSONType, nullable=True),
    sa.Column("logs", JSONType, nullable=False),
    sa.Column("error", JSONType, nullable=True),
    sa.Column("price", Credits, nullable=False),
    sa.Column("frozen_credits", Credits, nullable=False),
    sa.Column("consumed_credits", Credits, nullable=False),
    sa.Column("service_mode", sa.String(16), nullable=False),
    sa.Column("priority", sa.Integer, nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False),
    sa.Column("max_attempts", sa.Integer, nullable=False),
    sa.Column("lease_id", sa.String(36), nullable=True),
    sa.Column("lease_expires_at", UTCDateTime, nullable=True),
    sa.Column("worker_id", sa.String(100), nullable=True),
    # "public", or the account id whose private pool must run this task.
    sa.Column("pool", sa.String(36), nullable=False, server_default="public"),
    sa.Column("retention_seconds", sa.Integer, nullable=False),
    # PiAPI's meta.usage.type of the entry at create: "quota", "point" or "llm".
    sa.Column("usage_type", sa.String(16), nullable=False, server_default="quota"),
    sa.Column("outputs_deleted_at", UTCDateTime, nullable=True),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("started_at", UTCDateTime, nullable=True),
    sa.Column("ended_at", UTCDateTime, nullable=True),
    sa.Column("updated_at", UTCDateTime, nullable=False),
    sa.Index("ix_tasks_account_created", "account_id", "created_at"),
    sa.Index("ix_tasks_account_status", "account_id", "status"),
    sa.Index("ix_tasks_lease", "status", "lease_expires_at"),
)

# The claim order (priority first, highest first, then oldest) as an index, so the next task of a queue is an
# index seek rather than a sort of every pending task.
sa.Index(
    "ix_tasks_claim_order", tasks.c.status, tasks.c.pool, tasks.c.priority.desc(), tasks.c.created_at, tasks.c.task_id
)

blobs = sa.Table(
    "blobs",
    metadata,
    sa.Column("key", sa.String(200), primary_key=True),
    sa.Column("account_id", sa.String(36), nullable=True, index=True),
    sa.Column("task_id", sa.String(36), nullable=True, index=True),
    sa.Column("kind", sa.String(16), nullable=False),  # "upload" | "output"
    sa.Column("content_type", sa.String(100), nullable=False),
    sa.Column("size", sa.BigInteger, nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("expires_at", UTCDateTime, nullable=False),
    sa.Column("deleted_at", UTCDateTime, nullable=True),
    sa.Index("ix_blobs_expiry", "deleted_at", "expires_at"),
)

# The transactional outbox: every task change appends an event, with a snapshot of the task as GET returns it,
# in the same transaction as the change. Webhook deliveries and the live event stream are built from it.
task_events = sa.Table(
    "task_events",
    metadata,
    sa.Column("event_id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("task_id", sa.String(36), nullable=False),
    sa.Column("account_id", sa.String(36), nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),  # "status" | "progress"
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("snapshot", JSONType, nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Index("ix_task_events_task", "task_id", "event_id"),
    sa.Index("ix_task_events_created", "created_at"),
)

webhook_deliveries = sa.Table(
    "webhook_deliveries",
    metadata,
    # Also the Standard Webhooks `webhook-id`: stable across retries and replays of the same event.
    sa.Column("delivery_id", sa.String(40), primary_key=True),
    sa.Column("event_id", sa.Integer, nullable=False),
    sa.Column("task_id", sa.String(36), nullable=False),
    sa.Column("account_id", sa.String(36), nullable=False),
    sa.Column("endpoint", sa.String(2048), nullable=False),
    sa.Column("state", sa.String(16), nullable=False),  # pending | delivered | failed | gone | exhausted
    sa.Column("attempts", sa.Integer, nullable=False),
    sa.Column("next_attempt_at", UTCDateTime, nullable=False),
    sa.Column("locked_until", UTCDateTime, nullable=True),
    sa.Column("locked_by", sa.String(100), nullable=True),
    sa.Column("last_status_code", sa.Integer, nullable=True),
    sa.Column("last_error", sa.String(500), nullable=True),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("delivered_at", UTCDateTime, nullable=True),
    sa.Index("ix_webhook_deliveries_due", "state", "next_attempt_at"),
    sa.Index("ix_webhook_deliveries_task", "task_id", "event_id"),
)

webhook_attempts = sa.Table(
    "webhook_attempts",
    metadata,
    sa.Column("attempt_id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("delivery_id", sa.String(40), nullable=False, index=True),
    sa.Column("attempted_at", UTCDateTime, nullable=False),
    sa.Column("status_code", sa.Integer, nullable=True),
    sa.Column("latency_ms", sa.Integer, nullable=False),
    sa.Column("error", sa.String(500), nullable=True),
)

idempotency_keys = sa.Table(
    "idempotency_keys",
    metadata,
    sa.Column("account_id", sa.String(36), primary_key=True),
    sa.Column("key", sa.String(255), primary_key=True),
    sa.Column("request_hash", sa.String(64), nullable=False),
    sa.Column("task_id", sa.String(36), nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("expires_at", UTCDateTime, nullable=False, index=True),
)

# Remote workers: tokens are separate from API keys, stored hashed, revocable. A token bound to an account is a
# private-pool token: its workers run only that account's `service_mode: private` tasks.
worker_tokens = sa.Table(
    "worker_tokens",
    metadata,
    sa.Column("token_id", sa.String(36), primary_key=True),
    sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
    sa.Column("prefix", sa.String(16), nullable=False),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("account_id", sa.String(36), sa.ForeignKey("accounts.account_id"), nullable=True),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("revoked_at", UTCDateTime, nullable=True),
)

workers = sa.Table(
    "workers",
    metadata,
    sa.Column("worker_id", sa.String(64), primary_key=True),
    sa.Column("token_id", sa.String(36), nullable=False, index=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("pool", sa.String(36), nullable=False),  # "public" or the private pool's account id
    sa.Column("capabilities", JSONType, nullable=False),
    sa.Column("registered_at", UTCDateTime, nullable=False),
    sa.Column("last_seen_at", UTCDateTime, nullable=False, index=True),
)

operator_tokens = sa.Table(
    "operator_tokens",
    metadata,
    sa.Column("token_id", sa.String(36), primary_key=True),
    sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
    sa.Column("prefix", sa.String(16), nullable=False),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("revoked_at", UTCDateTime, nullable=True),
)
"""The admin API's credentials: hashed and revocable like API keys, owned by no account."""

topups = sa.Table(
    "topups",
    metadata,
    sa.Column("idempotency_key", sa.String(255), primary_key=True),
    sa.Column("account_id", sa.String(36), sa.ForeignKey("accounts.account_id"), nullable=False),
    sa.Column("credits", Credits, nullable=False),
    sa.Column("operator_token_id", sa.String(36), nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
)
"""Each admin top-up under its Idempotency-Key: a retried request finds its row and credits nothing twice."""
