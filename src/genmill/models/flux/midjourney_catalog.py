"""PiAPI's Midjourney API (`model: "midjourney"`): ten task types with PiAPI's field names, defaults and prices.

It lives in the flux family because Flux is what renders it here (an operator-enabled stand-in, see
`genmill.models.flux.midjourney`); the schema itself is PiAPI's. Field names come from PiAPI's documented pages
(imagine, upscale, variation, reroll, describe) and from PiAPI's published task catalog (seed, blend, inpaint,
outpaint, pan); the enumerations and ranges PiAPI leaves unsaid are genmill's choices, documented in
docs/midjourney.md. Follow-ups (upscale, variation, reroll, seed, inpaint, outpaint, pan) name their earlier task
in `origin_task_id`, accepted within the origin window like PiAPI's (3 hours, 3 days on a private pool).
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field

from genmill.domain.catalog import IMAGE_RETENTION, CatalogEntry, DerivedFrom, usd
from genmill.models.schema import MediaRef, TaskInput

MODEL = "midjourney"
FAMILY = "mj"
"""PiAPI's key for Midjourney in /account/active_tasks and the history filter."""

ProcessMode = Literal["relax", "fast", "turbo"]
DEFAULT_PROCESS_MODE: ProcessMode = "fast"

_RATIO = re.compile(r"^\s*(\d{1,3})\s*:\s*(\d{1,3})\s*$")
MAX_ASPECT = 8.0
"""Widest (and tallest) aspect ratio accepted, 8:1 and 1:8 (our choice; Midjourney calls past 2:1 experimental)."""


def parse_aspect_ratio(value: str) -> tuple[int, int]:
    """("16", "9") -> (16, 9); raises ValueError for anything but two positive whole numbers within 8:1."""
    match = _RATIO.match(value)
    if not match:
        raise ValueError('must be "W:H" with two whole numbers, e.g. "16:9"')
    width, height = int(match.group(1)), int(match.group(2))
    if width <= 0 or height <= 0:
        raise ValueError("both sides of the aspect ratio must be greater than 0")
    if max(width / height, height / width) > MAX_ASPECT:
        raise ValueError(f"aspect ratio must lie between 1:{MAX_ASPECT:g} and {MAX_ASPECT:g}:1")
    return width, height


def _check_aspect_ratio(value: str) -> str:
    parse_aspect_ratio(value)
    return value.replace(" ", "")


AspectRatio = Annotated[
    str,
    AfterValidator(_check_aspect_ratio),
    Field(description='Aspect ratio of each image, "W:H" (Midjourney\'s --ar), between 1:8 and 8:1.'),
]


def _check_zoom_ratio(value: str) -> str:
    try:
        ratio = float(value)
    except ValueError:
        raise ValueError('must be a number as a string: "1" (make square), "1.5", "2", or a custom ratio') from None
    if not 1.0 <= ratio <= 2.0:
        raise ValueError("must lie between 1 and 2")
    return value.strip()


def _check_optional_aspect_ratio(value: str) -> str:
    return value if value == "" else _check_aspect_ratio(value)


OptionalAspectRatio = Annotated[
    str,
    AfterValidator(_check_optional_aspect_ratio),
    Field(description='Aspect ratio of the new images, "W:H"; empty keeps the origin image\'s shape.'),
]

ZoomRatio = Annotated[str, AfterValidator(_check_zoom_ratio)]

OriginTaskId = Annotated[str, Field(min_length=1, description="The task_id of the earlier Midjourney task.")]
PromptCheck = Annotated[bool, Field(description="Skip PiAPI's prompt check (genmill runs none; accepted for parity).")]
BotId = Annotated[
    int,
    Field(ge=0, description="Host-your-account only: which Midjourney account runs the task (genmill has none)."),
]
Mode = Annotated[ProcessMode, Field(description="relax, fast or turbo: the queue the task runs in and its price.")]
FollowUpMode = Annotated[
    ProcessMode,
    Field(
        description="The mode a follow-up is priced at. PiAPI runs a follow-up in its origin's mode; genmill prices "
        "at create time from this field (fast unless given)."
    ),
]

UpscaleIndex = Literal["1", "2", "3", "4", "light", "beta", "2x", "4x", "subtle", "creative"]
VariationIndex = Literal["1", "2", "3", "4", "high_variation", "low_variation"]
GRID_INDEXES = ("1", "2", "3", "4")


# --------------------------------------------------------------------------------------------------
# Input models
# --------------------------------------------------------------------------------------------------


class Imagine(TaskInput):
    prompt: str = Field(..., min_length=1, description="What to draw (Midjourney's /imagine prompt).")
    aspect_ratio: AspectRatio = "1:1"
    process_mode: Mode = DEFAULT_PROCESS_MODE
    skip_prompt_check: PromptCheck = False
    bot_id: BotId = 0


class Upscale(TaskInput):
    origin_task_id: OriginTaskId
    index: UpscaleIndex = Field(
        ...,
        description='"1"-"4" picks one image of a grid; light/beta (V4), 2x/4x (V5), subtle/creative (V6) upscale an '
        "already upscaled image further.",
    )
    process_mode: FollowUpMode = DEFAULT_PROCESS_MODE


class Variation(TaskInput):
    origin_task_id: OriginTaskId
    index: VariationIndex = Field(
        ...,
        description='"1"-"4" varies one image of a grid; high_variation/low_variation (Vary Strong/Subtle) vary an '
        "upscaled image.",
    )
    prompt: str = Field("", description="Remix prompt; empty keeps the origin's prompt.")
    aspect_ratio: OptionalAspectRatio = ""
    skip_prompt_check: PromptCheck = False
    process_mode: FollowUpMode = DEFAULT_PROCESS_MODE


class Reroll(TaskInput):
    origin_task_id: OriginTaskId
    prompt: str = Field("", description="Remix prompt; empty keeps the origin's prompt.")
    aspect_ratio: AspectRatio = "1:1"
    skip_prompt_check: PromptCheck = False
    process_mode: FollowUpMode = DEFAULT_PROCESS_MODE


class Describe(TaskInput):
    image_url: MediaRef = Field(..., description="The image to describe (URL or base64).")
    process_mode: Mode = DEFAULT_PROCESS_MODE
    bot_id: BotId = 0


class Seed(TaskInput):
    origin_task_id: OriginTaskId


class Blend(TaskInput):
    image_urls: list[MediaRef] = Field(
        ..., min_length=2, max_length=5, description="The 2 to 5 images to blend (URLs or base64)."
    )
    dimension: Literal["square", "portrait", "landscape"] = Field(
        "square", description="Output shape: square (1:1), portrait (2:3) or landscape (3:2)."
    )
    process_mode: Mode = DEFAULT_PROCESS_MODE
    bot_id: BotId = 0


class Inpaint(TaskInput):
    origin_task_id: OriginTaskId
    mask: MediaRef = Field(
        ...,
        description="Mask over the upscaled image (base64 or URL): its white pixels are repainted, the rest kept.",
    )
    prompt: str = Field("", description="What to paint into the masked region; empty keeps the origin's prompt.")
    skip_prompt_check: PromptCheck = False
    process_mode: FollowUpMode = DEFAULT_PROCESS_MODE


class Outpaint(TaskInput):
    origin_task_id: OriginTaskId
    zoom_ratio: ZoomRatio = Field(
        "2",
        description='Zoom out: "1.5", "2" or a custom ratio between 1 and 2; "1" makes the image square '
        "(Midjourney's Make Square).",
    )
    aspect_ratio: OptionalAspectRatio = ""
    prompt: str = Field("", description="Remix prompt for the new area; empty keeps the origin's prompt.")
    skip_prompt_check: PromptCheck = False
    process_mode: FollowUpMode = DEFAULT_PROCESS_MODE


class Pan(TaskInput):
    origin_task_id: OriginTaskId
    direction: Literal["up", "down", "left", "right"] = Field(..., description="Which side the canvas grows on.")
    prompt: str = Field("", description="Remix prompt for the new area; empty keeps the origin's prompt.")
    skip_prompt_check: PromptCheck = False
    process_mode: FollowUpMode = DEFAULT_PROCESS_MODE


# --------------------------------------------------------------------------------------------------
# Prices (docs/midjourney.md says where each figure comes from)
# --------------------------------------------------------------------------------------------------

GENERATION_USD: dict[str, float] = {"relax": 0.015, "fast": 0.045, "turbo": 0.10}
"""Imagine, variation, reroll, blend, inpaint, outpaint and pan: one grid of four images."""
UPSCALE_USD = 0.015
"""Upscale of one grid image ("1"-"4"), light and beta: the same in every mode."""
UPSCALE_2X_USD: dict[str, float] = {"relax": 0.045, "fast": 0.09, "turbo": 0.20}
"""2x, and subtle/creative (V6's upscalers of an upscaled image)."""
UPSCALE_4X_USD: dict[str, float] = {"relax": 0.135, "fast": 0.27, "turbo": 0.60}
DESCRIBE_USD = 0.015
SEED_USD = 0.005


def _generation_price(inputs: Any) -> int:
    return usd(GENERATION_USD[inputs.process_mode])


def _upscale_price(inputs: Upscale) -> int:
    if inputs.index == "4x":
        return usd(UPSCALE_4X_USD[inputs.process_mode])
    if inputs.index in ("2x", "subtle", "creative"):
        return usd(UPSCALE_2X_USD[inputs.process_mode])
    return usd(UPSCALE_USD)


def _describe_price(_inputs: Describe) -> int:
    return usd(DESCRIBE_USD)


def _seed_price(_inputs: Seed) -> int:
    return usd(SEED_USD)


# --------------------------------------------------------------------------------------------------
# Follow-up operations and the actions an output offers
# --------------------------------------------------------------------------------------------------

GRID_TASK_TYPES = ("imagine", "variation", "reroll", "blend", "inpaint", "outpaint", "pan")
"""Task types whose output is a grid of four images."""
IMAGE_TASK_TYPES = (*GRID_TASK_TYPES, "upscale")

GRID_ACTIONS = (
    "reroll",
    "upscale1",
    "upscale2",
    "upscale3",
    "upscale4",
    "variation1",
    "variation2",
    "variation3",
    "variation4",
)
UPSCALED_ACTIONS = (
    "high_variation",
    "low_variation",
    "outpaint_1.5x",
    "outpaint_2x",
    "outpaint_custom",
    "pan_down",
    "pan_left",
    "pan_right",
    "pan_up",
    "region",
    "upscale_2x",
    "upscale_4x",
)


def actions_for(task_type: str) -> list[str]:
    """The follow-ups a completed task's `output.actions` offers: a grid offers reroll/upscaleN/variationN, an
    upscaled image offers vary, zoom, pan, region (inpaint) and further upscales; describe and seed offer none."""
    if task_type in GRID_TASK_TYPES:
        return list(GRID_ACTIONS)
    if task_type == "upscale":
        return list(UPSCALED_ACTIONS)
    return []


def _entry(
    task_type: str,
    input_model: type[TaskInput],
    price: Any,
    description: str,
    *,
    origin_types: tuple[str, ...] = (),
    generated: tuple[str, ...] = (),
) -> CatalogEntry:
    return CatalogEntry(
        model=MODEL,
        task_type=task_type,
        input_model=input_model,
        price=price,
        family=FAMILY,
        retention=IMAGE_RETENTION,
        description=description,
        generated_input_fields=generated,
        derived_from=DerivedFrom(models=(MODEL,), task_types=origin_types) if origin_types else None,
    )


ENTRIES: list[CatalogEntry] = [
    _entry("imagine", Imagine, _generation_price, "Four images and their 2x2 grid from a prompt."),
    _entry(
        "upscale",
        Upscale,
        _upscale_price,
        "One image of a grid at full size, or an upscaled image upscaled further.",
        origin_types=IMAGE_TASK_TYPES,
    ),
    _entry(
        "variation",
        Variation,
        _generation_price,
        "Four variations of one image of a grid or of an upscaled image.",
        origin_types=IMAGE_TASK_TYPES,
    ),
    _entry("reroll", Reroll, _generation_price, "The origin's prompt drawn anew.", origin_types=GRID_TASK_TYPES),
    _entry("describe", Describe, _describe_price, "Four prompts that describe an image.", generated=("image_url",)),
    _entry("seed", Seed, _seed_price, "The seed an earlier image task was drawn with.", origin_types=IMAGE_TASK_TYPES),
    _entry("blend", Blend, _generation_price, "Four images that blend 2 to 5 images."),
    _entry(
        "inpaint",
        Inpaint,
        _generation_price,
        "Vary (Region): repaint the masked region of an upscaled image, four candidates.",
        origin_types=("upscale",),
    ),
    _entry(
        "outpaint",
        Outpaint,
        _generation_price,
        "Zoom out of an upscaled image (or make it square), four candidates.",
        origin_types=("upscale",),
    ),
    _entry(
        "pan",
        Pan,
        _generation_price,
        "Extend an upscaled image on one side, four candidates.",
        origin_types=("upscale",),
    ),
]

ORIGIN = "<origin_task_id>"
"""Stands for the task_id of an earlier task in EXAMPLE_INPUTS."""
_EXAMPLE_IMAGE = "https://cdn.midjourney.com/example/0_0.png"

EXAMPLE_INPUTS: dict[str, dict[str, Any]] = {
    # PiAPI's documented example bodies (imagine, upscale, reroll, describe pages) ...
    "imagine": {
        "prompt": "flying night city",
        "aspect_ratio": "16:9",
        "process_mode": "fast",
        "skip_prompt_check": False,
        "bot_id": 0,
    },
    "upscale": {"origin_task_id": ORIGIN, "index": "3"},
    "variation": {
        "origin_task_id": ORIGIN,
        "index": "1",
        "prompt": "angry cat wearing hat",
        "aspect_ratio": "1:1",
        "skip_prompt_check": False,
    },
    "reroll": {
        "origin_task_id": ORIGIN,
        "prompt": "angry cat wearing hat, smoking",
        "aspect_ratio": "16:9",
        "skip_prompt_check": False,
    },
    "describe": {"image_url": _EXAMPLE_IMAGE, "process_mode": "relax"},
    # ... and, where PiAPI's field pages were not found, bodies built from its published field names.
    "seed": {"origin_task_id": ORIGIN},
    "blend": {
        "image_urls": [_EXAMPLE_IMAGE, "https://cdn.midjourney.com/example/0_1.png"],
        "dimension": "square",
        "process_mode": "fast",
    },
    "inpaint": {
        "origin_task_id": ORIGIN,
        "mask": "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==",
        "prompt": "a red hat",
        "skip_prompt_check": False,
    },
    "outpaint": {"origin_task_id": ORIGIN, "zoom_ratio": "2", "prompt": "", "skip_prompt_check": False},
    "pan": {"origin_task_id": ORIGIN, "direction": "up", "prompt": "", "skip_prompt_check": False},
}
