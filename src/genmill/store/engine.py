"""Engine construction: one place that knows the differences between SQLite and PostgreSQL.

SQLite runs in WAL mode with `BEGIN IMMEDIATE` transactions, so a read-check-write transaction (freeze credits
and insert the task; claim the next task) holds the write lock from its first statement and cannot deadlock on
lock upgrade. PostgreSQL gets the same guarantees from `SELECT ... FOR UPDATE [SKIP LOCKED]` in the queries.

Both engines share one JSON codec (`dump_json`, `load_json`) so that a JSON column holds, and gives back, only what
any answer can encode, and one rule (`is_unavailable`) for which driver errors mean "the database cannot answer
now" (a 503 with Retry-After) rather than a bug.
"""

from __future__ import annotations

import json
import re
import sqlite3
import threading
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import make_url

from genmill.domain.boundary import scrub_json
from genmill.errors import DatabaseUnavailable

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


_NEEDS_SCRUB = re.compile(r"\\u(?:0000|[dD][89a-fA-F])")
_NEEDS_SCRUB_BYTES = re.compile(rb"\\u(?:0000|[dD][89a-fA-F])")
"""`json.dumps` writes NUL and every surrogate as a `\\u` escape: text without one needs no scrubbing (a valid
emoji, written as an escaped pair, sends a value down the exact slow path for nothing, which is harmless)."""


def dump_json(value: Any) -> str:
    """A JSON column's text. NUL, lone surrogates and NaN/Infinity cannot be stored by PostgreSQL and cannot be
    shown by any answer, so they are scrubbed (U+FFFD, null) here rather than failing the transaction: the API
    refuses them from clients already, and this keeps a backend's odd output or log line from wedging a task."""
    try:
        text = json.dumps(value, allow_nan=False)
    except ValueError:  # NaN or Infinity somewhere
        return json.dumps(scrub_json(value), allow_nan=False)
    return json.dumps(scrub_json(value), allow_nan=False) if _NEEDS_SCRUB.search(text) else text


def load_json(data: str | bytes) -> Any:
    """A JSON column's value, scrubbed if the stored text holds what no answer could encode (a row written before
    `dump_json` scrubbed, on SQLite), so that such a row can never make GET, history or a claim fail."""
    value = json.loads(data)
    needs = _NEEDS_SCRUB.search(data) if isinstance(data, str) else _NEEDS_SCRUB_BYTES.search(data)
    return scrub_json(value) if needs else value


_SQLITE_UNAVAILABLE = (
    "database is locked",
    "database table is locked",
    "unable to open database",
    "disk i/o error",
    "database or disk is full",
)


def is_unavailable(exc: BaseException) -> bool:
    """Whether `exc` means the database cannot answer now (down, restarting, unreachable, locked, out of
    connections) rather than that a statement is wrong. On PostgreSQL every OperationalError is of that kind
    (connection refused, admin shutdown, "the database system is starting up", deadlock); SQLite also calls
    syntax errors and missing tables operational, so there only its own words for "try again" count."""
    if isinstance(exc, sa.exc.TimeoutError):  # every pooled connection busy for the pool's whole timeout
        return True
    if not isinstance(exc, sa.exc.DBAPIError):
        return False
    if exc.connection_invalidated:
        return True
    if isinstance(exc.orig, sqlite3.Error):
        message = str(exc.orig).lower()
        return isinstance(exc, sa.exc.OperationalError) and any(m in message for m in _SQLITE_UNAVAILABLE)
    return isinstance(exc, sa.exc.OperationalError | sa.exc.InterfaceError)


@contextmanager
def unavailable_as_503() -> Iterator[None]:
    """Translate "the database cannot answer now" into `DatabaseUnavailable` (503, Retry-After). The transaction
    it interrupted rolled back, so nothing was half-written."""
    try:
        yield
    except (sa.exc.DBAPIError, sa.exc.TimeoutError) as exc:
        if not is_unavailable(exc):
            raise
        orig = getattr(exc, "orig", None) or exc
        reason = (str(orig).strip().splitlines() or [type(orig).__name__])[0]
        raise DatabaseUnavailable(reason) from exc


def create_engine(url: str) -> sa.Engine:
    parsed = make_url(url)
    codec: dict[str, Any] = {"json_serializer": dump_json, "json_deserializer": load_json}
    if parsed.get_backend_name() != "sqlite":
        return sa.create_engine(
            url,
            pool_size=POOL_SIZE,
            max_overflow=POOL_OVERFLOW,
            pool_recycle=1800,
            pool_pre_ping=True,
            future=True,
            **codec,
        )
    pool: dict[str, Any] = {}
    if parsed.database and parsed.database != ":memory:":
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        pool = {"pool_size": POOL_SIZE, "max_overflow": POOL_OVERFLOW}
    engine = sa.create_engine(
        url, connect_args={"check_same_thread": False, "timeout": 30}, future=True, **codec, **pool
    )
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
