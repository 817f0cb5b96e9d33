"""Memory planning: where a diffusion pipeline's weights live on a card of a given size, decided before loading.

A pipeline moved whole onto the GPU needs its transformer, text encoders, VAE and the working memory of one run
at once; FLUX.1-dev (about 34 GB with activations) and every 13-16B video model do not fit a 24 GB card that
way. `plan_memory` picks, from a model's `Footprint` and the card's size, the fastest way that fits:

1. `gpu`: everything resident. Chosen when weights + activations + margin + `RUNTIME_RESERVE_BYTES` fit.
2. `model-offload`: each component moves whole to the GPU when the pipeline calls it (the text encoders run once,
   then the transformer for every step, then the VAE). Chosen when the largest single component (one expert of
   Wan 2.2) plus activations fits. Costs the host-to-device copies of each component once per task: a modest
   slowdown, a few seconds per task on PCIe 4.
3. `group-offload`: the transformer's blocks stream from pinned CPU memory one group at a time, the next group
   copied on a CUDA stream while the current one computes; text encoders stream leaf by leaf. Chosen when the
   VAE, activations and `GROUP_STREAM_SHARE` of the largest component fit. Every step copies the whole transformer
   over PCIe, so a step is slower when it is short (images) and nearly free when it is long (video).
4. `model-offload` with an NF4 transformer: only when group offload cannot fit and a 4-bit transformer with model
   offload can. NF4 costs some fidelity (fine detail and text rendering) so it is never picked while a
   full-precision plan fits.
5. `sequential-offload`: every leaf module copied in just before it runs, synchronously: the least GPU memory
   (activations plus `SEQUENTIAL_SHARE` of the largest component) and the slowest (often 5-20x a whole-GPU step).
   The last resort; when even that does not fit, the plan says so and the run will likely fail at the default size.

Quantisation shrinks the transformer only (`QUANTIZED_PERCENT`): bitsandbytes int8 and torchao float8
weight-only keep about half, NF4 about a quarter plus its block scales and the layers left in bf16. bitsandbytes
weights are only combined with `gpu` and `model-offload`, the modes they are known to work with in diffusers.

Video models get VAE tiling (decode the clip in overlapping tiles) unless they are whole-GPU with a further
`activations` of room to spare, because decoding a full clip at once can need as much memory as the denoiser.

An operator override (`GENMILL_MEMORY_MODES`, parsed by `parse_memory_overrides`) always wins; the plan's `reason`
then says what the automatic choice would have been and warns when the estimate says it will not fit.

The figures in `FOOTPRINTS` are weight sizes computed from each model's published architecture (parameter
counts x 2 bytes, or x 4 for parts diffusers keeps in fp32); `activations` are estimates of one run at
genmill's default size for that model, to be replaced by measurements from `python -m bench.gpu`.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


def normalize_device(device: str) -> str:
    """ "cuda" means the first GPU: settings, placements and memory budgets all say "cuda:0" for it."""
    return "cuda:0" if device == "cuda" else device


GB = 10**9
GIB = 2**30

RUNTIME_RESERVE_BYTES = GIB
"""Always kept free besides the margin: the CUDA context, cuBLAS workspaces and allocator fragmentation."""
GROUP_STREAM_SHARE = (1, 10)
"""Share of the largest component on the GPU under group offload: the embeddings, the running block group and
the prefetched next one (2 of Flux's 57 blocks or Wan 14B's 40, rounded up generously)."""
SEQUENTIAL_SHARE = (1, 50)
"""Share of the largest component on the GPU under sequential offload: the biggest few leaf modules."""
QUANTIZED_PERCENT = {"none": 100, "int8": 52, "nf4": 28, "fp8": 52}
"""Transformer bytes kept by each quantisation, in percent of bf16 (weights plus scales and unquantised layers)."""


class MemoryMode(StrEnum):
    GPU = "gpu"
    """Every component resident on the GPU."""
    MODEL_OFFLOAD = "model-offload"
    """Whole components move to the GPU when used (`enable_model_cpu_offload`)."""
    GROUP_OFFLOAD = "group-offload"
    """Transformer blocks stream from CPU with CUDA streams (`enable_group_offload`)."""
    SEQUENTIAL_OFFLOAD = "sequential-offload"
    """Leaf modules stream one by one (`enable_sequential_cpu_offload`): slowest, least memory."""


class Quantization(StrEnum):
    NONE = "none"
    INT8 = "int8"
    """bitsandbytes LLM.int8 weights."""
    NF4 = "nf4"
    """bitsandbytes 4-bit NormalFloat with double quantisation."""
    FP8 = "fp8"
    """torchao float8 weight-only (fast on cards with fp8 units: Ada, Hopper and later)."""


BITSANDBYTES_MODES = (MemoryMode.GPU, MemoryMode.MODEL_OFFLOAD)
"""The modes bitsandbytes weights are combined with: accelerate's leaf hooks and block streaming move parameters
with plain tensor copies, which 4- and 8-bit bitsandbytes parameters do not survive reliably."""
QUALITY_COST = {
    Quantization.NONE: "",
    Quantization.INT8: "int8 weights are close to bf16 quality but run slower than bf16 on most cards",
    Quantization.NF4: "NF4 weights lose some fine detail and text rendering",
    Quantization.FP8: "fp8 weights lose a little fine detail",
}


@dataclass(frozen=True)
class Footprint:
    """A model's sizes at its compute dtype (bf16/fp16), in bytes."""

    transformer: int
    """The denoiser (for Wan 2.2 A14B: both experts together)."""
    encoders: int
    """Text encoders + image encoders."""
    vae: int
    activations: int
    """Peak working memory of one run at the default size (an estimate)."""
    transformer_parts: int = 1
    """How many separately loaded denoisers `transformer` is made of (2 for Wan 2.2's experts); model offload only
    needs one of them on the GPU at a time."""

    @property
    def weights(self) -> int:
        return self.transformer + self.encoders + self.vae

    def quantized_transformer(self, quantization: Quantization) -> int:
        return self.transformer * QUANTIZED_PERCENT[quantization.value] // 100

    def largest_component(self, quantization: Quantization = Quantization.NONE) -> int:
        """The biggest thing model offload moves onto the GPU at once."""
        part = self.quantized_transformer(quantization) // self.transformer_parts
        return max(part, self.encoders, self.vae)


def _share(size: int, fraction: tuple[int, int]) -> int:
    return size * fraction[0] // fraction[1]


@dataclass(frozen=True)
class MemoryPlan:
    mode: MemoryMode
    quantization: Quantization
    vae_tiling: bool
    reason: str
    """One sentence: why this plan (shown in logs and `genmill models`)."""

    def gpu_resident_bytes(self, footprint: Footprint) -> int:
        """What stays on the GPU between tasks (offload hooks move everything else back to the CPU after a run)."""
        if self.mode is MemoryMode.GPU:
            return footprint.quantized_transformer(self.quantization) + footprint.encoders + footprint.vae
        if self.mode is MemoryMode.GROUP_OFFLOAD:
            return footprint.vae
        return 0

    def gpu_peak_bytes(self, footprint: Footprint) -> int:
        """What a run needs on the GPU at its peak (weights then on the GPU plus activations)."""
        largest = footprint.largest_component(self.quantization)
        if self.mode is MemoryMode.GPU:
            weights = self.gpu_resident_bytes(footprint)
        elif self.mode is MemoryMode.MODEL_OFFLOAD:
            weights = largest
        elif self.mode is MemoryMode.GROUP_OFFLOAD:
            weights = footprint.vae + _share(largest, GROUP_STREAM_SHARE)
        else:
            weights = _share(largest, SEQUENTIAL_SHARE)
        return weights + footprint.activations

    def cpu_bytes(self, footprint: Footprint) -> int:
        """What it holds in CPU RAM (the offloaded parts; pinned under group offload)."""
        transformer = footprint.quantized_transformer(self.quantization)
        if self.mode is MemoryMode.GPU:
            return 0
        if self.mode is MemoryMode.GROUP_OFFLOAD:
            return transformer + footprint.encoders
        return transformer + footprint.encoders + footprint.vae


def _fits(plan: MemoryPlan, footprint: Footprint, budget: int) -> bool:
    return plan.gpu_peak_bytes(footprint) <= budget


def _tiling(mode: MemoryMode, quantization: Quantization, footprint: Footprint, budget: int, video: bool) -> bool:
    if not video:
        return False
    peak = MemoryPlan(mode, quantization, False, "").gpu_peak_bytes(footprint)
    return not (mode is MemoryMode.GPU and budget - peak >= footprint.activations)


def _gb(size: int) -> str:
    return f"{size / GB:.1f} GB"


def _candidates(quantization: Quantization | None) -> list[tuple[MemoryMode, Quantization]]:
    """The automatic order of preference: fastest full-precision plan first, quantisation before the slowest."""
    if quantization is None:
        return [
            (MemoryMode.GPU, Quantization.NONE),
            (MemoryMode.MODEL_OFFLOAD, Quantization.NONE),
            (MemoryMode.GROUP_OFFLOAD, Quantization.NONE),
            (MemoryMode.MODEL_OFFLOAD, Quantization.NF4),
            (MemoryMode.SEQUENTIAL_OFFLOAD, Quantization.NONE),
        ]
    modes = BITSANDBYTES_MODES if quantization in (Quantization.INT8, Quantization.NF4) else tuple(MemoryMode)
    return [(mode, quantization) for mode in modes]


WHY = {
    MemoryMode.GPU: "weights and activations fit on the card",
    MemoryMode.MODEL_OFFLOAD: "the whole pipeline does not fit but its largest component with activations does",
    MemoryMode.GROUP_OFFLOAD: "even the largest component with activations does not fit, so its blocks stream "
    "from CPU memory",
    MemoryMode.SEQUENTIAL_OFFLOAD: "nothing faster fits, so every layer is copied in as it runs",
}


def _auto(footprint: Footprint, budget: int, quantization: Quantization | None) -> tuple[MemoryPlan, bool]:
    """The first candidate that fits (or the last one, marked as not fitting)."""
    candidates = _candidates(quantization)
    for mode, quant in candidates:
        plan = MemoryPlan(mode, quant, False, "")
        if _fits(plan, footprint, budget):
            return plan, True
    mode, quant = candidates[-1]
    return MemoryPlan(mode, quant, False, ""), False


def _describe(mode: MemoryMode, quantization: Quantization) -> str:
    return mode.value if quantization is Quantization.NONE else f"{mode.value}+{quantization.value}"


def plan_memory(
    footprint: Footprint,
    card_bytes: int,
    *,
    video: bool = False,
    mode: MemoryMode | None = None,
    quantization: Quantization | None = None,
    margin_bytes: int = 0,
) -> MemoryPlan:
    """The memory plan for a model with this footprint on a card of `card_bytes` (see the module docstring for the
    order of preference). `mode` / `quantization` are the operator's overrides; a mode given without a
    quantisation means no quantisation, a quantisation without a mode lets the planner pick the mode for it."""
    budget = card_bytes - margin_bytes - RUNTIME_RESERVE_BYTES
    auto, auto_fits = _auto(footprint, budget, quantization)
    if mode is None:
        chosen, quant = auto.mode, auto.quantization
        peak = auto.gpu_peak_bytes(footprint)
        estimate = f"estimated peak {_gb(peak)} of a {_gb(budget)} budget"
        if not auto_fits:
            reason = f"{chosen.value}: {estimate}, so even this will likely run out of memory at the default size"
        elif quant is not Quantization.NONE and quantization is None:
            reason = (
                f"{_describe(chosen, quant)}: neither full-precision offload fits ({estimate}); {QUALITY_COST[quant]}"
            )
        elif quantization is not None:
            cost = QUALITY_COST[quant]
            reason = f"{_describe(chosen, quant)}: quantisation set by the operator; {WHY[chosen]} ({estimate})"
            reason += f"; {cost}" if cost else ""
        else:
            reason = f"{chosen.value}: {WHY[chosen]} ({estimate})"
    else:
        chosen, quant = mode, quantization or Quantization.NONE
        plan = MemoryPlan(chosen, quant, False, "")
        peak = plan.gpu_peak_bytes(footprint)
        reason = (
            f"{_describe(chosen, quant)}: set by the operator (automatic: {_describe(auto.mode, auto.quantization)})"
            f", estimated peak {_gb(peak)} of a {_gb(budget)} budget"
        )
        if peak > budget:
            reason += ", which will likely run out of memory"
        if quant in (Quantization.INT8, Quantization.NF4) and chosen not in BITSANDBYTES_MODES:
            reason += f"; bitsandbytes weights are not known to work with {chosen.value}"
        if QUALITY_COST[quant]:
            reason += f"; {QUALITY_COST[quant]}"
    tiling = _tiling(chosen, quant, footprint, budget, video)
    return MemoryPlan(chosen, quant, tiling, reason)


def parse_memory_overrides(text: str) -> dict[str, tuple[MemoryMode | None, Quantization | None]]:
    """Parse the operator setting `GENMILL_MEMORY_MODES`, e.g.
    `flux1-dev=model-offload,wan2.1-t2v-14b=group-offload+nf4,hunyuanvideo=fp8,*=gpu`.

    Entries are separated by commas; each is `model=value`, where model is a weight-folder name (or `*` for every
    model without its own entry) and value is a memory mode, a quantisation, `mode+quantisation`, or `auto`
    (None: the planner decides). Raises ValueError naming the bad entry."""
    overrides: dict[str, tuple[MemoryMode | None, Quantization | None]] = {}
    modes = ", ".join(m.value for m in MemoryMode)
    quants = ", ".join(q.value for q in Quantization)
    for raw in text.split(","):
        entry = raw.strip()
        if not entry:
            continue
        name, sep, value = (part.strip() for part in entry.partition("="))
        if not sep or not name or not value:
            raise ValueError(f"memory override {entry!r} is not model=mode[+quantization]")
        if name in overrides:
            raise ValueError(f"memory override {entry!r}: {name} is given twice")
        mode: MemoryMode | None = None
        quantization: Quantization | None = None
        for token in (t.strip() for t in value.split("+")):
            if token == "auto":
                continue
            if token in {m.value for m in MemoryMode}:
                if mode is not None:
                    raise ValueError(f"memory override {entry!r} names two memory modes")
                mode = MemoryMode(token)
            elif token in {q.value for q in Quantization}:
                if quantization is not None:
                    raise ValueError(f"memory override {entry!r} names two quantizations")
                quantization = Quantization(token)
            else:
                raise ValueError(
                    f"memory override {entry!r}: {token!r} is neither a memory mode ({modes}), a quantization "
                    f"({quants}) nor auto"
                )
        overrides[name] = (mode, quantization)
    return overrides


def override_for(
    overrides: dict[str, tuple[MemoryMode | None, Quantization | None]], *names: str
) -> tuple[MemoryMode | None, Quantization | None]:
    """The override that applies to a model known by `names` (a backend name, its weight folder, its family): the
    first of them with an entry, else `*`, else none."""
    for name in (*names, "*"):
        if name in overrides:
            return overrides[name]
    return None, None


def _bf16(params: float) -> int:
    return int(params * 2)


def _fp32(params: float) -> int:
    return int(params * 4)


# Weight sizes from parameter counts of the published architectures (each built from its published config with
# diffusers/transformers on the meta device and counted): FLUX.1 transformer 11.90B (19 double + 38 single blocks,
# width 3072), T5-XXL encoder 4.76B, CLIP-L text 0.123B, FLUX VAE 83.8M; Wan 2.1 1.3B transformer 1.42B (30 layers,
# width 1536), 14B T2V 14.29B (40 layers, width 5120), 14B I2V/FLF2V 16.39B (the same plus image cross-attention),
# UMT5-XXL encoder 5.68B, Wan VAE 127M and the CLIP ViT-H/14 image encoder 631M, both kept in fp32 as diffusers'
# Wan examples do; SkyReels-V2-I2V-14B is the Wan 2.1 I2V architecture; HunyuanVideo transformer 12.82B (20 double
# + 40 single blocks, width 3072), its Llama-3-8B text encoder 7.50B (LlamaModel, no LM head), HunyuanVideo-I2V's
# Llava-Llama-3-8B 8.35B (LM head and CLIP ViT-L/336 vision tower included), HunyuanVideo VAE 246M; FramePack's
# transformer 12.87B with a SigLIP so400m image encoder 428M.
FLUX_ENCODERS = _bf16(4.76e9) + _bf16(0.123e9)
FLUX = Footprint(transformer=_bf16(11.90e9), encoders=FLUX_ENCODERS, vae=_bf16(83.8e6), activations=3 * GB)
UMT5 = _bf16(5.68e9)
WAN_VAE = _fp32(127e6)
CLIP_H = _fp32(631e6)
WAN_14B, WAN_14B_I2V = _bf16(14.29e9), _bf16(16.39e9)
LLAMA_TEXT = _bf16(7.50e9) + _bf16(0.123e9)
HUNYUAN_VAE = _bf16(246e6)

FOOTPRINTS: dict[str, Footprint] = {
    # Images at 1024x1024 (4096 image + 512 text tokens); activations include the VAE decode.
    "flux1-dev": FLUX,
    "flux1-schnell": FLUX,
    "flux1-fill-dev": FLUX,
    "flux1-kontext-dev": FLUX,
    # Wan 2.1 at 480p, 85 frames (about 34k tokens); the clip decode dominates the activations.
    "wan2.1-t2v-1.3b": Footprint(_bf16(1.42e9), UMT5, WAN_VAE, 5 * GB),
    "wan2.1-t2v-14b": Footprint(WAN_14B, UMT5, WAN_VAE, 6 * GB),
    "wan2.1-i2v-14b": Footprint(WAN_14B_I2V, UMT5 + CLIP_H, WAN_VAE, 6 * GB),
    "wan2.1-flf2v-14b": Footprint(WAN_14B_I2V, UMT5 + CLIP_H, WAN_VAE, 6 * GB),
    # Wan 2.2 A14B: two 14B experts (high-noise, low-noise), 720p by default, 81 frames (about 76k tokens).
    "wan2.2-t2v-a14b": Footprint(2 * WAN_14B, UMT5, WAN_VAE, 12 * GB, transformer_parts=2),
    "wan2.2-i2v-a14b": Footprint(2 * WAN_14B, UMT5, WAN_VAE, 12 * GB, transformer_parts=2),
    # SkyReels-V2 I2V 14B at 540p, 97 frames (about 51k tokens).
    "skyreels-v2-i2v": Footprint(WAN_14B_I2V, UMT5 + CLIP_H, WAN_VAE, 9 * GB),
    # HunyuanVideo at 540p, 129 frames (about 67k tokens); I2V at 720p (about 119k tokens).
    "hunyuanvideo": Footprint(_bf16(12.82e9), LLAMA_TEXT, HUNYUAN_VAE, 10 * GB),
    "hunyuanvideo-i2v-concat": Footprint(_bf16(12.82e9), _bf16(8.35e9) + _bf16(0.123e9), HUNYUAN_VAE, 16 * GB),
    "hunyuanvideo-i2v-replace": Footprint(_bf16(12.82e9), _bf16(8.35e9) + _bf16(0.123e9), HUNYUAN_VAE, 16 * GB),
    # FramePack generates a clip in short sections, so its working memory stays small.
    "framepack": Footprint(_bf16(12.87e9), LLAMA_TEXT + _bf16(428e6), HUNYUAN_VAE, 5 * GB),
}
MEASURED_SLOWDOWN = {
    (MemoryMode.GPU, False): "1x",
    (MemoryMode.GPU, True): "1x",
    (MemoryMode.MODEL_OFFLOAD, False): "~6x",
    (MemoryMode.MODEL_OFFLOAD, True): "~1.1-1.6x",
    (MemoryMode.GROUP_OFFLOAD, False): "~3x",
    (MemoryMode.GROUP_OFFLOAD, True): "~1.1-1.5x",
    (MemoryMode.SEQUENTIAL_OFFLOAD, False): "~25x",
    (MemoryMode.SEQUENTIAL_OFFLOAD, True): "~2.2-3.9x",
}
"""Time per task relative to whole-GPU, by mode and by (image, video), as `python -m bench.gpu` measured the
transformers on an H200 (bench/results/gpu-2026-11-29*.json: FLUX.1-dev at 1024x1024; Wan 2.1 1.3B and 14B at
480p, HunyuanVideo at 544x960). Short image steps cannot hide the weight copies that long video steps do; a card on a
slower host link (PCIe 4) pays more for every offload mode."""
IMAGE_MODELS = frozenset(name for name in FOOTPRINTS if name.startswith("flux1-"))
DEFAULT_MARGIN_BYTES = 2 * GIB
"""The default of GENMILL_GPU_MEMORY_MARGIN_MB: what the server keeps free on a card besides the runtime reserve,
and so what the documented table plans with."""
CARD_SIZES_GB = (24, 48, 80, 141)
"""The card sizes of the documented table (RTX 4090 / L40S-A6000 / A100-H100 / H200); taken as GiB, which is how
those cards report their memory."""


def plan_for(model: str, card_bytes: int, **overrides: object) -> MemoryPlan:
    """`plan_memory` for a model of `FOOTPRINTS`, with `video` set from the model."""
    footprint = FOOTPRINTS[model]
    return plan_memory(footprint, card_bytes, video=model not in IMAGE_MODELS, **overrides)  # type: ignore[arg-type]


def plan_table_markdown() -> str:
    """The card-size table of docs/gpu.md, generated so that the doc cannot drift from the planner; planned with
    the server's default margin, so it shows what a server with default settings picks."""
    header = "| model | weights | " + " | ".join(f"{gb} GB card" for gb in CARD_SIZES_GB) + " |"
    lines = [header, "|---|---|" + "---|" * len(CARD_SIZES_GB)]
    for model, footprint in FOOTPRINTS.items():
        cells = []
        for gb in CARD_SIZES_GB:
            plan = plan_for(model, gb * GIB, margin_bytes=DEFAULT_MARGIN_BYTES)
            cell = _describe(plan.mode, plan.quantization)
            cell += ", tiled VAE" if plan.vae_tiling else ""
            cells.append(f"{cell} ({MEASURED_SLOWDOWN[plan.mode, model not in IMAGE_MODELS]})")
        lines.append(f"| {model} | {_gb(footprint.weights)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    print(plan_table_markdown())
