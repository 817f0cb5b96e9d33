"""A throw-away PostgreSQL database: created under a unique name, handed over as a URL, dropped afterwards.

genmill's own tests and benchmarks run the store on PostgreSQL as well as SQLite, each run in databases of its
own so that runs never see each other's rows. The admin URL names a role allowed to create databases, e.g.
`postgresql+psycopg://postgres@127.0.0.1:5432/postgres` (the default, or `GENMILL_TEST_PG_ADMIN`).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import sqlalchemy as sa

DEFAULT_ADMIN_URL = os.environ.get("GENMILL_TEST_PG_ADMIN", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")


class PostgresUnreachable(RuntimeError):
    """PostgreSQL did not answer at the admin URL (or its driver is not installed); the message says which."""


def _admin_engine(admin_url: str) -> sa.Engine:
    try:
        return sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    except ImportError as exc:
        raise PostgresUnreachable(
            f"no PostgreSQL driver for {_where(admin_url)} ({exc}); install genmill[postgres]"
        ) from exc


def _where(admin_url: str) -> str:
    return sa.make_url(admin_url).render_as_string(hide_password=True)


def unreachable_reason(admin_url: str = DEFAULT_ADMIN_URL) -> str:
    """Empty when PostgreSQL answers at `admin_url`, else why not (to skip what needs it, or to say so)."""
    try:
        engine = _admin_engine(admin_url)
        try:
            with engine.connect() as conn:
                conn.exec_driver_sql("SELECT 1")
        finally:
            engine.dispose()
        return ""
    except Exception as exc:
        return f"PostgreSQL unavailable at {_where(admin_url)}: {type(exc).__name__}: {str(exc)[:200]}"


@contextmanager
def temporary_database(admin_url: str = DEFAULT_ADMIN_URL, *, prefix: str = "genmill_test_") -> Iterator[str]:
    """Create an empty database named `prefix` plus a random suffix, yield its URL, and drop it on the way out
    (closing any connection still open to it). Raises `PostgresUnreachable` when it cannot be created."""
    name = f"{prefix}{uuid.uuid4().hex[:8]}"
    admin = _admin_engine(admin_url)
    try:
        try:
            with admin.connect() as conn:
                conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
        except sa.exc.OperationalError as exc:
            raise PostgresUnreachable(f"PostgreSQL did not answer at {_where(admin_url)} ({exc})") from exc
        try:
            yield sa.make_url(admin_url).set(database=name).render_as_string(hide_password=False)
        finally:
            with admin.connect() as conn:
                conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        admin.dispose()
