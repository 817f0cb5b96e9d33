"""The model cache's accounting: shared residents counted once, per-device budgets, least recently used eviction
across backends, budgets from the device's free memory, and the out-of-memory recovery it offers the worker."""

from __future__ import annotations

from typing import Any

import pytest

from genmill.backends.base import Availability, Backend, Resident, RunContext
from genmill.domain.catalog import CatalogEntry, TaskInput
from genmill.errors import GPU_MEMORY_ERROR_CODE
from genmill.worker.model_cache import AUTO, ModelCache

GIB = 1024**3


class Holder(Backend):
    """A backend holding the given residents; records its loads and unloads in a shared journal."""

    def __init__(
        self, name: str, residents: list[Resident], journal: list[str], *, device: str = "cuda:0", working: int = 0
    ) -> None:
        self.name = name
        self.device = device
        self.working_bytes = working
        self._residents = residents
        self.journal = journal

    def residents(self) -> list[Resident]:
        return self._residents

    def availability(self) -> Availability:
        return Availability(True)

    def load(self) -> None:
        self.journal.append(f"load {self.name}")

    def unload(self) -> None:
        self.journal.append(f"unload {self.name}")

    def run(self, entry: CatalogEntry, inputs: TaskInput, ctx: RunContext) -> dict[str, Any]:
        return {}


class Probe:
    """Device probes: a fixed amount of free memory, and a record of every allocator release."""

    def __init__(self, free: int = 0) -> None:
        self.free = free
        self.released: list[str] = []

    def free_bytes(self, device: str) -> int:
        return self.free

    def release(self, device: str) -> None:
        self.released.append(device)


def cache(budgets: dict[str, int], probe: Probe | None = None, margin: int = 0) -> ModelCache:
    probe = probe or Probe()
    return ModelCache(budgets, margin_bytes=margin, free_bytes=probe.free_bytes, release=probe.release)


def test_a_pipeline_two_backends_share_is_counted_once_and_never_thrashes() -> None:
    """AI Hug and Wan image-to-video read one pipeline: under a budget of 1.5 copies, alternating them loads it
    once each and unloads nothing (before, each counted a full copy and evicted the other every time)."""
    journal: list[str] = []
    pipeline = Resident("pipeline:WanImageToVideoPipeline:/m/wan2.1-i2v-14b", "cuda:0", 10 * GIB)
    wanx = Holder("wan21-i2v-14b", [pipeline], journal)
    hug = Holder("hug-wan21-i2v", [pipeline], journal)
    models = cache({"cuda": 15 * GIB})
    for _ in range(3):
        for backend in (wanx, hug):
            with models.using(backend):
                pass
    assert journal == ["load wan21-i2v-14b", "load hug-wan21-i2v"]
    assert models.used("cuda:0") == 10 * GIB and models.used("cuda") == 10 * GIB
    assert models.needs(Holder("other-hug", [pipeline], [])) == {}


def test_eviction_is_least_recently_used_across_backends_and_keeps_shared_parts() -> None:
    journal: list[str] = []
    encoders = Resident("flux:encoders", "cuda:0", 9 * GIB)
    dev = Holder("flux1-dev", [encoders, Resident("flux:transformer:dev", "cuda:0", 22 * GIB)], journal)
    fill = Holder("flux1-dev-fill", [encoders, Resident("flux:transformer:fill", "cuda:0", 22 * GIB)], journal)
    wan = Holder("wan21-t2v-1.3b", [Resident("pipeline:WanPipeline:small", "cuda:0", 4 * GIB)], journal)
    models = cache({"cuda": 40 * GIB})
    models.ensure_loaded(dev)  # 31 GiB
    models.ensure_loaded(wan)  # 35 GiB
    models.ensure_loaded(dev)  # dev is now the most recently used
    assert models.needs(fill) == {"cuda:0": 22 * GIB}  # the encoders are already there
    models.ensure_loaded(fill)  # 35 + 22 > 40: wan goes first (least recently used) and frees 4, not enough;
    # then dev, whose transformer only it holds; the encoders stay because fill needs them
    assert journal[-3:] == ["unload wan21-t2v-1.3b", "unload flux1-dev", "load flux1-dev-fill"]
    assert models.used("cuda:0") == 31 * GIB and models.loaded() == ["flux1-dev-fill"]
    assert models.used_by_device() == {"cuda:0": 31 * GIB}  # what GET /admin/workers and /metrics report
    assert models.unload_counts == {"wan21-t2v-1.3b": 1, "flux1-dev": 1}
    assert models.load_counts == {"flux1-dev": 1, "wan21-t2v-1.3b": 1, "flux1-dev-fill": 1}


def test_a_running_model_is_never_evicted_and_other_devices_are_untouched() -> None:
    journal: list[str] = []
    a = Holder("a", [Resident("a", "cuda:0", 6 * GIB)], journal)
    b = Holder("b", [Resident("b", "cuda:0", 6 * GIB)], journal)
    on_second_gpu = Holder("c", [Resident("c", "cuda:1", 6 * GIB)], journal, device="cuda:1")
    on_cpu = Holder("d", [Resident("d", "cpu", 60 * GIB)], journal, device="cpu")
    models = cache({"cuda": 10 * GIB})
    models.ensure_loaded(on_second_gpu)
    models.ensure_loaded(on_cpu)  # no CPU budget: unlimited
    with models.using(a):
        models.ensure_loaded(b)  # does not fit, but a is running: loaded anyway (out-of-memory recovery is next)
    assert "unload a" not in journal and models.used("cuda:1") == 6 * GIB
    assert sorted(models.loaded()) == ["a", "b", "c", "d"]


def test_working_memory_counts_and_offloaded_weights_go_to_the_cpu_budget() -> None:
    journal: list[str] = []
    resident = Holder("resident", [Resident("resident", "cuda:0", 20 * GIB)], journal)
    offloaded = Holder(
        "offloaded", [Resident("offloaded", "cpu", 30 * GIB)], journal, working=10 * GIB
    )  # model offload: weights in RAM, 10 GiB on the GPU while it runs
    models = cache({"cuda": 24 * GIB, "cpu": 64 * GIB})
    models.ensure_loaded(resident)
    assert models.needs(offloaded) == {"cpu": 30 * GIB, "cuda:0": 10 * GIB}
    models.ensure_loaded(offloaded)
    assert journal == ["load resident", "unload resident", "load offloaded"]
    assert models.used("cpu") == 30 * GIB and models.used("cuda:0") == 0


def test_the_automatic_budget_is_the_free_memory_less_the_margin() -> None:
    probe = Probe(free=80 * GIB)
    models = cache({"cuda": AUTO}, probe, margin=2 * GIB)
    assert models.budget("cuda:0") == 78 * GIB
    probe.free = 1  # resolved once: later readings (with models loaded) do not shrink it
    assert models.budget("cuda:0") == 78 * GIB
    assert cache({"cuda": 0}).budget("cuda:0") == 0  # unlimited


def test_unloading_empties_the_device_allocator() -> None:
    journal: list[str] = []
    probe = Probe()
    a = Holder("a", [Resident("a", "cuda:0", 8 * GIB)], journal)
    b = Holder("b", [Resident("b", "cuda:0", 8 * GIB)], journal)
    models = cache({"cuda": 10 * GIB}, probe)
    models.ensure_loaded(a)
    models.ensure_loaded(b)
    assert journal == ["load a", "unload a", "load b"] and probe.released == ["cuda:0"]


def test_recovery_unloads_every_idle_model_on_the_device_and_a_half_loaded_one() -> None:
    journal: list[str] = []
    probe = Probe(free=3 * GIB)
    others = [Holder(n, [Resident(n, "cuda:0", GIB)], journal) for n in ("x", "y")]
    elsewhere = Holder("z", [Resident("z", "cuda:1", GIB)], journal, device="cuda:1")
    failing = Holder("big", [Resident("big", "cuda:0", 40 * GIB)], journal, working=4 * GIB)
    models = cache({}, probe)
    for backend in (*others, elsewhere):
        models.ensure_loaded(backend)
    assert models.recover(failing) == 2
    assert journal[-3:] == ["unload big", "unload x", "unload y"] and models.loaded() == ["z"]
    assert probe.released[-1] == "cuda:0"
    error = models.memory_error(failing, RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB"))
    assert error.code == GPU_MEMORY_ERROR_CODE
    assert "GPU memory: big needs about 44.0 GiB on cuda:0 and only 3.0 GiB is free" in error.message
    assert "Tried to allocate 2.00 GiB" in error.raw_message
    assert error.detail == {"needed_bytes": 44 * GIB, "free_bytes": 3 * GIB}


@pytest.mark.parametrize("name", ["cuda", "cuda:0"])
def test_cuda_means_the_first_gpu(name: str) -> None:
    journal: list[str] = []
    a = Holder("a", [Resident("a", name, 8 * GIB)], journal, device=name)
    models = cache({"cuda:0": 10 * GIB})
    models.ensure_loaded(a)
    assert models.used("cuda") == models.used("cuda:0") == 8 * GIB
