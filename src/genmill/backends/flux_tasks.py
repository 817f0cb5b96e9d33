"""The Flux backend's parts below the task level: sizes, seeds, step reporting, masks, LoRA files, and outputs
(control maps: `control_maps.py`; the state the Flux backends share: `flux_shared.py`).

Kept apart from `flux.py` so that the backend reads as "prepare, call the pipeline, save", and so these rules
(which size is generated, which pixels are repainted, which LoRA file a name means) can be tested on their own.
torch and diffusers are imported inside functions only: the registry imports the backend without them.
"""

from __future__ import annotations

import inspect
import json
import logging
import math
import re
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from genmill.backends.base import RunContext
from genmill.backends.image_toolkit import cancelled_error, encode_png, field_value
from genmill.domain.catalog import TaskInput
from genmill.errors import BackendError

MAX_PIXELS = 1_048_576
"""API.md: width x height may not exceed 1,048,576; image inputs are scaled down to it before generating."""

MAX_SEED = 2**32 - 1
"""torch.Generator takes any 64-bit seed; PiAPI seeds are 32-bit in practice, so -1 draws from that range."""

WHITE_THRESHOLD = 250
"""fill-inpaint repaints the white pixels of `image`: every channel at least this (JPEG never keeps 255 exact)."""

log = logging.getLogger("genmill.backends.flux")

LORA_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
"""A `lora_type` is a file name inside the LoRA folder, never a path (no slashes, no leading dot)."""


# --- sizes and seeds -------------------------------------------------------------------------------------------


def generation_size(width: int, height: int, multiple: int) -> tuple[int, int]:
    """The size the pipeline generates for a requested output size.

    Flux packs 2x2 latent patches and its VAE downsamples 8x, so both sides must be multiples of 16 (the tiny
    test VAEs use smaller factors; `multiple` comes from the loaded pipeline). Round each side to the nearest
    multiple (halves round up), at least one multiple; the result is resized to the exact request afterwards.
    """

    def nearest(side: int) -> int:
        return max(multiple, (side + multiple // 2) // multiple * multiple)

    return nearest(width), nearest(height)


def fit_pixels(width: int, height: int, max_pixels: int = MAX_PIXELS) -> tuple[int, int]:
    """`width`x`height` scaled down (keeping the aspect ratio) to at most `max_pixels`; unchanged when it fits."""
    if width * height <= max_pixels:
        return width, height
    factor = math.sqrt(max_pixels / (width * height))
    return max(1, math.floor(width * factor)), max(1, math.floor(height * factor))


def pick_seed(inputs: TaskInput) -> int:
    """The task's seed; -1 (the default) draws one, so every result can be reproduced from its logged seed."""
    seed = field_value(inputs, "seed", -1)
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < -1:
        raise BackendError(f"seed: must be -1 or a non-negative integer, got {seed!r}")
    return secrets.randbelow(MAX_SEED + 1) if seed == -1 else seed


def positive_int(inputs: TaskInput, name: str, default: int, maximum: int) -> int:
    """An integer input checked again here: backends also run on inputs that did not come through the API."""
    value = field_value(inputs, name, default)
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= maximum:
        raise BackendError(f"{name}: must be an integer from 1 to {maximum}, got {value!r}")
    return value


def number(inputs: TaskInput, name: str, default: float, low: float, high: float) -> float:
    value = field_value(inputs, name, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        raise BackendError(f"{name}: must be a number from {low} to {high}, got {value!r}")
    return float(value)


def prompt_text(inputs: TaskInput) -> str:
    prompt = field_value(inputs, "prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        raise BackendError("prompt: a non-empty prompt is required")
    return prompt


# --- progress --------------------------------------------------------------------------------------------------


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


def white_mask(image: Image.Image) -> Image.Image:
    """fill-inpaint's mask (API.md): the white pixels of `image`, and fully transparent ones, become 255."""
    rgba = np.asarray(image.convert("RGBA"))
    white = (rgba[..., :3] >= WHITE_THRESHOLD).all(axis=-1) | (rgba[..., 3] == 0)
    if not white.any():
        raise BackendError("image: it has no white pixels, so there is nothing to fill (white marks the area)")
    return Image.fromarray((white * 255).astype(np.uint8), mode="L")


def outpaint_canvas(image: Image.Image, setting: Any) -> tuple[Image.Image, Image.Image]:
    """The image placed on a larger canvas and the mask of the added border (255 = generate).

    The border starts as the image's edge pixels stretched outwards (not black), which gives the fill model
    colours to continue; the mask alone decides what gets repainted.
    """
    sides = [int(getattr(setting, f"outpaint_{side}", 0) or 0) for side in ("left", "right", "top", "bottom")]
    if any(side < 0 for side in sides) or not any(sides):
        raise BackendError("custom_settings[0]: outpaint needs at least one of outpaint_left/right/top/bottom > 0")
    left, right, top, bottom = sides
    rgb = image.convert("RGB")
    width, height = rgb.width + left + right, rgb.height + top + bottom
    padded = np.pad(np.asarray(rgb), ((top, bottom), (left, right), (0, 0)), mode="edge")
    mask = np.full((height, width), 255, dtype=np.uint8)
    mask[top : top + rgb.height, left : left + rgb.width] = 0
    return Image.fromarray(padded), Image.fromarray(mask, mode="L")


# --- LoRA adapters -----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LoraChoice:
    name: str
    adapter: str
    path: Path
    strength: float


def resolve_loras(settings: Any, loras_dir: Path) -> list[LoraChoice]:
    """Map `lora_settings[].lora_type` to LoRA files in `loras_dir`: `<lora_type>.safetensors`, or a folder
    `<lora_type>/` holding diffusers' `pytorch_lora_weights.safetensors`."""
    if not isinstance(settings, list) or not settings:
        raise BackendError("lora_settings: at least one {lora_type, lora_strength} entry is required")
    choices: list[LoraChoice] = []
    for index, setting in enumerate(settings):
        where = f"lora_settings[{index}]"
        name = getattr(setting, "lora_type", None)
        if not isinstance(name, str) or not LORA_NAME.match(name) or ".." in name:
            raise BackendError(f"{where}.lora_type: {name!r} is not a LoRA name (letters, digits, '.', '_', '-')")
        strength = getattr(setting, "lora_strength", 1.0)
        if isinstance(strength, bool) or not isinstance(strength, int | float) or not 0 <= strength <= 2:
            raise BackendError(f"{where}.lora_strength: must be a number from 0 to 2, got {strength!r}")
        if getattr(setting, "lora_image", ""):
            raise BackendError(f"{where}.lora_image: LoRA reference images are not supported by this server")
        path = loras_dir / f"{name}.safetensors"
        if not path.is_file():
            path = loras_dir / name / "pytorch_lora_weights.safetensors"
        if not path.is_file():
            available = sorted(p.stem for p in loras_dir.glob("*.safetensors")) if loras_dir.is_dir() else []
            raise BackendError(
                f"{where}.lora_type: no LoRA named {name!r} on this server"
                + (f" (available: {', '.join(available)})" if available else f" (none installed in {loras_dir})")
            )
        if any(choice.name == name for choice in choices):
            raise BackendError(f"{where}.lora_type: {name!r} is listed twice")
        adapter = "lora_" + re.sub(r"\W", "_", name)
        choices.append(LoraChoice(name=name, adapter=adapter, path=path, strength=float(strength)))
    return choices


class LoraState:
    """Which LoRA adapters sit in one transformer, and which are switched on.

    Adapters stay loaded between tasks (loading a LoRA costs seconds) and are switched off for tasks that ask
    for none, so a LoRA never leaks into a later task. At most `keep` adapters stay resident.
    """

    def __init__(self, keep: int = 8) -> None:
        self.keep = keep
        self.loaded: list[str] = []
        self.pipe: Any = None
        """The pipeline the adapters were switched on through (it owns the patched modules)."""

    @property
    def active(self) -> bool:
        return self.pipe is not None

    def off(self) -> None:
        if self.pipe is not None:
            self.pipe.disable_lora()
            self.pipe = None

    def apply(self, pipe: Any, choices: list[LoraChoice], ctx: RunContext) -> None:
        """Load what is missing and switch on exactly `choices` at their strengths."""
        wanted = [choice.adapter for choice in choices]
        stale = [name for name in self.loaded if name not in wanted]
        if len(self.loaded) + len(wanted) > self.keep and stale:
            pipe.delete_adapters(stale)
            self.loaded = [name for name in self.loaded if name not in stale]
        for choice in choices:
            if choice.adapter not in self.loaded:
                ctx.log(f"loading LoRA {choice.name}")
                try:
                    pipe.load_lora_weights(str(choice.path), adapter_name=choice.adapter)
                except (ValueError, KeyError, RuntimeError, OSError) as exc:
                    raise BackendError(
                        f"lora_settings: the LoRA {choice.name!r} does not fit this model",
                        raw_message=f"{type(exc).__name__}: {exc}",
                    ) from exc
                self.loaded.append(choice.adapter)
        pipe.enable_lora()
        pipe.set_adapters(wanted, adapter_weights=[choice.strength for choice in choices])
        self.pipe = pipe
        ctx.log("LoRA: " + ", ".join(f"{choice.name} x{choice.strength:g}" for choice in choices))


# --- loading and sharing ---------------------------------------------------------------------------------------


def same_components(pipeline_class: Any, pipe: Any, **extra: Any) -> Any:
    """Another pipeline class over `pipe`'s very modules (no copy, no dtype cast: `from_pipe` casts to float32
    unless told otherwise, and warns when told)."""
    accepted = inspect.signature(pipeline_class.__init__).parameters
    return pipeline_class(**{name: part for name, part in pipe.components.items() if name in accepted}, **extra)


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


# --- outputs ---------------------------------------------------------------------------------------------------


def save_images(images: list[Image.Image], size: tuple[int, int], ctx: RunContext) -> dict[str, Any]:
    """Resize each image to the requested size when the pipeline generated a rounded one, store it as PNG, and
    answer PiAPI's shape: `image_url` for one image, `image_urls` for several."""
    urls = []
    for image in images:
        rgb = image.convert("RGB")
        if rgb.size != size:
            rgb = rgb.resize(size, Image.Resampling.LANCZOS)
        urls.append(ctx.save_output(encode_png(rgb), ext="png", content_type="image/png"))
    return {"image_url": urls[0]} if len(urls) == 1 else {"image_urls": urls}
