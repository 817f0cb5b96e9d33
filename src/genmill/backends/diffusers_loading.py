"""Loading diffusers pipelines onto a device under a memory plan, and saying what they hold.

One `Placement` per worker process decides, for every diffusers backend: which device (`GENMILL_DEVICE`), which
dtypes (bf16 where the GPU has it; fp16 with an fp32 VAE where it does not; fp32 on the CPU), and which memory
plan (`genmill.domain.placement.plan_memory` from the card's size and the weights' sizes on disk, unless the
operator set one in `GENMILL_MEMORY_MODES`). `load_pipeline` then loads a folder with that plan: quantised
transformer when asked, fp32 parts where the model needs them, whole on the GPU or offloaded.

Sizes come from the safetensors headers (no tensor is read), so `availability()` can report a backend's memory
before anything loads, and the model cache can count it. torch and diffusers are imported inside functions only.
"""

from __future__ import annotations

import json
import logging
import struct
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from genmill.backends.base import Resident
from genmill.backends.memory_modes import apply_plan, compute_dtypes, device_total_bytes, quantization_config
from genmill.domain.placement import (
    FOOTPRINTS,
    Footprint,
    MemoryMode,
    MemoryPlan,
    Quantization,
    normalize_device,
    override_for,
    parse_memory_overrides,
    plan_memory,
)
from genmill.errors import BackendError

log = logging.getLogger("genmill.backends.placement")

FLOAT_BYTES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "F8_E4M3": 1, "F8_E5M2": 1}
"""Element sizes of safetensors' floating dtypes; floating weights are cast to the load dtype, others kept."""
INT_BYTES = {"I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1, "BOOL": 1}

TRANSFORMERS = ("transformer", "transformer_2")
"""The denoiser folders (Wan 2.2 A14B has two experts); everything else but the VAE counts as encoders."""
NOT_WEIGHTS = ("scheduler", "tokenizer", "tokenizer_2", "feature_extractor", "image_processor")

GIB = 1024**3

REQUIRED_PACKAGES = ("torch", "diffusers", "transformers", "accelerate", "peft", "sentencepiece")
"""What the diffusers backends import to load and run a pipeline (`genmill[diffusers]`)."""
INSTALL_HINT = "pip install 'genmill[diffusers]' (install torch==2.13.0 first, see docs/backends.md)"


def weight_bytes(folder: Path, element_bytes: int) -> int:
    """The memory a folder's weights take once loaded with floats of `element_bytes`, read from the safetensors
    headers (no tensor is read); files of other formats count at their size on disk."""
    total = 0
    if not folder.is_dir():
        return 0
    for path in folder.rglob("*"):
        if path.suffix == ".safetensors":
            try:
                with path.open("rb") as handle:
                    (length,) = struct.unpack("<Q", handle.read(8))
                    header = json.loads(handle.read(length))
            except (OSError, ValueError, struct.error):
                total += path.stat().st_size
                continue
            for name, tensor in header.items():
                if name == "__metadata__" or not isinstance(tensor, dict):
                    continue
                count = int(np.prod(tensor.get("shape", []), dtype=np.int64))
                dtype = str(tensor.get("dtype", "F32"))
                total += count * (element_bytes if dtype in FLOAT_BYTES else INT_BYTES.get(dtype, 4))
        elif path.suffix in (".bin", ".pt", ".pth", ".gguf"):
            total += path.stat().st_size
    return total


def folder_footprint(path: Path, element_bytes: int, *, activations: int | None = None) -> Footprint:
    """A diffusers folder's sizes at `element_bytes` per float: its denoiser(s), encoders and VAE, and the working
    memory of one run (the published estimate for the folder's name in `FOOTPRINTS`, else an eighth of the
    denoiser, at least 1 GiB)."""
    transformer = sum(weight_bytes(path / name, element_bytes) for name in TRANSFORMERS)
    vae = weight_bytes(path / "vae", element_bytes)
    encoders = 0
    if path.is_dir():
        for part in sorted(p for p in path.iterdir() if p.is_dir()):
            if part.name not in (*TRANSFORMERS, "vae", *NOT_WEIGHTS) and not part.name.startswith("."):
                encoders += weight_bytes(part, element_bytes)
    if activations is None:
        known = FOOTPRINTS.get(path.name)
        activations = known.activations if known else max(GIB, transformer // 8)
    parts = sum(1 for name in TRANSFORMERS if (path / name).is_dir()) or 1
    return Footprint(
        transformer=transformer, encoders=encoders, vae=vae, activations=activations, transformer_parts=parts
    )


def read_model_index(path: Path) -> tuple[str | None, list[str]]:
    """A diffusers folder's pipeline class and the component folders its model_index.json names but that are
    missing (an interrupted download), read without loading anything."""
    try:
        index = json.loads((path / "model_index.json").read_text())
    except (OSError, ValueError):
        return None, []
    if not isinstance(index, dict):
        return None, []
    parts = [name for name, value in index.items() if isinstance(value, list) and None not in value]
    class_name = index.get("_class_name")
    return (class_name if isinstance(class_name, str) else None), [p for p in parts if not (path / p).is_dir()]


def component_class(path: Path, name: str) -> Any:
    """The class `model_index.json` names for component `name` (a diffusers or transformers class)."""
    import importlib

    index = json.loads((path / "model_index.json").read_text())
    library, class_name = index[name]
    return getattr(importlib.import_module(library), class_name)


class Placement:
    """Where and how one worker process's diffusers backends load their models (see the module docstring)."""

    def __init__(
        self,
        device: str = "auto",
        *,
        memory_modes: str = "",
        margin_bytes: int = 0,
        dtype: Any = None,
        vae_dtype: Any = None,
    ) -> None:
        """`device` is "auto", "cpu", "cuda" or "cuda:N"; `memory_modes` the operator's overrides
        (`GENMILL_MEMORY_MODES`, parsed now so a typo stops the server at start); `margin_bytes` is kept free on
        the card when planning; `dtype` and `vae_dtype` force the dtypes (tests run the GPU rules on the CPU)."""
        self.requested = device
        self.overrides = parse_memory_overrides(memory_modes)
        self.margin_bytes = margin_bytes
        self.forced_dtype = dtype
        self.forced_vae_dtype = vae_dtype if vae_dtype is not None else dtype
        self._device: str | None = None
        self.lock = threading.Lock()

    @property
    def device(self) -> str:
        """The resolved device: "auto" becomes "cuda:0" when torch sees a GPU, else "cpu"."""
        if self._device is None:
            if self.requested == "auto":
                import torch

                self._device = "cuda:0" if torch.cuda.is_available() else "cpu"
            else:
                self._device = normalize_device(self.requested)
        return self._device

    def dtypes(self) -> tuple[Any, Any]:
        """(weights dtype, VAE dtype) on this device, unless forced."""
        if self.forced_dtype is not None:
            return self.forced_dtype, self.forced_vae_dtype
        return compute_dtypes(self.device)

    def plan(self, names: tuple[str, ...], footprint: Footprint, *, video: bool) -> MemoryPlan:
        """The memory plan of a model: the first override naming one of `names` (a backend name, a weight folder,
        a family), else `*`, else chosen from the card's size."""
        mode, quantization = override_for(self.overrides, *names)
        return plan_memory(
            footprint,
            device_total_bytes(self.device),
            video=video,
            mode=mode,
            quantization=quantization,
            margin_bytes=self.margin_bytes,
        )

    def describe(self, plan: MemoryPlan | None) -> str:
        """ "cuda:0, model-offload, nf4 transformer", for logs and `genmill models`."""
        if plan is None:
            return ""
        if not self.device.startswith("cuda"):
            return self.device  # in RAM, whatever the mode: offloading from the CPU to the CPU means nothing
        quantized = "" if plan.quantization is Quantization.NONE else f", {plan.quantization.value} transformer"
        tiled = ", tiled VAE" if plan.vae_tiling else ""
        return f"{self.device}, {plan.mode.value}{quantized}{tiled}"


@dataclass(frozen=True)
class PipelineMemory:
    """A pipeline folder's memory plan and what it holds once loaded under it (for `Backend.residents()`)."""

    device: str
    plan: MemoryPlan
    residents: tuple[Resident, ...]
    working_bytes: int
    """GPU memory a run needs on top of the residents (activations; offloaded weights while they run)."""

    @property
    def device_bytes(self) -> int:
        return sum(r.nbytes for r in self.residents if r.device == self.device)


def plan_pipeline(
    placement: Placement, names: tuple[str, ...], path: Path, pipeline_class: str, *, video: bool
) -> PipelineMemory:
    """Plan one pipeline folder on `placement` and say what it holds, read from its weight files (nothing loads).

    Whole on the GPU: everything is resident there. Offloaded: the weights live in CPU RAM (their own resident,
    so they count against the CPU budget), a part may stay on the GPU, and a run needs its peak on the GPU only
    while it runs. On the CPU everything is in RAM. Backends loading the same folder get the same keys, so the
    model cache counts it once.
    """
    device = placement.device
    footprint = folder_footprint(path, placement.dtypes()[0].itemsize)
    plan = placement.plan(names, footprint, video=video)
    key = f"pipeline:{pipeline_class}:{path}"
    if not device.startswith("cuda"):
        total = footprint.transformer + footprint.encoders + footprint.vae
        return PipelineMemory(device, plan, (Resident(key, device, total),), footprint.activations)
    gpu = plan.gpu_resident_bytes(footprint)
    residents = [Resident(key, device, gpu)] if gpu else []
    if plan.mode is not MemoryMode.GPU:
        residents.append(Resident(f"{key}@cpu", "cpu", plan.cpu_bytes(footprint)))
    return PipelineMemory(device, plan, tuple(residents), max(0, plan.gpu_peak_bytes(footprint) - gpu))


def load_pipeline(
    class_name: str,
    path: Path,
    placement: Placement,
    plan: MemoryPlan,
    *,
    reuse: dict[str, Any] | None = None,
    fp32_parts: tuple[str, ...] = (),
    place: bool = True,
) -> Any:
    """Load the diffusers pipeline in `path` under `plan`.

    `reuse` passes components another pipeline already holds (shared text encoders) instead of loading them;
    `fp32_parts` load in float32 whatever the weights' dtype (the Wan VAE and image encoder, as diffusers runs
    them). Where the VAE dtype differs from the weights' (fp16 GPUs), the VAE loads in float32 and converts at
    its edges. `place=False` leaves placing to the caller (pipelines sharing modules are placed together).
    """
    import diffusers

    device = placement.device
    weights_dtype, vae_dtype = placement.dtypes()
    kwargs: dict[str, Any] = dict(reuse or {})
    upcast = set(fp32_parts)
    if vae_dtype != weights_dtype:
        upcast.add("vae")
    fp32 = _float32()
    for part in sorted(upcast):
        if part not in kwargs and (path / part).is_dir():
            kwargs[part] = _load_part(path, part, fp32)
    if plan.quantization is not Quantization.NONE:
        if device.startswith("cuda"):
            kwargs["quantization_config"] = quantization_config(plan.quantization, _transformers(path), weights_dtype)
        else:
            log.info("%s: %s quantisation needs a GPU; loading unquantised on %s", path, plan.quantization, device)
    started = time.perf_counter()
    try:
        pipe = getattr(diffusers, class_name).from_pretrained(str(path), dtype=weights_dtype, **kwargs)
    except (OSError, ValueError, KeyError, TypeError) as exc:  # missing, damaged or mismatched files
        raise BackendError(f"the weights at {path} could not be loaded", raw_message=str(exc)) from exc
    if "vae" in upcast and vae_dtype != weights_dtype and getattr(pipe, "vae", None) is not None:
        float32_island(pipe.vae)
    if place:
        apply_plan(pipe, plan, device)
    pipe.set_progress_bar_config(disable=True)
    log.info(
        "loaded %s from %s on %s (%s) in %.1fs",
        class_name,
        path,
        device,
        plan.mode.value,
        time.perf_counter() - started,
    )
    return pipe


def _float32() -> Any:
    import torch

    return torch.float32


def _transformers(path: Path) -> tuple[str, ...]:
    return tuple(name for name in TRANSFORMERS if (path / name).is_dir()) or ("transformer",)


def _load_part(path: Path, part: str, dtype: Any) -> Any:
    """One component of a diffusers folder on its own, in `dtype`."""
    try:
        return component_class(path, part).from_pretrained(str(path), subfolder=part, dtype=dtype)
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise BackendError(f"the {part} weights at {path} could not be loaded", raw_message=str(exc)) from exc


def float32_island(vae: Any) -> None:
    """Keep an fp32 VAE usable by a pipeline whose other parts run in fp16: its encoder and decoder take inputs in
    whatever dtype they come and hand results back in that dtype (pipelines such as Flux pass latents to the VAE
    without casting them). Inside, everything runs in float32, where fp16 VAEs overflow."""
    import torch

    for name in ("encoder", "decoder", "quant_conv", "post_quant_conv"):
        module = getattr(vae, name, None)
        if not isinstance(module, torch.nn.Module):
            continue
        incoming: list[Any] = []

        def cast_in(mod: Any, args: tuple[Any, ...], kwargs: dict[str, Any], _seen: list[Any] = incoming) -> Any:
            floats = [a for a in args if isinstance(a, torch.Tensor) and a.is_floating_point()]
            _seen[:] = [floats[0].dtype] if floats else []
            cast = tuple(a.float() if isinstance(a, torch.Tensor) and a.is_floating_point() else a for a in args)
            return cast, kwargs

        def cast_out(mod: Any, args: Any, kwargs: Any, output: Any, _seen: list[Any] = incoming) -> Any:
            if _seen and isinstance(output, torch.Tensor) and output.is_floating_point():
                return output.to(_seen[0])
            return output

        module.register_forward_pre_hook(cast_in, with_kwargs=True)
        module.register_forward_hook(cast_out, with_kwargs=True)
