"""The shipped migrations build exactly the tables the code declares, on SQLite and PostgreSQL."""

from __future__ import annotations

import uuid
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from tests.conftest import PG_ADMIN_URL

from genmill.store.migrate import alembic_config, check, upgrade


def roundtrip(url: str) -> None:
    upgrade(url)
    check(url)  # raises if the models and the migrated schema differ
    command.downgrade(alembic_config(url), "base")
    upgrade(url)
    check(url)


def test_sqlite(tmp_path: Path) -> None:
    roundtrip(f"sqlite:///{tmp_path / 'm.db'}")


def test_postgresql() -> None:
    name = f"genmill_migrate_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    try:
        roundtrip(PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}")
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()
