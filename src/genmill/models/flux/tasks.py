"""The Flux backend's parts below the task level: sizes, numbers, masks, pipelines over shared modules, and outputs
(control maps: `control_maps.py`; the state the Flux backends share: `shared.py`; seeds and step progress,
which every family uses: `genmill.backends.toolkit`; LoRA files: `genmill.backends.loras`).

Kept apart from `backend.py` so that the backend reads as "prepare, call the pipeline, save", and so these rules
(which size is generated, which pixels are repainted) can be tested on their own.
torch and diffusers are imported inside functions only: the registry imports the backend without them.
"""

from __future__ import annotations

import inspect
import logging
import math
from typing import Any

import numpy as np
from PIL import Image

from genmill.backends.base import RunContext
from genmill.backends.toolkit import encode_png, field_value
from genmill.domain.catalog import TaskInput
from genmill.errors import BackendError

MAX_PIXELS = 1_048_576
"""API.md: width x height may not exceed 1,048,576; image inputs are scaled down to it before generating."""

WHITE_THRESHOLD = 250
"""fill-inpaint repaints the white pixels of `image`: every channel at least this (JPEG never keeps 255 exact)."""

log = logging.getLogger("genmill.backends.flux")


# --- sizes and numbers -----------------------------------------------------------------------------------------


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


# --- masks -----------------------------------------------------------------------------------------------------


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


# --- loading and sharing ---------------------------------------------------------------------------------------


def same_components(pipeline_class: Any, pipe: Any, **extra: Any) -> Any:
    """Another pipeline class over `pipe`'s very modules (no copy, no dtype cast: `from_pipe` casts to float32
    unless told otherwise, and warns when told)."""
    accepted = inspect.signature(pipeline_class.__init__).parameters
    return pipeline_class(**{name: part for name, part in pipe.components.items() if name in accepted}, **extra)


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
