"""Persistence: SQLAlchemy Core tables and queries, identical on SQLite and PostgreSQL."""

from __future__ import annotations

import sqlalchemy as sa

from genmill.domain.clock import SYSTEM_CLOCK, Clock
from genmill.store.accounts import AccountStore
from genmill.store.base import Publisher
from genmill.store.blobs import BlobIndex
from genmill.store.engine import create_engine
from genmill.store.events import EventLog
from genmill.store.leases import LeaseStore
from genmill.store.operators import OperatorStore
from genmill.store.ops import OpsViews
from genmill.store.tasks import TaskStore
from genmill.store.waits import PendingWaits
from genmill.store.webhooks import WebhookStore
from genmill.store.workers import WorkerRegistry


class Store:
    """The composition of the query modules over one engine.

    `clock` gives every query its `now` (real UTC by default); a test passes a `ManualClock` and advances it to
    expire a lease or bring a webhook retry due, instead of sleeping. `group_commit` lets concurrent creates
    share a transaction and its commit (`genmill.store.group_commit`).
    """

    def __init__(
        self,
        engine: sa.Engine,
        *,
        max_staged_per_account: int = 50,
        clock: Clock = SYSTEM_CLOCK,
        group_commit: bool = False,
    ) -> None:
        self.engine = engine
        self.clock = clock
        self.accounts = AccountStore(engine, clock=clock)
        self.tasks = TaskStore(
            engine, max_staged_per_account=max_staged_per_account, clock=clock, group_commit=group_commit
        )
        self.leases = LeaseStore(engine, clock=clock)
        self.blobs = BlobIndex(engine, clock=clock)
        self.events = EventLog(engine, clock=clock)
        self.webhooks = WebhookStore(engine, clock=clock)
        self.workers = WorkerRegistry(engine, clock=clock)
        self.waits = PendingWaits(engine, clock=clock)
        self.operators = OperatorStore(engine, clock=clock)
        self.ops = OpsViews(engine, clock=clock)

    def set_publisher(self, publish: Publisher) -> None:
        """Announce committed task events to in-process listeners (wake-ups, webhooks, waiters)."""
        for queries in (self.tasks, self.leases, self.events, self.webhooks, self.waits):
            queries.publish = publish

    @classmethod
    def from_url(
        cls, url: str, *, max_staged_per_account: int = 50, clock: Clock = SYSTEM_CLOCK, group_commit: bool = False
    ) -> Store:
        return cls(
            create_engine(url), max_staged_per_account=max_staged_per_account, clock=clock, group_commit=group_commit
        )

    def close(self) -> None:
        self.engine.dispose()


__all__ = [
    "AccountStore",
    "BlobIndex",
    "EventLog",
    "LeaseStore",
    "OperatorStore",
    "OpsViews",
    "PendingWaits",
    "Store",
    "TaskStore",
    "WebhookStore",
    "WorkerRegistry",
    "create_engine",
]
