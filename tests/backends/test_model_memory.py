"""Memory accounting, unloading and out-of-memory recovery with the real diffusers backends (tiny models on the
CPU, loaded by the production `from_pretrained`): what the model cache counts is what the backends hold, shared
pipelines load once, unloading frees the modules, and a run that runs out of memory is retried once after the
worker frees the device, then fails with its own error code and its credits released."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")

from tests.backends import video_tiny  # noqa: E402
from tests.backends.test_flux import build_models as build_flux  # noqa: E402
from tests.backends.test_video_models import TINY, picture  # noqa: E402
from tests.support import PillowUpscale  # noqa: E402

from genmill.app import Runtime  # noqa: E402
from genmill.catalog import build_catalog  # noqa: E402
from genmill.domain.states import TaskStatus  # noqa: E402
from genmill.errors import GPU_MEMORY_ERROR_CODE  # noqa: E402
from genmill.models.flux.backend import FluxBackend  # noqa: E402
from genmill.models.flux.catalog import ADVANCED, DEV  # noqa: E402
from genmill.models.flux.shared import ENCODERS_KEY, FluxShared  # noqa: E402
from genmill.models.video.pipeline import VideoShared  # noqa: E402
from genmill.models.video.wan import WanBackend  # noqa: E402
from genmill.settings import Settings  # noqa: E402
from genmill.worker.backendset import BackendSet  # noqa: E402

pytestmark = [
    pytest.mark.backends,
    # diffusers' own FluxControlNetModel still imports FluxPosEmbed from the place it deprecated.
    pytest.mark.filterwarnings("ignore:`FluxPosEmbed` is deprecated:FutureWarning"),
]
CATALOG = build_catalog()


@pytest.fixture(scope="module")
def wan_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("wan-models")
    video_tiny.build_wan(root)
    return root


@pytest.fixture(scope="module")
def flux_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("flux-models")
    build_flux(root)
    return root


class LoadSpy:
    """Counts `from_pretrained` calls of a diffusers pipeline class (the real loader still runs)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, pipeline_class: Any) -> None:
        self.calls = 0
        original = pipeline_class.from_pretrained.__func__

        def counted(cls: Any, *args: Any, **kwargs: Any) -> Any:
            self.calls += 1
            return original(cls, *args, **kwargs)

        monkeypatch.setattr(pipeline_class, "from_pretrained", classmethod(counted))


def test_hug_video_and_wanx_share_one_pipeline_without_reloading(
    wan_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from diffusers import WanImageToVideoPipeline

    shared = VideoShared(device="cpu")
    wanx = WanBackend("wan21-i2v-14b", wan_dir, geometry=TINY, shared=shared)
    hug = WanBackend("hug-wan21-i2v", wan_dir, geometry=TINY, shared=shared)
    small = WanBackend("wan21-t2v-1.3b", wan_dir, geometry=TINY, shared=shared)
    assert wanx.availability().ok and hug.availability().ok and small.availability().ok
    assert wanx.residents() == hug.residents() and wanx.memory_bytes > 0
    budget = wanx.memory_bytes * 3 // 2 + wanx.working_bytes
    backends = BackendSet([wanx, hug, small], CATALOG, memory_budgets={"cpu": budget})
    spy = LoadSpy(monkeypatch, WanImageToVideoPipeline)
    for _ in range(3):
        for backend in (wanx, hug):
            with backends.using(backend):
                pass
    assert spy.calls == 1 and backends.load_counts == {"wan21-i2v-14b": 1, "hug-wan21-i2v": 1}
    assert backends.cache.used("cpu") == wanx.memory_bytes  # counted once

    # A model that does not fit beside it evicts both users of the shared pipeline, and the pipeline is freed.
    transformer = weakref.ref(shared.pipes[("WanImageToVideoPipeline", wan_dir / "wan2.1-i2v-14b")].transformer)
    monkeypatch.setattr(small, "working_bytes", budget)
    with backends.using(small):
        pass
    gc.collect()
    assert backends.loaded() == ["wan21-t2v-1.3b"] and transformer() is None
    assert ("WanImageToVideoPipeline", wan_dir / "wan2.1-i2v-14b") not in shared.pipes


def test_flux_variants_count_and_free_their_shared_encoders_once(flux_dir: Path) -> None:
    shared = FluxShared(device="cpu")
    dev = FluxBackend(DEV, flux_dir, shared=shared)
    fill = FluxBackend(ADVANCED, flux_dir, variant="fill", shared=shared)
    assert dev.availability().ok and fill.availability().ok
    assert dev.device == "cpu" and dev.memory_bytes > 0  # declared, not inherited zeros
    keys = {r.key for r in dev.residents()} & {r.key for r in fill.residents()}
    assert keys == {ENCODERS_KEY}
    backends = BackendSet([dev, fill], CATALOG)
    backends.ensure_loaded(dev)
    backends.ensure_loaded(fill)
    encoders = {r.key: r.nbytes for r in dev.residents()}[ENCODERS_KEY]
    assert backends.cache.used("cpu") == dev.memory_bytes + fill.memory_bytes - encoders
    t5 = weakref.ref(shared.encoders["text_encoder_2"])
    assert fill._pipes["main"].text_encoder_2 is t5()  # loaded once, used by both
    dev.unload()
    gc.collect()
    assert t5() is not None and not shared.bases  # fill still holds the encoders; dev's transformer is gone
    fill.unload()
    gc.collect()
    assert t5() is None and not shared.encoders


def test_the_wan_vae_and_image_encoder_stay_in_float32_under_bf16(wan_dir: Path) -> None:
    from genmill.backends.diffusers_loading import Placement

    shared = VideoShared(placement=Placement("cpu", dtype=torch.bfloat16))
    backend = WanBackend("wan21-i2v-14b", wan_dir, geometry=TINY, shared=shared)
    assert backend.availability().ok
    backend.load()
    pipe = backend._pipe
    assert pipe.transformer.dtype == torch.bfloat16 and pipe.text_encoder.dtype == torch.bfloat16
    assert pipe.vae.dtype == torch.float32 and pipe.image_encoder.dtype == torch.float32
    from tests.backends.test_video_models import run

    data, _ = run(backend, "img2video-14b", prompt="a red fox", image=picture())
    assert data[4:8] == b"ftyp"


def test_an_fp16_pipeline_decodes_through_a_float32_vae(flux_dir: Path) -> None:
    """GPUs without bf16 run Flux in fp16 with the VAE in fp32, which overflows less; Flux passes its latents to
    the VAE without casting, so the VAE converts at its edges."""
    from tests.backends.test_flux import DEV_FIELDS, run

    from genmill.backends.diffusers_loading import Placement

    placement = Placement("cpu", dtype=torch.float16, vae_dtype=torch.float32)
    backend = FluxBackend(DEV, flux_dir, shared=FluxShared(placement=placement))
    assert backend.availability().ok
    backend.load()
    pipe = backend._pipes["txt2img"]
    assert pipe.transformer.dtype == torch.float16 and pipe.vae.dtype == torch.float32
    output, ctx = run(backend, "txt2img", **{**DEV_FIELDS, "seed": 3})
    assert output["image_url"] in ctx.outputs


# --- out-of-memory recovery through the worker ------------------------------------------------------------------


class OutOfMemoryTransformer:
    """Makes a pipeline's transformer raise CUDA's out-of-memory error for its first `times` calls."""

    def __init__(self, pipe: Any, times: int) -> None:
        self.left = times
        self.forward = pipe.transformer.forward
        pipe.transformer.forward = self

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if self.left:
            self.left -= 1
            raise torch.cuda.OutOfMemoryError(
                "CUDA out of memory. Tried to allocate 20.00 GiB. GPU 0 has a total capacity of 23.6 GiB"
            )
        return self.forward(*args, **kwargs)


@pytest.fixture
def runtime(tmp_path: Path, flux_dir: Path) -> Iterator[Runtime]:
    flux = FluxBackend(DEV, flux_dir, shared=FluxShared(device="cpu"))
    rt = Runtime(
        Settings(data_dir=tmp_path, public_url="http://testserver", workers=1), backends=[flux, PillowUpscale()]
    )
    yield rt
    rt.store.close()


def flux_task(rt: Runtime, account: Any) -> str:
    fields = {"prompt": "a red fox", "width": 64, "height": 64, "steps": 2, "seed": 1}
    task, _ = rt.tasks.create_task(account, DEV, "txt2img", fields, None)
    return task.task_id


@pytest.mark.parametrize("failures", [1, 2])
def test_out_of_memory_frees_the_device_retries_once_then_fails_with_credits_released(
    runtime: Runtime, failures: int
) -> None:
    account = runtime.store.accounts.create_account("a", credits=10**9, max_concurrency=10)
    worker = runtime.workers[0]
    upscale = runtime.backends.backend_for("Qubico/image-toolkit", "upscale")
    flux = runtime.backends.backend_for(DEV, "txt2img")
    assert isinstance(flux, FluxBackend)
    upscale.memory_bytes = 1 << 20  # an idle model on the same device, which the recovery unloads
    runtime.backends.ensure_loaded(upscale)
    flux.load()
    injected = OutOfMemoryTransformer(flux._pipes["txt2img"], times=failures)
    task_id = flux_task(runtime, account)
    assert worker.run_once()
    task = runtime.store.tasks.get(account.account_id, task_id)
    assert "out of memory on cpu: unloaded 1 other model(s), retrying once" in task.logs
    assert upscale.name not in runtime.backends.loaded()
    balances = runtime.store.accounts.ledger_balances(account.account_id)
    if failures == 1:
        assert task.status is TaskStatus.COMPLETED and task.output and task.consumed_credits == task.price
    else:
        assert task.status is TaskStatus.FAILED and task.error is not None
        assert task.error["code"] == GPU_MEMORY_ERROR_CODE
        assert task.error["message"].startswith("GPU memory: flux1-dev needs about")
        assert "Tried to allocate 20.00 GiB" in task.error["raw_message"]
        assert task.consumed_credits == 0 and balances.available == 10**9 and balances.frozen == 0
    assert injected.left == 0
    # The worker stays healthy: the next task (the transformer works again) completes.
    second = flux_task(runtime, account)
    assert worker.run_once()
    assert runtime.store.tasks.get(account.account_id, second).status is TaskStatus.COMPLETED


def test_out_of_memory_while_loading_is_retried_after_freeing_the_device(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    from diffusers import FluxPipeline

    account = runtime.store.accounts.create_account("a", credits=10**9, max_concurrency=10)
    original = FluxPipeline.from_pretrained.__func__
    calls: list[int] = []

    def short_of_memory_once(cls: Any, *args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        if len(calls) == 1:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 9.00 GiB")
        return original(cls, *args, **kwargs)

    monkeypatch.setattr(FluxPipeline, "from_pretrained", classmethod(short_of_memory_once))
    task_id = flux_task(runtime, account)
    assert runtime.workers[0].run_once()
    task = runtime.store.tasks.get(account.account_id, task_id)
    assert task.status is TaskStatus.COMPLETED, task.error
    assert len(calls) == 2 and any(line.startswith("out of memory on cpu") for line in task.logs)
    assert runtime.backends.load_counts == {"flux1-dev": 1}


def test_an_offloaded_pipeline_counts_its_weights_in_ram_and_its_peak_on_the_gpu(
    wan_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Planned for a GPU (no GPU needed: nothing loads) under model offload: the weights are a CPU resident under
    their own key, the GPU holds nothing between tasks, and a run needs the plan's peak there."""
    from genmill.backends import diffusers_loading
    from genmill.backends.diffusers_loading import Placement, plan_pipeline
    from genmill.domain.placement import MemoryMode

    monkeypatch.setattr(diffusers_loading, "device_total_bytes", lambda device: 24 * 1024**3)
    placement = Placement("cuda:0", memory_modes="*=model-offload", dtype=torch.bfloat16)
    path = wan_dir / "wan2.1-i2v-14b"
    memory = plan_pipeline(placement, ("wan21-i2v-14b",), path, "WanImageToVideoPipeline", video=True)
    assert memory.plan.mode is MemoryMode.MODEL_OFFLOAD and memory.device == "cuda:0"
    (resident,) = memory.residents
    assert resident.device == "cpu" and resident.key.endswith("@cpu") and resident.nbytes > 0
    assert memory.device_bytes == 0 and memory.working_bytes > 0
    whole = plan_pipeline(Placement("cpu"), ("wan21-i2v-14b",), path, "WanImageToVideoPipeline", video=True)
    assert whole.residents[0].nbytes == 2 * resident.nbytes  # fp32 on the CPU, bf16 planned for the GPU
