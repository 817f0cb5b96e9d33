"""Bulk-seed completed tasks straight into `genmill.store.tables.tasks` (SQLAlchemy Core, executemany in chunks).

The rows look like finished echo tasks of one account, created one microsecond apart in the past, so the
account's indexes grow with the table: the worst case for lookups scoped to that account.
"""

from __future__ import annotations

import json
import random
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from genmill.store.engine import create_engine
from genmill.store.tables import accounts, tasks

CHUNK = 20_000
SAMPLE = 20_000
"""How many seeded ids are kept for lookups (drawn evenly over the whole seeding)."""


def account_id_of(url: str) -> str:
    """The only account of a freshly keyed database."""
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return str(conn.execute(sa.select(accounts.c.account_id)).scalars().first())
    finally:
        engine.dispose()


COLUMNS = [c.name for c in tasks.columns]
_DEFAULTS: dict[str, Any] = {
    c.name: getattr(c.server_default, "arg", None)
    for c in tasks.columns
    if isinstance(getattr(c.server_default, "arg", None), str)
}
"""Columns this module does not name (added by later migrations) take their server default, else NULL."""
_LOG = json.dumps(["echo: returned the payload after 0 ms"])
_CONFIG = json.dumps({"service_mode": "", "webhook_config": {"endpoint": "", "secret": ""}})


def _stamp(moment: datetime, sqlite: bool) -> Any:
    """A time as the driver stores it: SQLAlchemy's SQLite text format, or an aware datetime for PostgreSQL."""
    return moment.replace(tzinfo=None).isoformat(" ", "microseconds") if sqlite else moment


def _row(account_id: str, index: int, created: datetime, sqlite: bool) -> tuple[Any, ...]:
    """One completed echo task, already serialised for the driver (JSON as text), in `COLUMNS` order."""
    started, ended = created + timedelta(milliseconds=1), created + timedelta(milliseconds=3)
    values = {
        "task_id": str(uuid.uuid4()),
        "account_id": account_id,
        "model": "genmill/echo",
        "task_type": "echo",
        "family": "echo",
        "status": "completed",
        "input": f'{{"payload": {{"n": {index}}}, "sleep_ms": 0}}',
        "config": _CONFIG,
        "output": f'{{"echo": {{"n": {index}}}, "started_at": {started.timestamp()}}}',
        "detail": None,
        "logs": _LOG,
        "error": None,
        "price": 0,
        "frozen_credits": 0,
        "consumed_credits": 0,
        "service_mode": "",
        "priority": 0,
        "attempts": 1,
        "max_attempts": 3,
        "lease_id": None,
        "lease_expires_at": None,
        "worker_id": "local-seed-0",
        "retention_seconds": 259200,
        "outputs_deleted_at": None,
        "created_at": _stamp(created, sqlite),
        "started_at": _stamp(started, sqlite),
        "ended_at": _stamp(ended, sqlite),
        "updated_at": _stamp(ended, sqlite),
    }
    return tuple(values[name] if name in values else _DEFAULTS.get(name) for name in COLUMNS)


def _fast_sqlite(dbapi_conn: Any, _record: Any) -> None:
    """Seeding only: no fsync and a large page cache (a crash would just mean seeding again)."""
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA synchronous=OFF")
    cur.execute("PRAGMA cache_size=-262144")
    cur.close()


def seed_tasks(url: str, account_id: str, count: int, *, offset: int = 0, keep: int = SAMPLE) -> list[str]:
    """Insert `count` completed tasks (numbered from `offset`); returns up to `keep` of their ids, spread evenly.

    The statement is SQLAlchemy Core's own INSERT of `tasks`, compiled for the engine's dialect and run with
    executemany in chunks of pre-serialised rows (what the column types would produce), one commit per chunk.
    """
    engine = create_engine(url)
    sqlite = engine.dialect.name == "sqlite"
    compiled = tasks.insert().compile(dialect=engine.dialect, column_keys=COLUMNS)
    order = [COLUMNS.index(name) for name in compiled.positiontup or ()]
    sql = str(compiled)
    step = max(1, count // keep) if keep else count + 1
    kept: list[str] = []
    base = datetime.now(UTC) - timedelta(days=2)
    try:
        if sqlite:
            sa.event.listen(engine, "connect", _fast_sqlite)
        with engine.connect() as conn:
            done = 0
            while done < count:
                size = min(CHUNK, count - done)
                rows = [
                    _row(account_id, offset + i, base + timedelta(microseconds=offset + i), sqlite)
                    for i in range(done, done + size)
                ]
                kept.extend(r[0] for j, r in enumerate(rows, start=done) if j % step == 0)
                if compiled.positional:  # qmark (sqlite3)
                    conn.exec_driver_sql(sql, [tuple(r[k] for k in order) for r in rows])
                else:  # pyformat (psycopg)
                    conn.exec_driver_sql(sql, [dict(zip(COLUMNS, r, strict=True)) for r in rows])
                conn.commit()
                done += size
            conn.exec_driver_sql("ANALYZE tasks" if not sqlite else "ANALYZE")
            conn.commit()
    finally:
        engine.dispose()
    random.shuffle(kept)
    return kept[:keep]
