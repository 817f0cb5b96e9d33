"""Alembic environment: migrations run against the URL set by `genmill.store.migrate`."""

from __future__ import annotations

from alembic import context

from genmill.store.engine import create_engine
from genmill.store.tables import metadata

url = context.config.get_main_option("sqlalchemy.url")
assert url
engine = create_engine(url)
with engine.connect() as connection:
    if connection.dialect.name == "postgresql":
        # Replicas starting together on a fresh database take turns; the later ones find nothing to do.
        connection.exec_driver_sql("SELECT pg_advisory_lock(1735288173)")
        connection.commit()
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
