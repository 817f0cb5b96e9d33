"""The Midjourney stand-in's task runners: each prepares its images, calls a Flux pipeline through the Flux
backend's own helpers (`_common`, `_generate`: prompts, steps, seed, progress, errors) and answers PiAPI's
Midjourney output (`midjourney_images.mj_output`).

Follow-ups read their origin through `RunContext.origin()`: its input (the prompt), its output (the image URLs,
the seed, the prompt it was drawn with) and its files through `read_input`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from PIL import Image, ImageOps

from genmill.backends.base import RunContext
from genmill.backends.toolkit import StepCancelled, StepReporter, cancelled_error, field_value, pick_seed
from genmill.domain.catalog import TaskInput
from genmill.domain.records import OriginTask
from genmill.errors import BackendError, InputRejected
from genmill.models.flux.edit import FILL_GUIDANCE_FACTOR
from genmill.models.flux.midjourney_catalog import GRID_INDEXES
from genmill.models.flux.midjourney_images import (
    BLEND_SHAPES,
    MAX_ORIGIN_SIDE,
    extend,
    images_output,
    keep_unmasked,
    mask_of,
    mj_output,
    pan_sides,
    read_image,
    size_for_aspect,
    zoom_sides,
)
from genmill.models.flux.tasks import MAX_PIXELS, fit_pixels, generation_size


@dataclass(frozen=True)
class Settings:
    """How the stand-in draws: `side` x `side` pixels of area per image (the aspect ratio shapes it), `steps`
    denoising steps, the largest upscale that is refined by Flux (beyond it, Lanczos alone), and the largest
    image inpaint, outpaint and pan deliver (an upscaled origin is scaled down to it, as Midjourney's own
    zoom and pan grids are of standard size)."""

    side: int = 1024
    steps: int = 28
    guidance_scale: float = 3.5
    refine_max_pixels: int = 2048 * 2048
    canvas_max_pixels: int = MAX_PIXELS


VARIATION_STRENGTH = {"high_variation": 0.75, "low_variation": 0.4}
GRID_VARIATION_STRENGTH = 0.6
UPSCALE_STRENGTH = {"subtle": 0.15, "creative": 0.35}
DEFAULT_UPSCALE_STRENGTH = 0.25
UPSCALE_FACTOR = {"4x": 4}


# --- the origin ----------------------------------------------------------------------------------------------


def origin_prompt(inputs: TaskInput, origin: OriginTask | None) -> str:
    """The task's own prompt, else the one its origin was drawn with (kept in the origin's output), else its
    origin's input prompt."""
    own = field_value(inputs, "prompt", "") or ""
    if own.strip():
        return str(own)
    if origin is None:
        return ""
    return str(origin.output.get("prompt") or origin.input.get("prompt") or "")


def origin_image(ctx: RunContext, origin: OriginTask, index: str | None) -> Image.Image:
    """One image of the origin: image `index` ("1"-"4") of a grid, or the single image of an upscale."""
    if index in GRID_INDEXES:
        urls = origin.output.get("image_urls") or []
        if origin.task_type == "upscale" or len(urls) != 4:
            raise InputRejected(f'index: "{index}" picks an image of a grid; task {origin.task_id} has no grid')
        ref = urls[int(index) - 1]
    else:
        if origin.task_type != "upscale":
            raise InputRejected(
                f"index: {index or 'this operation'} works on an upscaled image; task {origin.task_id} is a "
                f"{origin.task_type} (upscale one of its images first)"
            )
        ref = origin.output.get("image_url") or ""
    if not isinstance(ref, str) or not ref:
        raise BackendError(f"origin_task_id: task {origin.task_id} has no image to work on")
    return read_image(ctx, ref, field="origin_task_id", max_side=MAX_ORIGIN_SIDE)


def run_seed(origin: OriginTask) -> dict[str, Any]:
    seed = origin.output.get("seed")
    if not isinstance(seed, int):
        raise BackendError(f"origin_task_id: task {origin.task_id} did not record the seed it was drawn with")
    return mj_output("seed", seed=seed)


# --- drawing -------------------------------------------------------------------------------------------------


def _draw(
    flux: Any,
    pipe_name: str,
    ctx: RunContext,
    settings: Settings,
    prompt: str,
    *,
    count: int,
    extra: Callable[[Any, dict[str, Any]], None],
) -> tuple[list[Image.Image], int]:
    """`count` images from one of the Flux backend's pipelines; `extra` adds the task's own arguments under the
    lock (sizes, images, masks, embeddings). Returns the images and the seed."""
    inputs = TaskInput(
        prompt=prompt or "an image", steps=settings.steps, guidance_scale=settings.guidance_scale, batch_size=count
    )
    seed = pick_seed(inputs)
    reporter = StepReporter(ctx, seed)
    reporter.check()
    flux.load()
    with flux.shared.lock:
        reporter.check()
        pipe = flux._pipes[pipe_name]
        kwargs = flux._common(inputs, ctx, reporter, pipe)
        flux._loras(pipe, inputs, ctx, False)
        started = time.perf_counter()
        try:
            extra(pipe, kwargs)
            images = flux._generate(pipe, kwargs)
        except StepCancelled:
            raise cancelled_error() from None
    ctx.log(f"drew {len(images)} image(s) in {time.perf_counter() - started:.1f}s, seed {seed}")
    return images, seed


def _sized(size: tuple[int, int]) -> Callable[[Any, dict[str, Any]], None]:
    def apply(pipe: Any, kwargs: dict[str, Any]) -> None:
        kwargs["width"], kwargs["height"] = generation_size(*size, pipe.vae_scale_factor * 2)

    return apply


def _aspect(inputs: TaskInput, default: str = "1:1") -> str:
    return str(field_value(inputs, "aspect_ratio", "") or default)


def _multiple(flux: Any, pipe_name: str) -> int:
    flux.load()
    return int(flux._pipes[pipe_name].vae_scale_factor * 2)


def imagine(flux: Any, inputs: TaskInput, ctx: RunContext, origin: OriginTask | None, settings: Settings) -> Any:
    prompt = origin_prompt(inputs, origin)
    if not prompt.strip():
        raise InputRejected("prompt: a non-empty prompt is required")
    size = size_for_aspect(_aspect(inputs), settings.side, _multiple(flux, "txt2img"))
    images, seed = _draw(flux, "txt2img", ctx, settings, prompt, count=4, extra=_sized(size))
    ctx.progress(1.0, note=f"done, seed {seed}")
    return images_output("imagine" if origin is None else "reroll", images, ctx, seed=seed, prompt=prompt)


def variation(flux: Any, inputs: TaskInput, ctx: RunContext, origin: OriginTask | None, settings: Settings) -> Any:
    assert origin is not None
    index = str(field_value(inputs, "index"))
    source = origin_image(ctx, origin, index)
    strength = VARIATION_STRENGTH.get(index, GRID_VARIATION_STRENGTH)
    aspect = field_value(inputs, "aspect_ratio", "")
    multiple = _multiple(flux, "img2img")
    if aspect:
        size = size_for_aspect(aspect, settings.side, multiple)
    else:
        size = generation_size(*fit_pixels(*source.size, settings.side * settings.side), multiple)

    def extra(pipe: Any, kwargs: dict[str, Any]) -> None:
        kwargs["width"], kwargs["height"] = size
        # A new aspect ratio crops the source around its centre rather than stretching it.
        kwargs["image"] = ImageOps.fit(source, size, Image.Resampling.LANCZOS)
        kwargs["strength"] = strength

    prompt = origin_prompt(inputs, origin)
    ctx.log(f"varying image {index} of {origin.task_id} at strength {strength}")
    images, seed = _draw(flux, "img2img", ctx, settings, prompt, count=4, extra=extra)
    ctx.progress(1.0, note=f"done, seed {seed}")
    return images_output("variation", images, ctx, seed=seed, prompt=prompt)


def upscale(flux: Any, inputs: TaskInput, ctx: RunContext, origin: OriginTask | None, settings: Settings) -> Any:
    assert origin is not None
    index = str(field_value(inputs, "index"))
    source = origin_image(ctx, origin, index)
    factor = UPSCALE_FACTOR.get(index, 2)
    target = fit_pixels(source.width * factor, source.height * factor, MAX_ORIGIN_SIDE * MAX_ORIGIN_SIDE)
    enlarged = source.resize(target, Image.Resampling.LANCZOS)
    prompt = origin_prompt(inputs, origin)
    seed = int(origin.output.get("seed") or 0)
    if target[0] * target[1] > settings.refine_max_pixels:
        ctx.log(f"upscaled to {target[0]}x{target[1]} by Lanczos (larger than Flux refines here)")
        ctx.progress(1.0, note="done")
        return images_output("upscale", [enlarged], ctx, seed=seed, prompt=prompt)
    strength = UPSCALE_STRENGTH.get(index, DEFAULT_UPSCALE_STRENGTH)
    multiple = _multiple(flux, "img2img")
    gen = generation_size(*target, multiple)

    def extra(pipe: Any, kwargs: dict[str, Any]) -> None:
        kwargs["width"], kwargs["height"] = gen
        kwargs["image"] = enlarged.resize(gen, Image.Resampling.LANCZOS)
        kwargs["strength"] = strength

    (refined,), seed = _draw(flux, "img2img", ctx, settings, prompt, count=1, extra=extra)
    refined = refined.convert("RGB").resize(target, Image.Resampling.LANCZOS)
    ctx.log(f"upscaled image {index} of {origin.task_id} to {target[0]}x{target[1]}, refined at strength {strength}")
    ctx.progress(1.0, note=f"done, seed {seed}")
    return images_output("upscale", [refined], ctx, seed=seed, prompt=prompt)


def _fill_four(
    flux: Any,
    ctx: RunContext,
    settings: Settings,
    task_type: str,
    canvas: Image.Image,
    mask: Image.Image,
    prompt: str,
) -> Any:
    """Four FLUX.1-Fill paintings of `mask` over `canvas`; the pixels outside the mask are kept exactly."""
    gen_size = fit_pixels(*canvas.size, min(MAX_PIXELS, settings.side * settings.side))

    def extra(pipe: Any, kwargs: dict[str, Any]) -> None:
        gen = generation_size(*gen_size, pipe.vae_scale_factor * 2)
        kwargs["width"], kwargs["height"] = gen
        kwargs["guidance_scale"] *= FILL_GUIDANCE_FACTOR
        kwargs["image"] = canvas.resize(gen, Image.Resampling.LANCZOS)
        kwargs["mask_image"] = mask.resize(gen, Image.Resampling.NEAREST)

    painted, seed = _draw(flux, "main", ctx, settings, prompt, count=4, extra=extra)
    images = [keep_unmasked(image, canvas, mask) for image in painted]
    ctx.progress(1.0, note=f"done, seed {seed}")
    return images_output(task_type, images, ctx, seed=seed, prompt=prompt)


def inpaint(flux: Any, inputs: TaskInput, ctx: RunContext, origin: OriginTask | None, settings: Settings) -> Any:
    assert origin is not None
    source = origin_image(ctx, origin, None)
    fitted = fit_pixels(*source.size, settings.canvas_max_pixels)
    if fitted != source.size:
        ctx.log(f"working on the image at {fitted[0]}x{fitted[1]} (from {source.width}x{source.height})")
        source = source.resize(fitted, Image.Resampling.LANCZOS)
    drawn = read_image(ctx, str(field_value(inputs, "mask")), field="mask", max_side=MAX_ORIGIN_SIDE)
    mask = mask_of(drawn, source.size)
    ctx.log(f"repainting the mask's region of {origin.task_id}'s image")
    return _fill_four(flux, ctx, settings, "inpaint", source, mask, origin_prompt(inputs, origin))


def outpaint(flux: Any, inputs: TaskInput, ctx: RunContext, origin: OriginTask | None, settings: Settings) -> Any:
    assert origin is not None
    source = origin_image(ctx, origin, None)
    sides = zoom_sides(*source.size, str(field_value(inputs, "zoom_ratio", "2")), _aspect(inputs, ""))
    canvas, mask = extend(source, sides, settings.canvas_max_pixels)
    ctx.log(f"zooming out to a {canvas.width}x{canvas.height} canvas")
    return _fill_four(flux, ctx, settings, "outpaint", canvas, mask, origin_prompt(inputs, origin))


def pan(flux: Any, inputs: TaskInput, ctx: RunContext, origin: OriginTask | None, settings: Settings) -> Any:
    assert origin is not None
    source = origin_image(ctx, origin, None)
    direction = str(field_value(inputs, "direction"))
    canvas, mask = extend(source, pan_sides(*source.size, direction), settings.canvas_max_pixels)
    ctx.log(f"panning {direction} to a {canvas.width}x{canvas.height} canvas")
    return _fill_four(flux, ctx, settings, "pan", canvas, mask, origin_prompt(inputs, origin))


def blend(flux: Any, inputs: TaskInput, ctx: RunContext, origin: OriginTask | None, settings: Settings) -> Any:
    refs = field_value(inputs, "image_urls") or []
    images = [read_image(ctx, ref, field=f"image_urls[{i}]", max_side=2048) for i, ref in enumerate(refs)]
    if not 2 <= len(images) <= 5:
        raise InputRejected(f"image_urls: blend takes 2 to 5 images, got {len(images)}")
    shape = BLEND_SHAPES[str(field_value(inputs, "dimension", "square"))]
    size = size_for_aspect(shape, settings.side, _multiple(flux, "txt2img"))

    def extra(pipe: Any, kwargs: dict[str, Any]) -> None:
        prior = flux._pipes["prior"]
        flux.shared.activate(prior)
        share = [1.0 / len(images)] * len(images)  # the prior sums its images' embeddings: weigh them equally
        embeds = prior(
            image=images,
            prompt=[""] * len(images),
            prompt_embeds_scale=share,
            pooled_prompt_embeds_scale=share,
            return_dict=True,
        )
        kwargs.pop("prompt")
        kwargs["prompt_embeds"] = embeds.prompt_embeds
        kwargs["pooled_prompt_embeds"] = embeds.pooled_prompt_embeds
        kwargs["width"], kwargs["height"] = generation_size(*size, pipe.vae_scale_factor * 2)

    ctx.log(f"blending {len(images)} images into {shape}")
    drawn, seed = _draw(flux, "txt2img", ctx, settings, "", count=4, extra=extra)
    ctx.progress(1.0, note=f"done, seed {seed}")
    return images_output("blend", drawn, ctx, seed=seed, prompt="")


Runner = Callable[[Any, TaskInput, RunContext, OriginTask | None, Settings], dict[str, Any]]
RUNNERS: dict[str, Runner] = {
    "imagine": imagine,
    "reroll": imagine,
    "variation": variation,
    "upscale": upscale,
    "inpaint": inpaint,
    "outpaint": outpaint,
    "pan": pan,
    "blend": blend,
}
