"""Shared plumbing for the query modules: transactions that announce their task events after commit.

`emit` (in `genmill.store.events`) records outbox events on the connection while a transaction runs;
`Queries.tx()` hands them to the publisher only once the transaction has committed, so nobody is woken to read
a change that might still roll back. Both kinds of transaction turn "the database cannot answer now" into
`DatabaseUnavailable` (503 with Retry-After at the API), after the transaction has rolled back.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext

import sqlalchemy as sa

from genmill.domain.clock import SYSTEM_CLOCK, Clock
from genmill.domain.records import EventRef
from genmill.store.engine import unavailable_as_503, write_lock

PENDING_EVENTS = "genmill.pending_events"
READ_ONLY = "genmill_read_only"
Publisher = Callable[[list[EventRef]], None]


def _no_publisher(events: list[EventRef]) -> None:
    return None


def another_replica_sweeps(conn: sa.Connection, lock_key: int) -> bool:
    """Whether another replica holds this sweep's transaction-scoped advisory lock (PostgreSQL), so this one skips
    its round; SQLite has one writer at a time anyway, so there it is always False."""
    if conn.dialect.name != "postgresql":
        return False
    return not conn.execute(sa.select(sa.func.pg_try_advisory_xact_lock(lock_key))).scalar_one()


class Queries:
    """A query module over one engine. `clock` is where its `now` comes from (see `genmill.domain.clock`)."""

    def __init__(self, engine: sa.Engine, publish: Publisher | None = None, *, clock: Clock = SYSTEM_CLOCK) -> None:
        self.engine = engine
        self.publish: Publisher = publish or _no_publisher
        self.clock = clock
        self._write_lock = write_lock(engine)

    @contextmanager
    def read(self) -> Iterator[sa.Connection]:
        """A read-only transaction: on SQLite a deferred BEGIN, so readers never queue behind writers (WAL)."""
        with unavailable_as_503(), self.engine.connect() as conn:
            conn.execution_options(**{READ_ONLY: True})
            yield conn

    @contextmanager
    def tx(self) -> Iterator[sa.Connection]:
        """A write transaction; on SQLite, threads of this process queue for it on `write_lock` first."""
        with unavailable_as_503(), self._write_lock or nullcontext(), self.engine.begin() as conn:
            conn.info[PENDING_EVENTS] = []
            yield conn
            events: list[EventRef] = conn.info.pop(PENDING_EVENTS, [])
        if events:
            self.publish(events)
