"""Shared fixtures: real SQLite files and a real PostgreSQL database per test session."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest

from genmill.store import Store
from genmill.store.migrate import upgrade
from genmill.store.tables import metadata
from genmill.testing.postgres import PostgresUnreachable, temporary_database

os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    """A fresh PostgreSQL database, migrated, dropped at the end of the session."""
    with ExitStack() as stack:
        try:
            url = stack.enter_context(temporary_database(prefix="genmill_test_"))
        except PostgresUnreachable as exc:  # pragma: no cover - depends on the machine
            pytest.fail(f"PostgreSQL is required ({exc}); .ci/run starts it")
        upgrade(url)
        yield url


def _truncate(store: Store) -> None:
    with store.engine.begin() as conn:
        for table in reversed(metadata.sorted_tables):
            conn.execute(table.delete())


@pytest.fixture(params=["sqlite", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Store]:
    """The same behaviour suite runs against every engine."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('db') / 'genmill.db'}"
        upgrade(url)
    else:
        url = request.getfixturevalue("pg_url")
    s = Store.from_url(url)
    _truncate(s)
    yield s
    _truncate(s)
    s.close()


@pytest.fixture
def pg_store(pg_url: str) -> Iterator[Store]:
    """An empty store on the session's PostgreSQL database, for behaviour only PostgreSQL has."""
    s = Store.from_url(pg_url)
    _truncate(s)
    yield s
    _truncate(s)
    s.close()


@pytest.fixture
def sqlite_store(tmp_path: Path) -> Iterator[Store]:
    url = f"sqlite:///{tmp_path}/genmill.db"
    upgrade(url)
    s = Store.from_url(url)
    yield s
    s.close()
