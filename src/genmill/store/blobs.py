"""The index of stored objects: who owns each, when it was made, when it expires, whether it is gone.

The bytes live in a `BlobStore`; this table is what makes expiry, ownership and the "generated within 3 hours"
rule answerable without listing a bucket.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa

from genmill.domain.records import Blob
from genmill.store.base import Queries
from genmill.store.tables import blobs, tasks


def _to_blob(row: sa.Row[Any]) -> Blob:
    m = row._mapping
    return Blob(
        m["key"],
        m["account_id"],
        m["task_id"],
        m["kind"],
        m["content_type"],
        m["size"],
        m["created_at"],
        m["expires_at"],
        m["deleted_at"],
    )


class BlobIndex(Queries):
    def record(self, blob: Blob) -> None:
        with self.tx() as conn:
            conn.execute(sa.insert(blobs).values(**blob.__dict__))

    def get(self, key: str) -> Blob | None:
        with self.read() as conn:
            row = conn.execute(sa.select(blobs).where(blobs.c.key == key)).one_or_none()
        return _to_blob(row) if row is not None else None

    def forget(self, key: str) -> None:
        """Remove a file's row: for a file stored for a request that was then refused, as if never stored."""
        with self.tx() as conn:
            conn.execute(sa.delete(blobs).where(blobs.c.key == key))

    def due_for_deletion(self, now: datetime, *, limit: int = 500) -> list[Blob]:
        with self.read() as conn:
            rows = conn.execute(
                sa.select(blobs)
                .where(blobs.c.deleted_at.is_(None), blobs.c.expires_at <= now)
                .order_by(blobs.c.expires_at)
                .limit(limit)
            ).all()
        return [_to_blob(r) for r in rows]

    def mark_deleted(self, blob: Blob, now: datetime) -> None:
        """Record the deletion, and on the owning task say that its outputs were removed."""
        with self.tx() as conn:
            conn.execute(sa.update(blobs).where(blobs.c.key == blob.key).values(deleted_at=now))
            if blob.task_id and blob.kind == "output":
                conn.execute(
                    sa.update(tasks)
                    .where(tasks.c.task_id == blob.task_id, tasks.c.outputs_deleted_at.is_(None))
                    .values(outputs_deleted_at=now)
                )
