"""Remote workers: their tokens (hashed, revocable), their registrations and what they can run.

A deployment "serves" a catalog entry when an in-process backend can run it or a worker of the right pool that
registered it was seen lately; when such a worker was last seen drives the create-time check (serving now,
served recently) and how long a queued task may wait (`genmill.domain.waiting`).
"""

from __future__ import annotations

import hmac
import secrets
import uuid
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from genmill.domain.records import WorkerToken
from genmill.errors import NotFound, Unauthorized
from genmill.store.accounts import hash_key
from genmill.store.base import Queries
from genmill.store.tables import accounts, worker_tokens, workers

TOKEN_PREFIX = "gmw_"


def latest_seen(rows: Iterable[tuple[Any, ...]]) -> dict[tuple[str, str, str], datetime]:
    """(pool, model, task_type) → the latest `last_seen_at` among the rows' workers that registered the entry;
    each row is (pool, capabilities, last_seen_at)."""
    seen: dict[tuple[str, str, str], datetime] = {}
    for pool, capabilities, last_seen_at in rows:
        for model, task_type in capabilities:
            key = (str(pool), str(model), str(task_type))
            if key not in seen or last_seen_at > seen[key]:
                seen[key] = last_seen_at
    return seen


def _to_token(row: sa.Row[Any]) -> WorkerToken:
    m = row._mapping
    return WorkerToken(m["token_id"], m["name"], m["account_id"], m["prefix"], m["created_at"], m["revoked_at"])


class WorkerRegistry(Queries):
    def create_token(self, name: str = "", account_id: str | None = None) -> tuple[str, WorkerToken]:
        plaintext = TOKEN_PREFIX + secrets.token_urlsafe(32)
        token = WorkerToken(str(uuid.uuid4()), name, account_id, plaintext[:10], self.clock.now(), None)
        with self.tx() as conn:
            if (
                account_id is not None
                and conn.execute(sa.select(accounts.c.account_id).where(accounts.c.account_id == account_id)).first()
                is None
            ):
                raise NotFound(f"account {account_id} not found")
            conn.execute(
                sa.insert(worker_tokens).values(
                    token_id=token.token_id,
                    token_hash=hash_key(plaintext),
                    prefix=token.prefix,
                    name=name,
                    account_id=account_id,
                    created_at=token.created_at,
                )
            )
        return plaintext, token

    def list_tokens(self) -> list[WorkerToken]:
        with self.read() as conn:
            rows = conn.execute(sa.select(worker_tokens).order_by(worker_tokens.c.created_at)).all()
        return [_to_token(r) for r in rows]

    def revoke_token(self, token_id: str) -> None:
        with self.tx() as conn:
            result = conn.execute(
                sa.update(worker_tokens)
                .where(worker_tokens.c.token_id == token_id, worker_tokens.c.revoked_at.is_(None))
                .values(revoked_at=self.clock.now())
            )
        if result.rowcount == 0:
            raise NotFound(f"no active worker token {token_id}")

    def authenticate(self, plaintext: str) -> WorkerToken:
        digest = hash_key(plaintext)
        with self.read() as conn:
            row = conn.execute(sa.select(worker_tokens).where(worker_tokens.c.token_hash == digest)).one_or_none()
        if row is None or row.revoked_at is not None or not hmac.compare_digest(row.token_hash, digest):
            raise Unauthorized("invalid or revoked worker token")
        return _to_token(row)

    def register(self, token: WorkerToken, name: str, capabilities: list[tuple[str, str]]) -> str:
        worker_id = f"w-{uuid.uuid4().hex[:16]}"
        now = self.clock.now()
        with self.tx() as conn:
            conn.execute(
                sa.insert(workers).values(
                    worker_id=worker_id,
                    token_id=token.token_id,
                    name=name,
                    pool=token.pool,
                    capabilities=[list(c) for c in capabilities],
                    registered_at=now,
                    last_seen_at=now,
                )
            )
        return worker_id

    def worker(self, token: WorkerToken, worker_id: str) -> tuple[str, list[tuple[str, str]]]:
        """The worker's pool and capabilities, checking it belongs to the token; marks it seen."""
        with self.tx() as conn:
            row = conn.execute(
                sa.select(workers.c.pool, workers.c.capabilities).where(
                    workers.c.worker_id == worker_id, workers.c.token_id == token.token_id
                )
            ).one_or_none()
            if row is None:
                raise NotFound(f"worker {worker_id} is not registered with this token")
            conn.execute(
                sa.update(workers).where(workers.c.worker_id == worker_id).values(last_seen_at=self.clock.now())
            )
        return str(row.pool), [(str(m), str(t)) for m, t in row.capabilities]

    def last_served(self, pool: str | None = None) -> dict[tuple[str, str, str], datetime]:
        """When a worker that registered each entry was last seen, per (pool, model, task_type): workers of
        `pool` (every pool when None) whose token is not revoked.

        This is the persisted "served recently": a restarted replica reads it from the shared table, so it knows
        what the workers that are restarting served before them.
        """
        query = (
            sa.select(workers.c.pool, workers.c.capabilities, workers.c.last_seen_at)
            .join(worker_tokens, worker_tokens.c.token_id == workers.c.token_id)
            .where(worker_tokens.c.revoked_at.is_(None))
        )
        if pool is not None:
            query = query.where(workers.c.pool == pool)
        with self.read() as conn:
            rows = conn.execute(query).all()
        return latest_seen(tuple(row) for row in rows)

    def touch(self, worker_id: str) -> None:
        """Mark a worker seen (heartbeats count, so a long task does not make its worker look gone)."""
        with self.tx() as conn:
            conn.execute(
                sa.update(workers).where(workers.c.worker_id == worker_id).values(last_seen_at=self.clock.now())
            )

    def forget_idle(self, older_than: timedelta) -> int:
        with self.tx() as conn:
            result = conn.execute(sa.delete(workers).where(workers.c.last_seen_at < self.clock.now() - older_than))
        return int(result.rowcount or 0)
