"""Applying memory plans to a real (tiny, random) diffusers Wan pipeline on the CPU, and the device helpers.

What needs CUDA is not run here: `enable_model_cpu_offload` / `enable_sequential_cpu_offload` on a GPU, CUDA
streams of group offload, bitsandbytes and torchao weights, and the cuda branches of the dtype and memory
helpers (`python -m bench.gpu` exercises the offload modes on a GPU). What is checked: every mode on the CPU
degrades to a working CPU pipeline; group offload hooks register and still produce a clip when onloaded to the
CPU; VAE tiling is switched on; the install hint when the quantisation libraries are missing; the OOM test.
"""

from __future__ import annotations

import importlib.util
import logging
import os
from typing import Any

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
pytest.importorskip("diffusers")

import torch
from tests.backends.video_tiny import t5_parts, wan_transformer, wan_vae

from genmill.backends.memory_modes import (
    apply_plan,
    compute_dtypes,
    device_free_bytes,
    device_total_bytes,
    enable_group_offload,
    group_offloaded,
    is_out_of_memory,
    quantization_config,
    release_memory,
)
from genmill.domain.placement import MemoryMode, MemoryPlan, Quantization
from genmill.errors import BackendError

pytestmark = pytest.mark.backends


def tiny_wan() -> Any:
    from diffusers import FlowMatchEulerDiscreteScheduler, WanPipeline

    torch.manual_seed(0)
    tokenizer, text_encoder = t5_parts()
    return WanPipeline(
        tokenizer=tokenizer,
        text_encoder=text_encoder,
        vae=wan_vae(),
        scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0),
        transformer=wan_transformer(),
    )


def clip(pipe: Any) -> Any:
    frames = pipe(
        prompt="a red fox",
        height=16,
        width=16,
        num_frames=5,
        num_inference_steps=2,
        output_type="np",
        generator=torch.Generator("cpu").manual_seed(1),
    ).frames
    return frames[0]


@pytest.mark.parametrize("mode", list(MemoryMode))
def test_every_mode_on_the_cpu_is_a_working_cpu_pipeline(mode: MemoryMode, caplog: pytest.LogCaptureFixture) -> None:
    pipe = tiny_wan()
    with caplog.at_level(logging.INFO, logger="genmill.backends.memory_modes"):
        apply_plan(pipe, MemoryPlan(mode, Quantization.NONE, vae_tiling=True, reason="test plan"), "cpu")
    frames = clip(pipe)
    assert frames.shape == (5, 16, 16, 3)
    assert pipe.transformer.device.type == "cpu"
    assert pipe.vae.use_tiling, "the plan's VAE tiling is switched on"
    if mode is not MemoryMode.GPU:
        assert f"memory mode {mode.value} ignored on the CPU" in caplog.text
    assert "test plan" in caplog.text


def hooked(module: torch.nn.Module) -> bool:
    """Whether diffusers registered a hook on the module or any module inside it."""
    return any(getattr(getattr(m, "_diffusers_hook", None), "hooks", None) for m in module.modules())


def test_group_offload_registers_hooks_and_still_generates() -> None:
    reference = clip(tiny_wan())
    pipe = tiny_wan()
    enable_group_offload(pipe, "cpu", use_stream=False)
    assert hooked(pipe.transformer), "the transformer streams block by block"
    assert hooked(pipe.text_encoder), "the text encoder streams leaf by leaf"
    assert not hooked(pipe.vae), "the VAE stays where it is put"
    assert (clip(pipe) == reference).all(), "offloading changes where weights live, not what they compute"


def test_a_pipeline_sharing_offloaded_modules_is_placed_without_hooking_them_twice() -> None:
    """The Flux variants share their text encoders: placing the second pipeline must neither fail (diffusers
    refuses a second set of group offload hooks) nor stack hooks on the shared modules."""
    reference = clip(tiny_wan())
    first = tiny_wan()
    enable_group_offload(first, "cpu", use_stream=False)
    from diffusers import WanPipeline

    second = WanPipeline(**first.components)
    enable_group_offload(second, "cpu", use_stream=False)
    assert group_offloaded(second.transformer) and group_offloaded(second.text_encoder)
    assert (clip(second) == reference).all()


def test_compute_dtypes_on_the_cpu() -> None:
    assert compute_dtypes("cpu") == (torch.float32, torch.float32)


def test_gpus_without_native_bf16_get_fp16_with_an_fp32_vae(monkeypatch: pytest.MonkeyPatch) -> None:
    """A T4 or V100 reports bf16 'supported' by emulation; genmill must not pick it there."""
    from contextlib import nullcontext

    monkeypatch.setattr(torch.cuda, "device", lambda index: nullcontext())
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: including_emulation)
    assert compute_dtypes("cuda:0") == (torch.float16, torch.float32)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: True)
    assert compute_dtypes("cuda:1") == (torch.bfloat16, torch.bfloat16)


def test_device_memory_on_the_cpu() -> None:
    total, free = device_total_bytes("cpu"), device_free_bytes("cpu")
    assert 0 < free <= total
    release_memory("cpu")  # only collects garbage here; must not touch CUDA


def test_no_quantization_needs_no_config() -> None:
    assert quantization_config(Quantization.NONE, ("transformer",), torch.bfloat16) is None


@pytest.mark.parametrize(
    ("quantization", "library"),
    [(Quantization.NF4, "bitsandbytes"), (Quantization.INT8, "bitsandbytes"), (Quantization.FP8, "torchao")],
)
def test_a_missing_quantization_library_names_the_install(quantization: Quantization, library: str) -> None:
    if importlib.util.find_spec(library) is not None:
        pytest.skip(f"{library} is installed here")
    with pytest.raises(BackendError, match=r"pip install 'genmill\[gpu\]'") as caught:
        quantization_config(quantization, ("transformer", "text_encoder"), torch.bfloat16)
    assert library in caught.value.message


def test_out_of_memory_errors_are_recognised() -> None:
    assert is_out_of_memory(torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"))
    assert is_out_of_memory(RuntimeError("CUDA error: out of memory"))
    assert is_out_of_memory(RuntimeError("CUDA error: CUBLAS_STATUS_ALLOC_FAILED when calling `cublasCreate`"))
    assert is_out_of_memory(torch.AcceleratorError("CUDA error: out of memory"))
    assert not is_out_of_memory(RuntimeError("mat1 and mat2 shapes cannot be multiplied"))
    assert not is_out_of_memory(ValueError("out of memory"))  # not an error torch raises for memory
    assert not is_out_of_memory(MemoryError())
