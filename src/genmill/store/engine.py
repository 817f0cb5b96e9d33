"""Engine construction: one place that knows the differences between SQLite and PostgreSQL.

SQLite runs in WAL mode with `BEGIN IMMEDIATE` transactions, so a read-check-write transaction (freeze credits
and insert the task; claim the next task) holds the write lock from its first statement and cannot deadlock on
lock upgrade. PostgreSQL gets the same guarantees from `SELECT ... FOR UPDATE [SKIP LOCKED]` in the queries.
"""

from __future__ import annotations

import threading
import weakref
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import make_url

POOL_SIZE = 20
"""Connections kept open per process. The API serves sync work from a 40-thread pool and the workers, reaper
and webhook dispatcher add their own threads; with SQLAlchemy's default of 5 (+10 overflow) requests queued for
a connection rather than for the database."""
POOL_OVERFLOW = 20

_WRITE_LOCKS: weakref.WeakKeyDictionary[sa.Engine, threading.Lock] = weakref.WeakKeyDictionary()


def write_lock(engine: sa.Engine) -> threading.Lock | None:
    """The lock that serialises this process's write transactions on a SQLite engine (None elsewhere).

    SQLite admits one writer at a time. Left to SQLite, the threads that lose the race sleep in its busy
    handler (1 to 100 ms between retries) while the lock is often already free again, which made create and
    claim latencies long-tailed under load; queueing on a Python lock first hands the write lock over at once.
    Other processes on the same file (the CLI, say) still meet the busy handler, which remains as the backstop.
    """
    return _WRITE_LOCKS.get(engine)


def create_engine(url: str) -> sa.Engine:
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return sa.create_engine(
            url, pool_size=POOL_SIZE, max_overflow=POOL_OVERFLOW, pool_recycle=1800, pool_pre_ping=True, future=True
        )
    pool: dict[str, Any] = {}
    if parsed.database and parsed.database != ":memory:":
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        pool = {"pool_size": POOL_SIZE, "max_overflow": POOL_OVERFLOW}
    engine = sa.create_engine(url, connect_args={"check_same_thread": False, "timeout": 30}, future=True, **pool)
    _WRITE_LOCKS[engine] = threading.Lock()

    @sa.event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Let SQLAlchemy, not the driver, decide when transactions begin (see "begin" below).
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.close()

    @sa.event.listens_for(engine, "begin")
    def _on_begin(conn: sa.Connection) -> None:
        # Reads (Queries.read) take a snapshot without the write lock; everything else writes, and takes the
        # lock up front so a read-check-write transaction cannot fail on lock upgrade.
        read_only = conn.get_execution_options().get("genmill_read_only", False)
        conn.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")

    return engine
