"""Tasks for an entry no worker is serving right now: queued when a worker served it recently or the operator
declared it, run when a worker comes back, failed (10004) with their credits released after the entry's wait
limit; refused (400) otherwise. On SQLite and PostgreSQL, with the store's clock stepped by hand."""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from tests.support import PillowUpscale, png_bytes

from genmill.app import Runtime, create_app
from genmill.backends.base import Backend
from genmill.domain.clock import ManualClock
from genmill.domain.failures import FailureCode
from genmill.domain.records import PUBLIC_POOL, Account, Task, WorkerToken
from genmill.domain.states import TaskStatus
from genmill.domain.timefmt import utcnow
from genmill.engine.gate import WorkerIdentity
from genmill.errors import ModelNotServed
from genmill.settings import Settings
from genmill.store import Store

UPSCALE = ("Qubico/image-toolkit", "upscale")
CREDITS = 10**9
AN_HOUR_AGO_BUT_ONE_MINUTE = 3540.0


@dataclass
class Queue:
    """An API-only replica (no in-process workers) over a store whose clock the test steps."""

    runtime: Runtime
    clock: ManualClock
    account: Account

    def create(self, *, private: bool = False) -> Task:
        image = base64.b64encode(png_bytes(6, 4)).decode()
        config = {"service_mode": "private"} if private else None
        task, _ = self.runtime.tasks.create_task(self.account, *UPSCALE, {"image": image, "scale": 2}, config)
        return task

    def task(self, task_id: str) -> Task:
        return self.runtime.store.tasks.get_any(task_id)

    def worker(self, *, private: bool = False) -> tuple[WorkerToken, str]:
        """A remote GPU worker registers (and is seen) now; returns its token and id."""
        _, token = self.runtime.store.workers.create_token("gpu", self.account.account_id if private else None)
        return token, self.runtime.gate.register(token, "gpu-1", [UPSCALE]).worker_id

    def comes_back(self, token: WorkerToken, worker_id: str) -> WorkerIdentity:
        """The worker calls again (a claim, a heartbeat): it is seen now."""
        return self.runtime.gate.registered(token, worker_id)

    def available(self) -> int:
        return self.runtime.store.accounts.get(self.account.account_id).balances.available

    def frozen(self) -> int:
        return self.runtime.store.accounts.get(self.account.account_id).balances.frozen


QueueFactory = Callable[..., Queue]


@pytest.fixture
def make_queue(store: Store, tmp_path: Path) -> Iterator[QueueFactory]:
    """Builds a replica on the engine under test; the clock starts an hour ago, so the store's timestamps and the
    real time agree once the test has stepped it forward by about an hour."""
    built: list[Runtime] = []

    def build(backends: list[Backend] | None = None, max_concurrency: int = 10, **overrides: Any) -> Queue:
        clock = ManualClock(utcnow() - timedelta(hours=1))
        settings = Settings(
            data_dir=tmp_path / f"replica-{len(built)}",
            workers=1 if backends else 0,
            worker_seen_seconds=60,  # a remote worker serves "now" for a minute after it was last seen
            **overrides,
        )
        runtime = Runtime(settings, store=Store(store.engine, clock=clock), backends=backends or [])
        built.append(runtime)
        account = runtime.store.accounts.create_account("queued", credits=CREDITS, max_concurrency=max_concurrency)
        return Queue(runtime, clock, account)

    yield build


def test_a_create_while_the_entrys_workers_restart_is_queued_and_runs_when_one_comes_back(
    make_queue: QueueFactory,
) -> None:
    queue = make_queue()
    token, worker_id = queue.worker()
    queue.clock.advance(AN_HOUR_AGO_BUT_ONE_MINUTE)  # the worker restarts: not seen for 59 minutes
    assert not queue.runtime.serving.serves(*UPSCALE, PUBLIC_POOL)
    task = queue.create()  # queued, not refused
    assert queue.task(task.task_id).status is TaskStatus.PENDING and task.frozen_credits == task.price > 0
    worker = queue.comes_back(token, worker_id)
    claim = queue.runtime.gate.claim(worker)
    assert claim is not None and claim.task.task_id == task.task_id
    queue.runtime.gate.complete(worker, task.task_id, claim.lease_id, {"image_url": "x"}, [], None)
    done = queue.task(task.task_id)
    assert done.status is TaskStatus.COMPLETED and done.consumed_credits == task.price
    assert queue.available() == CREDITS - task.price and queue.frozen() == 0


def test_a_queued_task_fails_with_its_credits_released_after_the_wait_limit(make_queue: QueueFactory) -> None:
    queue = make_queue()
    queue.worker()
    queue.clock.advance(AN_HOUR_AGO_BUT_ONE_MINUTE)
    task = queue.create()
    assert queue.frozen() == task.price > 0
    queue.clock.advance(599)
    queue.runtime.pool.reaper.sweep()  # the reaper's round, as `genmill serve` runs it
    assert queue.task(task.task_id).status is TaskStatus.PENDING  # within the 600 s default
    queue.clock.advance(2)
    queue.runtime.pool.reaper.sweep()
    failed = queue.task(task.task_id)
    assert failed.status is TaskStatus.FAILED and failed.error is not None
    assert failed.error["code"] == 10004 and FailureCode(10004) is FailureCode.NO_WORKER
    assert "Qubico/image-toolkit/upscale" in failed.error["message"] and "600 s" in failed.error["message"]
    assert failed.error["detail"]["max_pending_seconds"] == 600
    assert failed.consumed_credits == 0 and failed.frozen_credits == 0
    assert any("credits released" in line for line in failed.logs)
    assert queue.available() == CREDITS and queue.frozen() == 0


def test_the_wait_counts_from_when_a_worker_of_the_entry_was_last_seen(make_queue: QueueFactory) -> None:
    queue = make_queue()
    token, worker_id = queue.worker()
    queue.clock.advance(AN_HOUR_AGO_BUT_ONE_MINUTE)
    task = queue.create()
    queue.clock.advance(500)
    queue.comes_back(token, worker_id)  # e.g. heartbeats of a long task of another entry
    queue.clock.advance(300)  # 800 s pending, but a worker serving the entry was seen 300 s ago
    assert queue.runtime.serving.expire_waits().failed == []
    queue.clock.advance(301)
    assert queue.runtime.serving.expire_waits().failed == [task.task_id]


def test_a_backlog_behind_a_processing_task_of_the_entry_waits(make_queue: QueueFactory) -> None:
    queue = make_queue()
    token, worker_id = queue.worker()
    created = {queue.create().task_id, queue.create().task_id}
    worker = queue.comes_back(token, worker_id)
    claim = queue.runtime.gate.claim(worker)
    assert claim is not None
    (waiting,) = created - {claim.task.task_id}
    queue.clock.advance(5000)  # a very long task; its worker's heartbeats are not even recorded here
    assert queue.runtime.serving.expire_waits().failed == []
    assert queue.task(waiting).status is TaskStatus.PENDING


def test_entries_this_process_runs_never_time_out(make_queue: QueueFactory) -> None:
    queue = make_queue(backends=[PillowUpscale()])
    task = queue.create()
    queue.clock.advance(10**6)
    assert queue.runtime.serving.expire_waits().failed == []
    assert queue.task(task.task_id).status is TaskStatus.PENDING


def test_an_entry_never_served_nor_declared_is_refused(make_queue: QueueFactory) -> None:
    queue = make_queue()
    with pytest.raises(ModelNotServed, match="no worker of this deployment"):
        queue.create()
    queue.worker()
    queue.clock.advance(3601)  # served, but more than GENMILL_SERVED_RECENTLY_SECONDS ago
    with pytest.raises(ModelNotServed):
        queue.create()
    assert queue.frozen() == 0


def test_a_declared_entry_queues_before_any_worker_and_has_its_own_wait_limit(make_queue: QueueFactory) -> None:
    queue = make_queue(queue_models="Qubico/image-toolkit", max_pending_seconds="600,Qubico/image-toolkit/upscale=30")
    task = queue.create()
    assert queue.task(task.task_id).status is TaskStatus.PENDING
    queue.clock.advance(29)
    assert queue.runtime.serving.expire_waits().failed == []
    queue.clock.advance(2)
    assert queue.runtime.serving.expire_waits().failed == [task.task_id]
    error = queue.task(task.task_id).error
    assert error is not None and error["code"] == 10004 and "30 s" in error["message"]
    assert error["detail"]["last_worker_seen_at"] is None and queue.frozen() == 0


def test_a_staged_task_takes_the_freed_slot_and_starts_its_own_wait(make_queue: QueueFactory) -> None:
    queue = make_queue(queue_models="*", max_concurrency=1)
    first = queue.create()
    queue.clock.advance(300)
    staged = queue.create()
    assert queue.task(staged.task_id).status is TaskStatus.STAGED
    queue.clock.advance(301)
    swept = queue.runtime.serving.expire_waits()
    assert swept.failed == [first.task_id] and swept.promoted == [staged.task_id]
    assert queue.task(staged.task_id).status is TaskStatus.PENDING
    queue.clock.advance(599)
    assert queue.runtime.serving.expire_waits().failed == []
    queue.clock.advance(2)
    assert queue.runtime.serving.expire_waits().failed == [staged.task_id]
    assert queue.frozen() == 0 and queue.available() == CREDITS


def test_a_private_pool_task_queues_while_the_accounts_workers_restart(make_queue: QueueFactory) -> None:
    queue = make_queue()
    queue.worker(private=True)
    queue.clock.advance(AN_HOUR_AGO_BUT_ONE_MINUTE)
    task = queue.create(private=True)
    assert queue.task(task.task_id).status is TaskStatus.PENDING
    queue.clock.advance(601)
    assert queue.runtime.serving.expire_waits().failed == [task.task_id]
    error = queue.task(task.task_id).error
    assert error is not None and "this account's private pool" in error["message"]


def test_the_models_listing_says_available_and_not_serving_now(make_queue: QueueFactory) -> None:
    queue = make_queue()
    queue.worker()
    queue.clock.advance(AN_HOUR_AGO_BUT_ONE_MINUTE)
    app = create_app(queue.runtime.settings, runtime=queue.runtime, run_workers=False)
    with TestClient(app) as client:
        models = client.get("/api/v1/models").json()["data"]["models"]
    upscale = next(m for m in models if (m["model"], m["task_type"]) == UPSCALE)
    assert upscale["available"] is True and upscale["serving_now"] is False


def test_a_misspelt_queue_setting_stops_the_server(sqlite_store: Store, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no catalog entry for Qubico/image-tolkit"):
        Runtime(
            Settings(data_dir=tmp_path, workers=0, queue_models="Qubico/image-tolkit"), store=sqlite_store, backends=[]
        )
