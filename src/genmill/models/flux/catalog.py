"""Flux image generation: `Qubico/flux1-dev`, `Qubico/flux1-schnell`, `Qubico/flux1-dev-advanced`.

`txt2img`, `img2img` and `txt2img-lora` run on all three models; `img2img-lora`, `controlnet-lora`,
`fill-inpaint`, `fill-outpaint`, `redux-variation` and `kontext` only on `-advanced`. `width`x`height` may not
exceed 1,048,576 pixels; `batch_size` (1-4) only exists on schnell, which multiplies the price.
"""

from __future__ import annotations

from typing import Annotated, Literal, Self

from pydantic import Field, model_validator

from genmill.domain.catalog import IMAGE_RETENTION, CatalogEntry, usd
from genmill.models.schema import LoraList, LoraSetting, MediaRef, NegativePrompt, Seed, Setting, TaskInput, flat

FAMILY = "flux"
DEV = "Qubico/flux1-dev"
SCHNELL = "Qubico/flux1-schnell"
ADVANCED = "Qubico/flux1-dev-advanced"

MAX_PIXELS = 1_048_576
"""width x height may not exceed this (1024 x 1024)."""

Dimension = Annotated[int, Field(ge=64, le=2048, description="Output size in pixels.")]
GuidanceScale = Annotated[
    float,
    Field(
        ge=1.5,
        le=5.0,
        description="Prompt adherence; higher follows the prompt more closely at the cost of realism.",
    ),
]
Denoise = Annotated[
    float, Field(gt=0.0, le=1.0, description="How much of the input image is repainted (1 ignores it).")
]
DevSteps = Annotated[int, Field(ge=1, le=50, description="Sampling steps.")]
SchnellSteps = Annotated[int, Field(ge=1, le=10, description="Sampling steps (schnell is distilled for ~4).")]
KontextSteps = Annotated[int, Field(ge=1, le=40, description="Sampling steps.")]
BatchSize = Annotated[
    int, Field(ge=1, le=4, description="Number of images; the price is batch_size x the price of one image.")
]


# --------------------------------------------------------------------------------------------------
# Nested settings
# --------------------------------------------------------------------------------------------------


class ControlNetSetting(Setting):
    control_type: Literal["depth", "canny", "soft_edge", "openpose"] = Field(
        ..., description="Which ControlNet conditions the generation."
    )
    control_image: MediaRef = Field(..., description="Image the control map is derived from.")
    control_strength: float = Field(0.5, ge=0.0, le=1.0, description="How strongly the control map applies.")
    return_preprocessed_image: bool = Field(False, description="Also return the preprocessed control map.")


class OutpaintSetting(Setting):
    setting_type: Literal["outpaint"] = Field(..., description='Must be "outpaint".')
    outpaint_left: int = Field(0, ge=0, le=2048, description="Pixels added on the left.")
    outpaint_right: int = Field(0, ge=0, le=2048, description="Pixels added on the right.")
    outpaint_top: int = Field(0, ge=0, le=2048, description="Pixels added at the top.")
    outpaint_bottom: int = Field(0, ge=0, le=2048, description="Pixels added at the bottom.")

    @model_validator(mode="after")
    def _extends_something(self) -> Self:
        if not (self.outpaint_left or self.outpaint_right or self.outpaint_top or self.outpaint_bottom):
            raise ValueError("outpaint needs at least one of outpaint_left/right/top/bottom greater than 0")
        return self


# --------------------------------------------------------------------------------------------------
# Input models
# --------------------------------------------------------------------------------------------------


class FluxPrompt(TaskInput):
    prompt: str = Field(..., description="What to generate.")
    negative_prompt: NegativePrompt = ""
    guidance_scale: GuidanceScale = 3.5
    seed: Seed = -1


class SizedMixin(TaskInput):
    """Output size; width x height may not exceed 1,048,576 pixels."""

    width: Dimension = 1024
    height: Dimension = 1024

    @model_validator(mode="after")
    def _check_area(self) -> Self:
        if self.width * self.height > MAX_PIXELS:
            raise ValueError(
                f"width*height must not exceed {MAX_PIXELS} pixels "
                f"(width {self.width} x height {self.height} = {self.width * self.height})"
            )
        return self


class DevTxt2Img(SizedMixin, FluxPrompt):
    steps: DevSteps = 28


class SchnellTxt2Img(SizedMixin, FluxPrompt):
    steps: SchnellSteps = 4
    batch_size: BatchSize = 1


class DevImg2Img(FluxPrompt):
    image: MediaRef = Field(..., description="Input image (URL or base64).")
    denoise: Denoise = 0.7
    steps: DevSteps = 28


class SchnellImg2Img(FluxPrompt):
    image: MediaRef = Field(..., description="Input image (URL or base64).")
    denoise: Denoise = 0.7
    steps: SchnellSteps = 4
    batch_size: BatchSize = 1


class DevTxt2ImgLora(DevTxt2Img):
    lora_settings: LoraList = Field(..., description="LoRA adapters to apply.")


class SchnellTxt2ImgLora(SchnellTxt2Img):
    lora_settings: LoraList = Field(..., description="LoRA adapters to apply.")


class Img2ImgLora(DevImg2Img):
    lora_settings: LoraList = Field(..., description="LoRA adapters to apply.")


class ControlNetLora(SizedMixin, FluxPrompt):
    steps: DevSteps = 28
    lora_settings: list[LoraSetting] = Field(
        default_factory=list, max_length=4, description="Optional LoRA adapters to apply."
    )
    control_net_settings: list[ControlNetSetting] = Field(
        ..., min_length=1, max_length=4, description="ControlNets that condition the generation."
    )


class FillInpaint(FluxPrompt):
    image: MediaRef = Field(..., description="Image to repaint; its white pixels mark the area to fill.")
    steps: DevSteps = 28


class FillOutpaint(FluxPrompt):
    image: MediaRef = Field(..., description="Image to extend.")
    steps: DevSteps = 28
    custom_settings: list[OutpaintSetting] = Field(
        ..., min_length=1, max_length=1, description='One {"setting_type": "outpaint", ...} entry.'
    )


class ReduxVariation(SizedMixin, FluxPrompt):
    image: MediaRef = Field(..., description="Image to make variations of.")
    steps: DevSteps = 28


class Kontext(SizedMixin):
    prompt: str = Field(..., description="The edit to make to the image.")
    image: MediaRef = Field(..., description="Image to edit.")
    steps: KontextSteps = 28
    seed: Seed = -1


# --------------------------------------------------------------------------------------------------
# Prices
# --------------------------------------------------------------------------------------------------

# price: our choice — schnell at $0.0015 per image, times batch_size.
SCHNELL_IMAGE_USD = 0.0015
# price: our choice — dev and dev-advanced at $0.02 per image: the amount API.md's flux1-dev example
# freezes, and the documented kontext price.
DEV_IMAGE_USD = 0.02


def _schnell_price(inputs: SchnellTxt2Img | SchnellImg2Img) -> int:
    return usd(SCHNELL_IMAGE_USD) * inputs.batch_size


_dev_price = flat(DEV_IMAGE_USD)


def _entry(
    model: str,
    task_type: str,
    input_model: type[TaskInput],
    description: str,
    *,
    generated: tuple[str, ...] = (),
) -> CatalogEntry:
    return CatalogEntry(
        model=model,
        task_type=task_type,
        input_model=input_model,
        price=_schnell_price if model == SCHNELL else _dev_price,
        family=FAMILY,
        retention=IMAGE_RETENTION,
        description=description,
        generated_input_fields=generated,
    )


ENTRIES: list[CatalogEntry] = [
    *(
        entry
        for model in (DEV, ADVANCED)
        for entry in (
            _entry(model, "txt2img", DevTxt2Img, "Text to image."),
            _entry(model, "img2img", DevImg2Img, "Image to image.", generated=("image",)),
            _entry(model, "txt2img-lora", DevTxt2ImgLora, "Text to image with LoRA adapters."),
        )
    ),
    _entry(SCHNELL, "txt2img", SchnellTxt2Img, "Fast text to image; batch_size 1-4."),
    _entry(SCHNELL, "img2img", SchnellImg2Img, "Fast image to image; batch_size 1-4.", generated=("image",)),
    _entry(SCHNELL, "txt2img-lora", SchnellTxt2ImgLora, "Fast text to image with LoRA adapters."),
    _entry(ADVANCED, "img2img-lora", Img2ImgLora, "Image to image with LoRA adapters.", generated=("image",)),
    _entry(ADVANCED, "controlnet-lora", ControlNetLora, "Text to image guided by ControlNets and LoRAs."),
    _entry(
        ADVANCED,
        "fill-inpaint",
        FillInpaint,
        "Repaint the white pixels of the image.",
        generated=("image",),
    ),
    _entry(ADVANCED, "fill-outpaint", FillOutpaint, "Extend the image outwards.", generated=("image",)),
    _entry(ADVANCED, "redux-variation", ReduxVariation, "Variations of an image.", generated=("image",)),
    _entry(ADVANCED, "kontext", Kontext, "Edit an image from an instruction.", generated=("image",)),
]
