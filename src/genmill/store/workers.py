"""Remote workers: their tokens (hashed, revocable credentials, like API keys), their registrations and what they
can run.

A deployment "serves" a catalog entry when an in-process backend can run it or a worker of the right pool that
registered it was seen lately; when such a worker was last seen drives the create-time check (serving now,
served recently) and how long a queued task may wait (`genmill.domain.waiting`).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from genmill.domain.credentials import digest_of
from genmill.domain.records import WorkerToken
from genmill.errors import NotFound, Unauthorized
from genmill.store.base import Queries
from genmill.store.credentials import WORKER_TOKENS
from genmill.store.tables import accounts, worker_tokens, workers

SEEN_EVERY = timedelta(seconds=5)
"""How stale a worker's `last_seen_at` may be before a claim or heartbeat writes it again: far below
`worker_seen_seconds` (60 s by default), which is what reads it."""


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
        token_id = str(uuid.uuid4())
        now = self.clock.now()
        with self.tx() as conn:
            if (
                account_id is not None
                and conn.execute(sa.select(accounts.c.account_id).where(accounts.c.account_id == account_id)).first()
                is None
            ):
                raise NotFound(f"account {account_id} not found")
            issued = WORKER_TOKENS.issue(conn, token_id, now, name=name, account_id=account_id)
        return issued.plaintext, WorkerToken(token_id, name, account_id, issued.shown, now, None)

    def list_tokens(self) -> list[WorkerToken]:
        with self.read() as conn:
            rows = conn.execute(sa.select(worker_tokens).order_by(worker_tokens.c.created_at)).all()
        return [_to_token(r) for r in rows]

    def revoke_token(self, token_id: str) -> None:
        with self.tx() as conn:
            WORKER_TOKENS.revoke(conn, token_id, self.clock.now())

    def authenticate(self, plaintext: str) -> WorkerToken:
        digest = digest_of(plaintext)
        with self.read() as conn:
            row = conn.execute(sa.select(worker_tokens).where(WORKER_TOKENS.active(digest))).one_or_none()
        if row is None or not WORKER_TOKENS.matches(row, digest):
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
        """The worker's pool and capabilities, checking it belongs to the token; marks it seen.

        A read, and a write only when the worker was last seen `SEEN_EVERY` ago or more: a claim long-poll per
        task would otherwise be a durable transaction of its own (and on SQLite a turn at the one writer lock)
        to move a timestamp nobody reads more precisely than `worker_seen_seconds`."""
        with self.read() as conn:
            row = conn.execute(
                sa.select(workers.c.pool, workers.c.capabilities, workers.c.last_seen_at).where(
                    workers.c.worker_id == worker_id, workers.c.token_id == token.token_id
                )
            ).one_or_none()
        if row is None:
            raise NotFound(f"worker {worker_id} is not registered with this token")
        if self.clock.now() - row.last_seen_at >= SEEN_EVERY:
            self.touch(worker_id)
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
        now = self.clock.now()
        with self.tx() as conn:
            conn.execute(sa.update(workers).where(workers.c.worker_id == worker_id).values(last_seen_at=now))

    def forget_idle(self, older_than: timedelta) -> int:
        with self.tx() as conn:
            result = conn.execute(sa.delete(workers).where(workers.c.last_seen_at < self.clock.now() - older_than))
        return int(result.rowcount or 0)
