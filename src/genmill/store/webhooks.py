"""Webhook deliveries: claim the due ones (in order per task), record every attempt, list and replay.

A delivery is claimed with a short lock (`locked_until`) so a crashed dispatcher's claim lapses; on PostgreSQL
`SKIP LOCKED` lets several replicas dispatch at once. A delivery is only claimable when no earlier delivery of
the same task is still pending, which keeps each task's events in order at the receiver. The dispatcher can
leave some accounts out of a claim (`exclude_accounts`) and serve others only when nobody else is waiting
(`defer_accounts`): that is how it keeps one account's slow receivers from taking all of its sender threads.
"""

from __future__ import annotations

import base64
import secrets
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from genmill.domain.webhooks import Decision, DeliveryState
from genmill.errors import InvalidRequest, NotFound
from genmill.store.base import Queries
from genmill.store.tables import accounts, task_events, webhook_attempts, webhook_deliveries


def new_signing_secret() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


@dataclass(frozen=True)
class DueDelivery:
    delivery_id: str
    task_id: str
    endpoint: str
    attempts: int
    snapshot: dict[str, Any]
    task_secret: str
    signing_secret: str
    account_id: str


class WebhookStore(Queries):
    def claim_due(
        self,
        dispatcher_id: str,
        *,
        limit: int = 1,
        lock_seconds: float = 60,
        exclude_accounts: Collection[str] = (),
        defer_accounts: Collection[str] = (),
    ) -> list[DueDelivery]:
        """Lock and return up to `limit` due deliveries, oldest due first, none of `exclude_accounts`; those of
        `defer_accounts` only when no other account has one due (both looked for in one transaction)."""
        now = self.clock.now()
        d = webhook_deliveries.alias("d")
        earlier = webhook_deliveries.alias("earlier")
        blocked = (
            sa.select(earlier.c.delivery_id)
            .where(
                earlier.c.task_id == d.c.task_id,
                earlier.c.state == DeliveryState.PENDING.value,
                earlier.c.event_id < d.c.event_id,
            )
            .exists()
        )
        due = sa.and_(
            d.c.state == DeliveryState.PENDING.value,
            d.c.next_attempt_at <= now,
            sa.or_(d.c.locked_until.is_(None), d.c.locked_until < now),
            ~blocked,
        )
        excluded = set(exclude_accounts)
        passes = [excluded | set(defer_accounts), excluded] if set(defer_accounts) - excluded else [excluded]

        def select(leave_out: set[str]) -> sa.Select[Any]:
            where = sa.and_(due, d.c.account_id.not_in(sorted(leave_out))) if leave_out else due
            return (
                sa.select(
                    d.c.delivery_id, d.c.task_id, d.c.endpoint, d.c.attempts, d.c.account_id, task_events.c.snapshot
                )
                .join(task_events, task_events.c.event_id == d.c.event_id)
                .where(where)
                .order_by(d.c.next_attempt_at, d.c.event_id)
                .limit(limit)
                .with_for_update(of=d, skip_locked=True)
            )

        with self.tx() as conn:
            rows: list[sa.Row[Any]] = []
            for leave_out in passes:
                rows = list(conn.execute(select(leave_out)).all())
                if rows:
                    break
            claimed = []
            for row in rows:
                conn.execute(
                    sa.update(webhook_deliveries)
                    .where(webhook_deliveries.c.delivery_id == row.delivery_id)
                    .values(locked_until=now + timedelta(seconds=lock_seconds), locked_by=dispatcher_id)
                )
                hook = (row.snapshot.get("config") or {}).get("webhook_config") or {}
                claimed.append(
                    DueDelivery(
                        row.delivery_id,
                        row.task_id,
                        row.endpoint,
                        row.attempts,
                        row.snapshot,
                        str(hook.get("secret") or ""),
                        self._signing_secret(conn, row.account_id),
                        row.account_id,
                    )
                )
        return claimed

    @staticmethod
    def _signing_secret(conn: sa.Connection, account_id: str) -> str:
        secret = conn.execute(
            sa.select(accounts.c.webhook_signing_secret).where(accounts.c.account_id == account_id)
        ).scalar_one_or_none()
        if secret:
            return str(secret)
        secret = new_signing_secret()
        conn.execute(
            sa.update(accounts).where(accounts.c.account_id == account_id).values(webhook_signing_secret=secret)
        )
        return secret

    def account_signing_secret(self, account_id: str) -> str:
        with self.tx() as conn:
            return self._signing_secret(conn, account_id)

    def record_attempt(
        self,
        delivery_id: str,
        *,
        status_code: int | None,
        latency_ms: int,
        error: str | None,
        decision: Decision,
        at: datetime,
        settled_at: datetime | None = None,
    ) -> None:
        """Record one attempt made at `at`; the next retry counts from when the answer came (`settled_at`)."""
        settled = settled_at or at
        with self.tx() as conn:
            conn.execute(
                sa.insert(webhook_attempts).values(
                    delivery_id=delivery_id,
                    attempted_at=at,
                    status_code=status_code,
                    latency_ms=latency_ms,
                    error=(error or None) and error[:500],
                )
            )
            values: dict[str, Any] = {
                "attempts": webhook_deliveries.c.attempts + 1,
                "state": decision.state.value,
                "locked_until": None,
                "locked_by": None,
                "last_status_code": status_code,
                "last_error": (error or None) and error[:500],
            }
            if decision.state is DeliveryState.DELIVERED:
                values["delivered_at"] = settled
            if decision.retry_in is not None:
                values["next_attempt_at"] = settled + decision.retry_in
            conn.execute(
                sa.update(webhook_deliveries).where(webhook_deliveries.c.delivery_id == delivery_id).values(**values)
            )

    def next_due_at(self) -> datetime | None:
        with self.read() as conn:
            value: datetime | None = conn.execute(
                sa.select(sa.func.min(webhook_deliveries.c.next_attempt_at)).where(
                    webhook_deliveries.c.state == DeliveryState.PENDING.value
                )
            ).scalar_one_or_none()
        return value

    def for_task(self, account_id: str, task_id: str) -> list[dict[str, Any]]:
        with self.read() as conn:
            rows = conn.execute(
                sa.select(webhook_deliveries, task_events.c.status.label("task_status"), task_events.c.kind)
                .join(task_events, task_events.c.event_id == webhook_deliveries.c.event_id)
                .where(webhook_deliveries.c.task_id == task_id, webhook_deliveries.c.account_id == account_id)
                .order_by(webhook_deliveries.c.event_id)
            ).all()
            ids = [r.delivery_id for r in rows]
            attempts = conn.execute(
                sa.select(webhook_attempts)
                .where(webhook_attempts.c.delivery_id.in_(ids or [""]))
                .order_by(webhook_attempts.c.attempt_id)
            ).all()
        by_delivery: dict[str, list[Any]] = {}
        for a in attempts:
            by_delivery.setdefault(a.delivery_id, []).append(a)
        return [{"row": r, "attempts": by_delivery.get(r.delivery_id, [])} for r in rows]

    def replay(self, account_id: str, task_id: str, delivery_id: str) -> None:
        """Send a settled delivery again (same webhook-id, so receivers can de-duplicate)."""
        with self.tx() as conn:
            row = conn.execute(
                sa.select(webhook_deliveries.c.state, webhook_deliveries.c.event_id)
                .where(
                    webhook_deliveries.c.delivery_id == delivery_id,
                    webhook_deliveries.c.task_id == task_id,
                    webhook_deliveries.c.account_id == account_id,
                )
                .with_for_update()
            ).one_or_none()
            if row is None:
                raise NotFound(f"delivery {delivery_id} not found")
            if row.state == DeliveryState.PENDING.value:
                raise InvalidRequest(f"delivery {delivery_id} is still pending; it will be sent on its schedule")
            if (
                conn.execute(sa.select(task_events.c.event_id).where(task_events.c.event_id == row.event_id)).first()
                is None
            ):
                raise InvalidRequest(f"delivery {delivery_id} is too old to replay: its event was removed")
            # A replay gets the whole retry schedule again; its earlier attempts stay in the history.
            conn.execute(
                sa.update(webhook_deliveries)
                .where(webhook_deliveries.c.delivery_id == delivery_id)
                .values(
                    state=DeliveryState.PENDING.value,
                    attempts=0,
                    next_attempt_at=self.clock.now(),
                    locked_until=None,
                    locked_by=None,
                )
            )
