"""Several replicas on one PostgreSQL database: events cross replicas, one sweeper at a time."""

from __future__ import annotations

import base64
from pathlib import Path

from tests.support import PillowUpscale, png_bytes

from genmill.app import Runtime
from genmill.domain.clock import ManualClock
from genmill.settings import Settings
from genmill.store import Store


def replica(pg_url: str, data: Path, clock: ManualClock | None = None) -> Runtime:
    settings = Settings(database_url=pg_url, data_dir=data, workers=1)
    store = None if clock is None else Store.from_url(pg_url, clock=clock)
    return Runtime(settings, backends=[PillowUpscale()], store=store)


def test_a_task_created_on_one_replica_wakes_workers_on_another(pg_url: str, tmp_path: Path) -> None:
    a, b = replica(pg_url, tmp_path), replica(pg_url, tmp_path)
    assert b.listener is not None
    b.listener.start()
    try:
        assert b.listener.listening.wait(10)
        seen = b.bus.workers.generation
        account = a.store.accounts.create_account("x", credits=10**6)
        task, _ = a.tasks.create_task(
            account, "Qubico/image-toolkit", "upscale", {"image": base64.b64encode(png_bytes(4, 4)).decode()}, None
        )
        assert b.bus.workers.wait(seen, timeout=10)  # woken by NOTIFY, not by polling
        assert b.workers[0].run_once()  # and replica B's worker runs the task replica A accepted
        assert a.store.tasks.get(account.account_id, task.task_id).status.value == "completed"
    finally:
        b.listener.stop()
        a.store.close()
        b.store.close()


def test_only_one_replica_sweeps_at_a_time(pg_url: str, tmp_path: Path) -> None:
    from genmill.store.leases import SWEEP_LOCK_KEY

    clock = ManualClock()
    a, b = replica(pg_url, tmp_path, clock), replica(pg_url, tmp_path, clock)
    try:
        account = a.store.accounts.create_account("y", credits=10**6)
        task, _ = a.tasks.create_task(
            account, "Qubico/image-toolkit", "upscale", {"image": base64.b64encode(png_bytes(4, 4)).decode()}, None
        )
        assert a.store.leases.claim_next_task("dies", [("Qubico/image-toolkit", "upscale")], 0.05) is not None
        clock.advance(0.1)  # the lease has expired: there is work for a sweeper
        with a.store.engine.begin() as conn:
            conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({SWEEP_LOCK_KEY})")
            # While replica A holds the sweep lock, replica B's sweep returns at once and touches nothing.
            assert b.store.leases.sweep_expired_leases().requeued == []
        assert b.store.leases.sweep_expired_leases().requeued == [task.task_id]
    finally:
        a.store.close()
        b.store.close()
