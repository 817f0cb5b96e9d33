"""PostgreSQL's one-statement claim (`genmill.store.claims.claim_statement`): it leases the task the fairness rule
picks, and locks no other row while its transaction is open (other claimers skip only that one)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from tests.integration.test_store_tasks import CAPS, new_task

from genmill.domain.states import TaskStatus
from genmill.store import Store
from genmill.store.claims import claim_params, pg_claim

LOCKABLE_PENDING = sa.text(
    "SELECT count(*) FROM (SELECT task_id FROM tasks WHERE status = 'pending' FOR UPDATE SKIP LOCKED) AS free"
)


def test_the_claim_statement_locks_only_the_task_it_leases(pg_store: Store) -> None:
    busy = pg_store.accounts.create_account("busy", credits=10_000, max_concurrency=10)
    quiet = pg_store.accounts.create_account("quiet", credits=10_000, max_concurrency=10)
    for _ in range(3):
        pg_store.tasks.create(new_task(busy.account_id))
    quiet_task = pg_store.tasks.create(new_task(quiet.account_id))[0].task_id
    assert pg_store.leases.claim_next_task("w0", CAPS, 30) is not None  # busy now has one processing
    now = datetime.now(UTC)
    caps = tuple(CAPS)
    params = claim_params(
        caps,
        status=TaskStatus.PROCESSING.value,
        lease_id="lease-1",
        lease_expires_at=now + timedelta(seconds=30),
        worker_id="w1",
        now=now,
        pool="public",
    )
    with pg_store.engine.connect() as claiming, pg_store.engine.connect() as other:
        row = claiming.execute(pg_claim(caps), params).one()
        assert row.task_id == quiet_task  # the idle account first, ahead of busy's older tasks
        assert row.status == TaskStatus.PROCESSING.value and row.attempts == 1 and row.lease_id == "lease-1"
        # Busy's two pending tasks stay claimable by others while this transaction is open.
        assert other.execute(LOCKABLE_PENDING).scalar_one() == 2
        other.rollback()
        claiming.rollback()
