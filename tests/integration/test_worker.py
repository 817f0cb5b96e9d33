"""The worker runtime on a real SQLite store: heartbeats keep long tasks alive, dead workers lose their tasks."""

from __future__ import annotations

import base64
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.support import PillowUpscale, png_bytes

from genmill.app import Runtime
from genmill.domain.clock import ManualClock
from genmill.domain.records import Account
from genmill.domain.states import TaskStatus
from genmill.settings import Settings
from genmill.store import Store
from genmill.store.migrate import upgrade
from genmill.worker.pool import Reaper

UPSCALE = ("Qubico/image-toolkit", "upscale")


def build_runtime(tmp_path: Path, clock: ManualClock | None = None) -> Runtime:
    """A runtime; with `clock`, its store reads time from it (the workers' heartbeat timing stays real)."""
    settings = Settings(
        data_dir=tmp_path,
        public_url="http://testserver",
        workers=1,
        lease_seconds=0.6,
        heartbeat_seconds=0.1,
        max_attempts=2,
    )
    if clock is None:
        return Runtime(settings, backends=[PillowUpscale()])
    url = settings.resolved_database_url()
    upgrade(url)
    store = Store.from_url(url, max_staged_per_account=settings.max_staged_per_account, clock=clock)
    return Runtime(settings, backends=[PillowUpscale()], store=store)


@pytest.fixture
def runtime(tmp_path: Path) -> Iterator[Runtime]:
    rt = build_runtime(tmp_path)
    yield rt
    rt.store.close()


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def clocked_runtime(tmp_path: Path, clock: ManualClock) -> Iterator[Runtime]:
    rt = build_runtime(tmp_path, clock)
    yield rt
    rt.store.close()


def create(rt: Runtime, account: Account) -> str:
    image = base64.b64encode(png_bytes(6, 4)).decode()
    task, _ = rt.tasks.create_task(account, *UPSCALE, {"image": image, "scale": 2}, None)
    return task.task_id


def test_heartbeats_keep_a_slow_task_alive(runtime: Runtime) -> None:
    account = runtime.store.accounts.create_account("a", credits=10**9)
    task_id = create(runtime, account)
    backend = runtime.backends.backend_for(*UPSCALE)
    assert isinstance(backend, PillowUpscale)
    backend.gate.clear()  # hold the task in processing for longer than its lease
    worker = threading.Thread(target=runtime.workers[0].run_once)
    worker.start()
    time.sleep(1.5)
    reaper = Reaper(runtime.store, runtime.files)
    reaper.sweep()
    assert runtime.store.tasks.get(account.account_id, task_id).status is TaskStatus.PROCESSING
    backend.gate.set()
    worker.join(10)
    done = runtime.store.tasks.get(account.account_id, task_id)
    assert done.status is TaskStatus.COMPLETED and done.attempts == 1


def test_a_dead_workers_task_is_requeued_and_finished_by_another(clocked_runtime: Runtime, clock: ManualClock) -> None:
    runtime = clocked_runtime
    account = runtime.store.accounts.create_account("a", credits=10**9)
    task_id = create(runtime, account)
    dead = runtime.store.leases.claim_next_task("worker-that-dies", [UPSCALE], 0.2)
    assert dead is not None
    clock.advance(0.3)
    Reaper(runtime.store, runtime.files).sweep()
    assert runtime.store.tasks.get(account.account_id, task_id).status is TaskStatus.PENDING
    assert runtime.workers[0].run_once()
    done = runtime.store.tasks.get(account.account_id, task_id)
    assert done.status is TaskStatus.COMPLETED and done.attempts == 2
    assert any("attempt 2 of 2" in line for line in done.logs)
    assert any("requeued" in line for line in done.logs)


def test_pool_threads_pick_up_new_work_without_polling(runtime: Runtime) -> None:
    runtime.workers[0].idle_wait_seconds = 120  # only a wake-up, not the idle timeout, can start the task
    runtime.pool.start()
    try:
        account = runtime.store.accounts.create_account("a", credits=10**9)
        time.sleep(0.2)  # the worker has found nothing and is waiting on its wake-up
        task_id = create(runtime, account)
        deadline = time.time() + 30
        while time.time() < deadline:
            if runtime.store.tasks.get(account.account_id, task_id).status is TaskStatus.COMPLETED:
                break
            time.sleep(0.02)
        assert runtime.store.tasks.get(account.account_id, task_id).status is TaskStatus.COMPLETED
    finally:
        runtime.pool.stop()
