"""The Flux editing tasks of `Qubico/flux1-dev-advanced`: fill (inpaint and outpaint), kontext and Redux variation.

Kept apart from `backend.py` (loading, memory, dispatch, text-to-image and image-to-image) so that each module stays
readable; each function is one task type: prepare the inputs, call the pipeline through the backend, return the
images and the size to deliver.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from PIL import Image

from genmill.backends.memory_modes import is_out_of_memory
from genmill.backends.toolkit import StepReporter, field_value, load_image
from genmill.domain.catalog import TaskInput
from genmill.errors import BackendError
from genmill.models.flux.tasks import fit_pixels, generation_size, outpaint_canvas, white_mask

if TYPE_CHECKING:
    from genmill.backends.base import RunContext
    from genmill.models.flux.backend import FluxBackend

FILL_GUIDANCE_FACTOR = 30 / 3.5
"""FLUX.1-Fill-dev is distilled for a guidance of about 30, while the API's guidance_scale is 1.5-5 (default
3.5); scaling by 30/3.5 keeps the API's default on the model's recommended value and its range meaningful."""

KONTEXT_GUIDANCE = 2.5
"""The kontext input has no guidance_scale; 2.5 is FLUX.1-Kontext-dev's recommended guidance."""


def _fill(
    backend: FluxBackend, inputs: TaskInput, ctx: RunContext, reporter: StepReporter, image: Image.Image, mask: Any
) -> Any:
    pipe = backend._pipes["main"]
    kwargs = backend._common(inputs, ctx, reporter, pipe)
    kwargs["guidance_scale"] *= FILL_GUIDANCE_FACTOR
    size = fit_pixels(*image.size)
    kwargs["width"], kwargs["height"] = generation_size(*size, pipe.vae_scale_factor * 2)
    gen = (kwargs["width"], kwargs["height"])
    kwargs["image"] = image.resize(gen, Image.Resampling.LANCZOS)
    kwargs["mask_image"] = mask.resize(gen, Image.Resampling.NEAREST)
    backend._loras(pipe, inputs, ctx, False)
    return backend._generate(pipe, kwargs), size


def fill_inpaint(backend: FluxBackend, inputs: TaskInput, ctx: RunContext, reporter: StepReporter, lora: bool) -> Any:
    image = load_image(ctx, inputs, "image")
    mask = white_mask(image)
    return _fill(backend, inputs, ctx, reporter, image.convert("RGB"), mask)


def fill_outpaint(backend: FluxBackend, inputs: TaskInput, ctx: RunContext, reporter: StepReporter, lora: bool) -> Any:
    settings = field_value(inputs, "custom_settings")
    if not isinstance(settings, list) or len(settings) != 1:
        raise BackendError('custom_settings: exactly one {"setting_type": "outpaint", ...} entry is required')
    if getattr(settings[0], "setting_type", "outpaint") != "outpaint":
        raise BackendError('custom_settings[0].setting_type: must be "outpaint"')
    canvas, mask = outpaint_canvas(load_image(ctx, inputs, "image"), settings[0])
    ctx.log(f"outpainting to {canvas.width}x{canvas.height}")
    return _fill(backend, inputs, ctx, reporter, canvas, mask)


def kontext(backend: FluxBackend, inputs: TaskInput, ctx: RunContext, reporter: StepReporter, lora: bool) -> Any:
    pipe = backend._pipes["main"]
    kwargs = backend._common(inputs, ctx, reporter, pipe)
    kwargs["guidance_scale"] = KONTEXT_GUIDANCE
    size = backend._sized(inputs, pipe, kwargs, ctx)
    image = load_image(ctx, inputs, "image").convert("RGB")
    # The pipeline would resize the image to one of its preferred ~1 MP sizes; the API asks for width x height.
    kwargs["image"] = image.resize((kwargs["width"], kwargs["height"]), Image.Resampling.LANCZOS)
    kwargs["_auto_resize"] = False
    backend._loras(pipe, inputs, ctx, False)
    return backend._generate(pipe, kwargs), size


def redux_variation(
    backend: FluxBackend, inputs: TaskInput, ctx: RunContext, reporter: StepReporter, lora: bool
) -> Any:
    pipe, prior = backend._pipes["txt2img"], backend._pipes["prior"]
    kwargs = backend._common(inputs, ctx, reporter, pipe, negatives=False)
    size = backend._sized(inputs, pipe, kwargs, ctx)
    image = backend._input_image(inputs, ctx)
    backend._loras(pipe, inputs, ctx, False)
    backend.shared.activate(prior)
    try:
        embeds = prior(image=image, prompt=kwargs.pop("prompt"), return_dict=True)
    except (ValueError, RuntimeError) as exc:
        if is_out_of_memory(exc):
            raise  # the worker frees memory and retries; not the image's fault
        raise BackendError("image: the Redux prior could not encode it", raw_message=str(exc)) from exc
    reporter.check()
    kwargs.update(prompt_embeds=embeds.prompt_embeds, pooled_prompt_embeds=embeds.pooled_prompt_embeds)
    return backend._generate(pipe, kwargs), size
