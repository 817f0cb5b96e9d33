"""Alembic migrations shipped inside the package, run programmatically (no alembic.ini needed)."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config

MIGRATIONS_DIR = Path(__file__).parent / "migrations"


def alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def upgrade(url: str, revision: str = "head") -> None:
    command.upgrade(alembic_config(url), revision)


def check(url: str) -> None:
    """Raise if the tables in `genmill.store.tables` differ from what the migrations build."""
    command.check(alembic_config(url))


@functools.cache
def head_revision() -> str | None:
    """The newest migration this package ships (read once: the files do not change while the process runs)."""
    from alembic.script import ScriptDirectory

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    return ScriptDirectory.from_config(config).get_current_head()


def revisions(engine: Any) -> tuple[str | None, str | None]:
    """(the database's current revision, the newest the package ships): equal when migrations are at head."""
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as conn:
        current = MigrationContext.configure(conn).get_current_revision()
    return current, head_revision()
