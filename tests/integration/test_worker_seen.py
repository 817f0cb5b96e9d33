"""A remote worker is marked seen by its claims without a write per claim: `last_seen_at` moves when it is
`SEEN_EVERY` old, so a busy worker's long-polls are reads (on SQLite, no turn at the writer lock)."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta
from typing import Any

import sqlalchemy as sa

from genmill.domain.clock import ManualClock
from genmill.store import Store
from genmill.store.workers import SEEN_EVERY


def test_claims_mark_the_worker_seen_once_its_timestamp_is_stale(store: Store) -> None:
    clock = ManualClock()
    clocked = Store(store.engine, clock=clock)
    workers = clocked.workers
    token_secret, token = workers.create_token("gpu hosts")
    worker_id = workers.register(token, "gpu-1", [("genmill/echo", "echo")])
    registered_at = clock.now()
    writes: Counter[str] = Counter()

    def count(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if statement.lstrip().upper().startswith("UPDATE WORKERS"):
            writes["updates"] += 1

    sa.event.listen(store.engine, "before_cursor_execute", count)
    try:
        clock.advance(SEEN_EVERY.total_seconds() / 2)
        assert workers.worker(token, worker_id) == ("public", [("genmill/echo", "echo")])
        assert writes["updates"] == 0
        seen = {w.worker_id: w.last_seen_at for w in clocked.ops.workers_seen(timedelta(hours=1))}
        assert seen[worker_id] == registered_at

        clock.advance(SEEN_EVERY.total_seconds())
        workers.worker(token, worker_id)
        assert writes["updates"] == 1
        seen = {w.worker_id: w.last_seen_at for w in clocked.ops.workers_seen(timedelta(hours=1))}
        assert seen[worker_id] == clock.now()
    finally:
        sa.event.remove(store.engine, "before_cursor_execute", count)
    assert token_secret
