"""Alembic environment: migrations run against the URL set by `genmill.store.migrate`."""

from __future__ import annotations

from alembic import context

from genmill.store.engine import create_engine
from genmill.store.tables import metadata

url = context.config.get_main_option("sqlalchemy.url")
assert url
engine = create_engine(url)
with engine.connect() as connection:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()
    connection.commit()
engine.dispose()
