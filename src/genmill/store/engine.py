"""Engine construction: one place that knows the differences between SQLite and PostgreSQL.

SQLite runs in WAL mode with `BEGIN IMMEDIATE` transactions, so a read-check-write transaction (freeze credits
and insert the task; claim the next task) holds the write lock from its first statement and cannot deadlock on
lock upgrade. PostgreSQL gets the same guarantees from `SELECT ... FOR UPDATE [SKIP LOCKED]` in the queries.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import make_url


def create_engine(url: str) -> sa.Engine:
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return sa.create_engine(url, pool_pre_ping=True, future=True)
    if parsed.database and parsed.database != ":memory:":
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    engine = sa.create_engine(url, connect_args={"check_same_thread": False, "timeout": 30}, future=True)

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
