"""The shipped migrations build exactly the tables the code declares, on SQLite and PostgreSQL."""

from __future__ import annotations

from pathlib import Path

from alembic import command

from genmill.store.migrate import alembic_config, check, upgrade
from genmill.testing.postgres import temporary_database


def roundtrip(url: str) -> None:
    upgrade(url)
    check(url)  # raises if the models and the migrated schema differ
    command.downgrade(alembic_config(url), "base")
    upgrade(url)
    check(url)


def test_sqlite(tmp_path: Path) -> None:
    roundtrip(f"sqlite:///{tmp_path / 'm.db'}")


def test_postgresql() -> None:
    with temporary_database(prefix="genmill_migrate_") as url:
        roundtrip(url)
