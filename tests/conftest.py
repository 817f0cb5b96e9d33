"""Shared fixtures: real SQLite files and a real PostgreSQL database per test session."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from genmill.store import Store
from genmill.store.migrate import upgrade
from genmill.store.tables import metadata

os.environ.setdefault("HF_HUB_OFFLINE", "1")

PG_ADMIN_URL = os.environ.get("GENMILL_TEST_PG_ADMIN", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    """A fresh PostgreSQL database, migrated, dropped at the end of the session."""
    name = f"genmill_test_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    except sa.exc.OperationalError as exc:  # pragma: no cover - depends on the machine
        pytest.fail(f"PostgreSQL is required on 127.0.0.1:5432 ({exc}); .ci/run starts it")
    url = PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    upgrade(url)
    yield url
    with admin.connect() as conn:
        conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    admin.dispose()


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
def sqlite_store(tmp_path: pytest.TempPathFactory) -> Iterator[Store]:
    url = f"sqlite:///{tmp_path}/genmill.db"  # type: ignore[operator]
    upgrade(url)
    s = Store.from_url(url)
    yield s
    s.close()
