"""Applying a `MemoryPlan` (genmill.domain.placement) to a loaded diffusers pipeline, and the device facts the
planner needs: compute dtypes, total and free memory, and recognising out-of-memory errors.

torch and diffusers are imported inside the functions: the backend registry imports this module on API-only
hosts that have neither.
"""

from __future__ import annotations

import gc
import importlib.util
import logging
import os
import sys
from pathlib import Path
from typing import Any

from genmill.domain.placement import MemoryMode, MemoryPlan, Quantization
from genmill.errors import BackendError

log = logging.getLogger(__name__)

GPU_EXTRA_HINT = "pip install 'genmill[gpu]'"
DENOISER_PREFIX = "transformer"
"""Pipeline components named transformer, transformer_2: the denoisers, whose blocks run every step."""
ENCODER_PREFIXES = ("text_encoder", "image_encoder")
"""Components from transformers: run once per task."""
OUT_OF_MEMORY_TEXTS = ("out of memory", "cublas_status_alloc_failed")


def _is_cuda(device: str) -> bool:
    return device.startswith("cuda")


def _cuda_index(device: str) -> int:
    import torch

    index = torch.device(device).index
    return int(index) if index is not None else int(torch.cuda.current_device())


def compute_dtypes(device: str) -> tuple[Any, Any]:
    """(weights dtype, VAE dtype) for a device. bf16 where the GPU has it (Ampere and later): the published
    weights are bf16 and fp16 overflows in some of their activations. Older GPUs get fp16 weights and an fp32
    VAE, because fp16 VAE decoders overflow into black or NaN frames. The CPU computes in fp32 (bf16 matmuls on
    CPUs without AMX are much slower, and fp16 is not supported by every CPU kernel)."""
    import torch

    if _is_cuda(device):
        with torch.cuda.device(_cuda_index(device)):
            # Not emulated bf16: pre-Ampere cards can emulate it, slowly; the point is to use fp16 there.
            if torch.cuda.is_bf16_supported(including_emulation=False):
                return torch.bfloat16, torch.bfloat16
        return torch.float16, torch.float32
    return torch.float32, torch.float32


def _meminfo_bytes(field: str) -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise BackendError(f"/proc/meminfo has no {field}")


def device_total_bytes(device: str) -> int:
    """The device's memory: the GPU's total, or the machine's physical RAM for the CPU."""
    if _is_cuda(device):
        import torch

        return int(torch.cuda.get_device_properties(_cuda_index(device)).total_memory)
    return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))


def device_free_bytes(device: str) -> int:
    """Memory that can still be allocated: the driver's free figure (other processes included) for a GPU, the
    kernel's MemAvailable for the CPU."""
    if _is_cuda(device):
        import torch

        return int(torch.cuda.mem_get_info(_cuda_index(device))[0])
    return _meminfo_bytes("MemAvailable")


def _require(module: str, quantization: Quantization) -> None:
    if importlib.util.find_spec(module) is None:
        raise BackendError(
            f"{quantization.value} quantisation needs {module}, which is not installed ({GPU_EXTRA_HINT})",
            code=10000,
        )


def _is_transformers_component(name: str) -> bool:
    return name.startswith(ENCODER_PREFIXES)


def quantization_config(quantization: Quantization, components: tuple[str, ...], compute_dtype: Any) -> Any | None:
    """A diffusers `PipelineQuantizationConfig` quantising `components` on load
    (`from_pretrained(..., quantization_config=...)`), or None for `Quantization.NONE`.

    Built as a per-component mapping (`quant_mapping`) rather than one backend name, so that each component gets
    its own library's config class: diffusers' for the transformer, transformers' for text encoders. NF4 uses
    double quantisation (the block scales themselves quantised, about 0.4 bits per weight saved) and computes in
    `compute_dtype`; fp8 is torchao's float8 weight-only scheme. Raises BackendError with the install hint when
    bitsandbytes or torchao is missing."""
    if quantization is Quantization.NONE:
        return None
    from diffusers.quantizers.pipe_quant_config import PipelineQuantizationConfig

    mapping: dict[str, Any] = {}
    if quantization in (Quantization.INT8, Quantization.NF4):
        _require("bitsandbytes", quantization)
        from diffusers import BitsAndBytesConfig as DiffusersBnb
        from transformers import BitsAndBytesConfig as TransformersBnb

        if quantization is Quantization.NF4:
            kwargs: dict[str, Any] = {
                "load_in_4bit": True,
                "bnb_4bit_quant_type": "nf4",
                "bnb_4bit_use_double_quant": True,
                "bnb_4bit_compute_dtype": compute_dtype,
            }
        else:
            kwargs = {"load_in_8bit": True}
        for name in components:
            mapping[name] = (TransformersBnb if _is_transformers_component(name) else DiffusersBnb)(**kwargs)
    else:
        _require("torchao", quantization)
        from diffusers import TorchAoConfig as DiffusersAo
        from torchao.quantization import Float8WeightOnlyConfig
        from transformers import TorchAoConfig as TransformersAo

        for name in components:
            config_class = TransformersAo if _is_transformers_component(name) else DiffusersAo
            mapping[name] = config_class(quant_type=Float8WeightOnlyConfig())
    return PipelineQuantizationConfig(quant_mapping=mapping)


def _modules(pipe: Any) -> dict[str, Any]:
    import torch

    return {name: c for name, c in pipe.components.items() if isinstance(c, torch.nn.Module)}


def group_offload_denoiser(module: Any, onload_device: str, *, use_stream: bool) -> None:
    """Stream a diffusers denoiser from CPU memory one block at a time (what `group-offload` does to the
    transformers of a pipeline; `python -m bench.gpu` times exactly this)."""
    import torch

    module.enable_group_offload(
        onload_device=torch.device(onload_device),
        offload_device=torch.device("cpu"),
        offload_type="block_level",
        num_blocks_per_group=1,
        use_stream=use_stream,
    )


def group_offloaded(module: Any) -> bool:
    """Whether group offload hooks are already on `module` or one of its submodules: diffusers refuses to add
    them twice, and a module shared between pipelines is placed once."""
    return any(
        getattr(getattr(sub, "_diffusers_hook", None), "get_hook", lambda _name: None)("group_offloading") is not None
        for sub in module.modules()
    )


def enable_group_offload(pipe: Any, onload_device: str, *, use_stream: bool) -> None:
    """Group offload of the big components; everything else moved to `onload_device`.

    Denoisers stream block by block (`block_level`, one block per group): with `use_stream` the next block is
    copied on a side CUDA stream while the current one computes, so the copies hide behind long video steps.
    Text and image encoders run once per task and their architectures (T5, UMT5, Llama, CLIP) do not all keep
    their blocks in a top-level ModuleList, which block-level grouping needs, so they stream leaf by leaf. Kept
    separate from `apply_plan` so that it can run with `onload_device="cpu"` where no GPU exists."""
    import torch

    onload, offload = torch.device(onload_device), torch.device("cpu")
    for name, module in _modules(pipe).items():
        if group_offloaded(module):
            continue  # shared with a pipeline placed before (the Flux variants share their text encoders)
        if name.startswith(DENOISER_PREFIX) and hasattr(module, "enable_group_offload"):
            group_offload_denoiser(module, onload_device, use_stream=use_stream)
        elif name.startswith((DENOISER_PREFIX, *ENCODER_PREFIXES)):
            from diffusers.hooks.group_offloading import apply_group_offloading

            apply_group_offloading(
                module, onload_device=onload, offload_device=offload, offload_type="leaf_level", use_stream=use_stream
            )
        else:
            module.to(onload)


def enable_vae_tiling(pipe: Any) -> None:
    """Decode in overlapping tiles (and one clip or image of a batch at a time where the VAE can)."""
    vae = getattr(pipe, "vae", None)
    if vae is None:
        return
    if hasattr(vae, "enable_tiling"):
        vae.enable_tiling()
    if hasattr(vae, "enable_slicing"):
        vae.enable_slicing()


def apply_plan(pipe: Any, plan: MemoryPlan, device: str) -> None:
    """Place a freshly loaded pipeline (all on the CPU) as the plan says. On the CPU every mode is the same
    `pipe.to("cpu")`: offloading to the CPU from the CPU would only add copies."""
    if device == "cpu" or device.startswith("cpu:"):
        if plan.mode is not MemoryMode.GPU:
            log.info("memory mode %s ignored on the CPU: the pipeline stays in CPU memory", plan.mode.value)
        pipe.to("cpu")
    elif plan.mode is MemoryMode.GPU:
        pipe.to(device)
    elif plan.mode is MemoryMode.MODEL_OFFLOAD:
        pipe.enable_model_cpu_offload(device=device)
    elif plan.mode is MemoryMode.GROUP_OFFLOAD:
        enable_group_offload(pipe, device, use_stream=_is_cuda(device))
    else:
        pipe.enable_sequential_cpu_offload(device=device)
    if plan.vae_tiling:
        enable_vae_tiling(pipe)
    log.info("memory plan applied on %s: %s", device, plan.reason)


def release_memory(device: str) -> None:
    """Return freed memory to the driver after a pipeline is dropped or a run ran out of memory: collect the
    Python cycles that still hold tensors, then empty the CUDA caching allocator and its IPC handles."""
    gc.collect()
    if _is_cuda(device):
        import torch

        if torch.cuda.is_available():
            with torch.cuda.device(_cuda_index(device)):
                torch.cuda.empty_cache()
                torch.cuda.ipc_collect()  # type: ignore[no-untyped-call]


def is_out_of_memory(exc: BaseException) -> bool:
    """True for the allocator's OutOfMemoryError and for the driver and cuBLAS failures that report the same
    thing as a RuntimeError (or torch.AcceleratorError) when an allocation fails inside a kernel launch.

    The worker asks this of every failed task: a process that never imported torch (CPU-only backends, an echo
    server) cannot have run out of GPU memory, and must not pay torch's import to learn that."""
    torch = sys.modules.get("torch")
    if torch is None:
        return False
    if isinstance(exc, torch.cuda.OutOfMemoryError):
        return True
    accelerator_error = getattr(torch, "AcceleratorError", RuntimeError)
    if isinstance(exc, RuntimeError | accelerator_error):
        text = str(exc).lower()
        return any(marker in text for marker in OUT_OF_MEMORY_TEXTS)
    return False
