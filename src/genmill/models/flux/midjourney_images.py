"""The image rules of the Midjourney stand-in, apart from any model: sizes from aspect ratios, the 2x2 grid, the
canvases of zoom-out and pan, the kept pixels of inpainting, and the output object PiAPI's Midjourney answers.

Kept free of torch and diffusers so that each rule can be tested on its own (tests/backends/test_midjourney.py).
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image, ImageOps

from genmill.backends.base import RunContext
from genmill.backends.toolkit import encode_png
from genmill.errors import BackendError, InputRejected
from genmill.models.flux.midjourney_catalog import actions_for, parse_aspect_ratio
from genmill.models.flux.tasks import fit_pixels, outpaint_canvas

MAX_ORIGIN_SIDE = 4096
"""Earlier outputs are read up to this side (a 4x upscale of a 1024 px image); user inputs stay within 2048."""
PAN_GROWTH = 0.5
"""Pan grows the canvas by half the image's side in the chosen direction (our choice, close to Midjourney's)."""
BLEND_SHAPES = {"square": "1:1", "portrait": "2:3", "landscape": "3:2"}


def size_for_aspect(aspect_ratio: str, side: int, multiple: int) -> tuple[int, int]:
    """Width and height with the area of a `side` x `side` square and the ratio "W:H", both rounded to `multiple`
    (the pipeline's latent patch) and at least one multiple."""
    ratio_w, ratio_h = parse_aspect_ratio(aspect_ratio)
    scale = math.sqrt(ratio_w / ratio_h)
    width, height = side * scale, side / scale
    return max(multiple, round(width / multiple) * multiple), max(multiple, round(height / multiple) * multiple)


def grid(images: list[Image.Image]) -> Image.Image:
    """The 2x2 grid of four equally sized images, at full resolution: each quadrant IS one image."""
    if len(images) != 4 or len({image.size for image in images}) != 1:
        raise BackendError(f"a grid needs four images of one size, got {[image.size for image in images]}")
    width, height = images[0].size
    sheet = Image.new("RGB", (width * 2, height * 2))
    for index, image in enumerate(images):
        sheet.paste(image.convert("RGB"), ((index % 2) * width, (index // 2) * height))
    return sheet


@dataclass(frozen=True)
class Sides:
    """Pixels added on each side of an image (the shape `outpaint_canvas` reads)."""

    outpaint_left: int = 0
    outpaint_right: int = 0
    outpaint_top: int = 0
    outpaint_bottom: int = 0


def zoom_sides(width: int, height: int, zoom_ratio: str, aspect_ratio: str) -> Sides:
    """Zoom out: the canvas is `zoom_ratio` times the image on each side (or reshaped to `aspect_ratio` around it),
    with the image centred; "1" without an aspect ratio is Midjourney's Make Square."""
    ratio = float(zoom_ratio)
    canvas_w, canvas_h = round(width * ratio), round(height * ratio)
    if aspect_ratio:
        ratio_w, ratio_h = parse_aspect_ratio(aspect_ratio)
        canvas_w = max(canvas_w, round(canvas_h * ratio_w / ratio_h))
        canvas_h = max(canvas_h, round(canvas_w * ratio_h / ratio_w))
    elif ratio == 1.0:
        canvas_w = canvas_h = max(width, height)
    if (canvas_w, canvas_h) == (width, height):
        raise InputRejected("zoom_ratio: 1 with this aspect_ratio leaves nothing to paint; use a larger zoom_ratio")
    left, top = (canvas_w - width) // 2, (canvas_h - height) // 2
    return Sides(left, canvas_w - width - left, top, canvas_h - height - top)


def pan_sides(width: int, height: int, direction: str) -> Sides:
    grow_w, grow_h = max(1, round(width * PAN_GROWTH)), max(1, round(height * PAN_GROWTH))
    return {
        "left": Sides(outpaint_left=grow_w),
        "right": Sides(outpaint_right=grow_w),
        "up": Sides(outpaint_top=grow_h),
        "down": Sides(outpaint_bottom=grow_h),
    }[direction]


def extend(image: Image.Image, sides: Sides, max_pixels: int) -> tuple[Image.Image, Image.Image]:
    """The image on its larger canvas and the mask of the new area (255 = paint), scaled to at most `max_pixels`."""
    canvas, mask = outpaint_canvas(image, sides)
    size = fit_pixels(*canvas.size, max_pixels)
    if size != canvas.size:
        canvas = canvas.resize(size, Image.Resampling.LANCZOS)
        mask = mask.resize(size, Image.Resampling.NEAREST)
    return canvas, mask


def keep_unmasked(generated: Image.Image, original: Image.Image, mask: Image.Image) -> Image.Image:
    """`generated` inside the mask (255) and `original` everywhere else, at the original's size: the pixels the
    mask does not mark are returned exactly as they were."""
    painted = generated.convert("RGB").resize(original.size, Image.Resampling.LANCZOS)
    keep = mask.convert("L").resize(original.size, Image.Resampling.NEAREST)
    return Image.composite(painted, original.convert("RGB"), keep)


def read_image(ctx: RunContext, ref: str, *, field: str, max_side: int) -> Image.Image:
    """Decode an image reference as RGB, refusing sides over `max_side` before decoding its pixels."""
    data = ctx.read_input(ref, field=field).data
    try:
        image = Image.open(io.BytesIO(data))
        if max(image.size) > max_side:
            raise InputRejected(f"{field}: {image.width}x{image.height} is larger than {max_side}x{max_side}")
        image.load()
        return ImageOps.exif_transpose(image).convert("RGB")
    except BackendError:
        raise
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise InputRejected(f"{field}: not a decodable image", raw_message=f"{type(exc).__name__}: {exc}") from exc


def mask_of(image: Image.Image, size: tuple[int, int]) -> Image.Image:
    """The inpaint mask at `size`: white (or transparent) pixels are repainted; refuses a mask with none."""
    rgba = np.asarray(image.convert("RGBA").resize(size, Image.Resampling.NEAREST))
    white = (rgba[..., :3] >= 250).all(axis=-1) | (rgba[..., 3] == 0)
    if not white.any():
        raise InputRejected("mask: it has no white pixels, so there is nothing to repaint (white marks the region)")
    return Image.fromarray((white * 255).astype(np.uint8), mode="L")


def save_png(image: Image.Image, ctx: RunContext) -> str:
    return ctx.save_output(encode_png(image.convert("RGB")), ext="png", content_type="image/png")


def mj_output(task_type: str, *, seed: int | None = None, prompt: str = "", **fields: Any) -> dict[str, Any]:
    """PiAPI's Midjourney output object with every field present: empty where it does not apply (no Discord
    message here, no intermediate images), `actions` the follow-ups this result allows."""
    output: dict[str, Any] = {
        "image_url": "",
        "image_urls": [],
        "temporary_image_urls": [],
        "discord_image_url": "",
        "intermediate_image_urls": [],
        "task_progress": 100,
        "seed": seed,
        "prompt": prompt,
        "message": "",
        "error_messages": [],
        "actions": actions_for(task_type),
    }
    output.update(fields)
    return output


def images_output(
    task_type: str, images: list[Image.Image], ctx: RunContext, *, seed: int, prompt: str
) -> dict[str, Any]:
    """Four images and their grid (`image_url`), or one image: saved as PNG and answered in PiAPI's shape."""
    urls = [save_png(image, ctx) for image in images]
    if len(images) == 1:
        return mj_output(
            task_type, seed=seed, prompt=prompt, image_url=urls[0], image_urls=urls, temporary_image_urls=list(urls)
        )
    grid_url = save_png(grid(images), ctx)
    return mj_output(
        task_type, seed=seed, prompt=prompt, image_url=grid_url, image_urls=urls, temporary_image_urls=list(urls)
    )
