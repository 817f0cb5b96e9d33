"""The worker's model cache (LRU under a memory budget) and dynamic batching, on a real SQLite store."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.support import PillowUpscale, png_bytes

from genmill.app import Runtime
from genmill.backends.base import Availability, Backend, RunContext
from genmill.catalog import build_catalog
from genmill.domain.catalog import CatalogEntry, TaskInput
from genmill.domain.states import TaskStatus
from genmill.settings import Settings
from genmill.worker.backendset import BackendSet

MIB = 1024 * 1024


class Sized(Backend):
    """A backend whose model 'weighs' `memory_bytes`; records loads and unloads."""

    def __init__(self, name: str, entry: tuple[str, str], megabytes: int) -> None:
        self.name = name
        self.entries = (entry,)
        self.memory_bytes = megabytes * MIB
        self.events: list[str] = []

    def availability(self) -> Availability:
        return Availability(True)

    def load(self) -> None:
        self.events.append("load")

    def unload(self) -> None:
        self.events.append("unload")

    def run(self, entry: CatalogEntry, inputs: TaskInput, ctx: RunContext) -> dict[str, Any]:
        return {}


def test_least_recently_used_model_is_unloaded_under_the_budget() -> None:
    a = Sized("a", ("Qubico/tts", "zero-shot"), 40)
    b = Sized("b", ("Qubico/image-toolkit", "segment"), 50)
    c = Sized("c", ("Qubico/image-toolkit", "face-swap"), 30)
    cache = BackendSet([a, b, c], build_catalog(), memory_budgets={"cpu": 100 * MIB})
    cache.ensure_loaded(a)
    cache.ensure_loaded(c)
    cache.ensure_loaded(a)  # a is now the most recently used
    cache.ensure_loaded(b)  # 40 + 30 + 50 > 100: c, the least recently used, goes
    assert c.events == ["load", "unload"] and a.events == ["load"] and cache.loaded() == ["a", "b"]
    with cache.using(b):
        cache.ensure_loaded(c)  # a is evicted, not b, which is running
    assert a.events == ["load", "unload"] and b.events == ["load"]
    assert cache.load_counts == {"a": 1, "c": 2, "b": 1}


def test_models_stay_loaded_without_a_budget() -> None:
    a = Sized("a", ("Qubico/tts", "zero-shot"), 10_000)
    cache = BackendSet([a], build_catalog())
    for _ in range(3):
        with cache.using(a):
            pass
    assert a.events == ["load"]


class BatchingUpscale(PillowUpscale):
    """Batches tasks that share a scale; records each call's size."""

    name = "test-batching-upscale"
    max_batch_size = 4
    batch_keys = ("scale",)

    def __init__(self) -> None:
        super().__init__()
        self.batches: list[int] = []

    def run_batch(
        self, entry: CatalogEntry, inputs: list[TaskInput], ctxs: list[RunContext]
    ) -> list[dict[str, Any] | Exception]:
        self.batches.append(len(inputs))
        return super().run_batch(entry, inputs, ctxs)


@pytest.fixture
def runtime(tmp_path: Path) -> Iterator[Runtime]:
    rt = Runtime(Settings(data_dir=tmp_path, public_url="http://testserver", workers=1), backends=[BatchingUpscale()])
    yield rt
    rt.store.close()


def test_compatible_tasks_run_as_one_batch_and_settle_one_by_one(runtime: Runtime) -> None:
    account = runtime.store.accounts.create_account("a", credits=10**9, max_concurrency=10)
    image = base64.b64encode(png_bytes(4, 4)).decode()
    same = [
        runtime.tasks.create_task(account, "Qubico/image-toolkit", "upscale", {"image": image, "scale": 2}, None)[0]
        for _ in range(5)
    ]
    other = runtime.tasks.create_task(account, "Qubico/image-toolkit", "upscale", {"image": image, "scale": 3}, None)
    backend = runtime.backends.backend_for("Qubico/image-toolkit", "upscale")
    assert isinstance(backend, BatchingUpscale)
    worker = runtime.workers[0]
    assert worker.run_once()
    assert backend.batches == [4]  # the first task plus three more with the same scale
    done = [runtime.store.tasks.get(account.account_id, t.task_id) for t in same]
    assert [t.status for t in done[:4]] == [TaskStatus.COMPLETED] * 4 and done[4].status is TaskStatus.PENDING
    assert all("ran in a batch of 4 tasks" in t.logs for t in done[:4])
    assert len({t.output["image_url"] for t in done[:4] if t.output}) == 4  # each stored its own output
    assert all(t.consumed_credits == t.price for t in done[:4])  # each billed on its own
    assert len({t.ended_at for t in done[:4]}) == 1  # ... in one transaction (complete_many: one commit)
    assert runtime.store.tasks.get(account.account_id, other[0].task_id).status is TaskStatus.PENDING
    while worker.run_once():
        pass
    assert backend.batches == [4]  # the leftover scale-2 task and the scale-3 one each ran alone, through run()
    everything = [*same, other[0]]
    assert all(
        runtime.store.tasks.get(account.account_id, t.task_id).status is TaskStatus.COMPLETED for t in everything
    )


def test_each_device_gets_its_own_backends_and_worker_slots(tmp_path: Path) -> None:
    """GENMILL_DEVICE=cuda:0,cuda:1: one set of backends (own models, own cache) per GPU, and GENMILL_WORKERS
    worker slots on each, so one host with several GPUs runs a worker per GPU in one process."""
    rt = Runtime(Settings(data_dir=tmp_path, workers=1, device="cuda:0,cuda:1", backends="echo"))
    try:
        assert len(rt.backend_sets) == 2 and len(rt.workers) == 2
        first, second = (worker.backends for worker in rt.workers)
        assert first is rt.backend_sets[0] and second is rt.backend_sets[1]
        echo = [s.backend_for("genmill/echo", "echo") for s in rt.backend_sets]
        assert echo[0] is not echo[1]  # separate instances: a model loaded for one GPU is not shared
        assert rt.backends is rt.backend_sets[0] and rt.backends.can_run("genmill/echo", "echo")
    finally:
        rt.store.close()
