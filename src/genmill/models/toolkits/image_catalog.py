"""Image tools: `Qubico/image-toolkit` — background removal, super-resolution, segmentation and face swaps.

Input images are URLs or base64, at most 2048x2048. An image sent inline (a data: URI or bare base64) is checked
here, at create, from its header alone (format and size, no pixels decoded), so a wrong one is a 400 naming the
field before any credits are frozen; a URL is not fetched here, and the backend checks it once fetched.
"""

from __future__ import annotations

import base64
import binascii
import io
from typing import Annotated, Literal, Self, get_args

from pydantic import AfterValidator, Field, model_validator
from pydantic_core import PydanticCustomError

from genmill.domain.catalog import IMAGE_RETENTION, CatalogEntry
from genmill.models.schema import (
    MAX_INPUT_SIDE,
    MEDIA_INPUT,
    FaceIndexes,
    NegativePrompt,
    TaskInput,
    check_media_ref,
    face_index_count,
    flat,
)

MODEL = "Qubico/image-toolkit"
FAMILY = "image-toolkit"

UpscaleModel = Literal["photo", "photo-sharp", "anime"]
"""Which Real-ESRGAN network upscales (genmill.models.toolkits.realesrgan.UPSCALE_MODES); GENMILL_UPSCALE_MODEL sets the
server's default, the `upscale_model` input (a genmill extra) overrides it per task."""

UPSCALE_MODELS: tuple[str, ...] = get_args(UpscaleModel)


def inline_image_bytes(ref: str) -> bytes | None:
    """The bytes of an inline image (data: URI or bare base64); None for URLs and server paths."""
    if ref[:8].lower().startswith(("http://", "https://")) or ref.startswith("/"):
        return None
    payload = ref
    if ref[:5].lower() == "data:":
        header, _, payload = ref.partition(",")
        if ";base64" not in header.lower():
            raise ValueError("image data: URI must be base64-encoded")
    compact = "".join(payload.split())
    try:
        return base64.b64decode(compact + "=" * (-len(compact) % 4), altchars=b"-_" if "-" in compact else None)
    except (binascii.Error, ValueError) as exc:
        raise ValueError("is not valid base64") from exc


def check_inline_image(value: str) -> str:
    """An inline image must be decodable (its header, at least) and at most 2048x2048; URLs pass unchecked."""
    from PIL import Image

    ref = check_media_ref(value)
    data = inline_image_bytes(ref)
    if data is None:
        return ref
    try:
        with Image.open(io.BytesIO(data)) as image:  # reads the header only; no pixels are decoded
            width, height, fmt = image.width, image.height, image.format
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise ValueError("is not a decodable image (PNG, JPEG, WebP, BMP, GIF or TIFF)") from exc
    if width > MAX_INPUT_SIDE or height > MAX_INPUT_SIDE:
        raise ValueError(f"{width}x{height} {fmt} is larger than {MAX_INPUT_SIDE}x{MAX_INPUT_SIDE}")
    return ref


def check_extra_choice(inputs: TaskInput, name: str, choices: tuple[str, ...]) -> None:
    """An optional extra key (undeclared, so absent from PiAPI's echo) must be one of `choices` when sent."""
    value = (inputs.model_extra or {}).get(name)
    if value is not None and value not in choices:
        raise PydanticCustomError(
            "choice",
            "{name}: must be one of {choices}, not {value}",
            {"name": name, "choices": ", ".join(choices), "value": repr(value)[:40]},
        )


ToolkitImage = Annotated[str, AfterValidator(check_inline_image), MEDIA_INPUT]
"""An image-toolkit image input: a URL, a server path, or inline data checked for format and size at create."""


class BackgroundRemove(TaskInput):
    image: ToolkitImage = Field(..., description="Image whose background is removed (URL or base64).")


class Upscale(TaskInput):
    image: ToolkitImage = Field(..., description="Image to enlarge (URL or base64), at most 2048x2048.")
    scale: int = Field(2, ge=2, le=10, description="Enlargement factor.")
    face_enhance: bool = Field(
        False,
        description="Also restore faces (GFPGAN v1.4); refused at create where the server has no face restorer.",
    )
    # `upscale_model` (UpscaleModel) is a genmill extra, not declared so that PiAPI clients' echoed input keeps
    # PiAPI's keys: it is checked when sent and kept like any extra key.

    @model_validator(mode="after")
    def _known_upscale_model(self) -> Self:
        check_extra_choice(self, "upscale_model", UPSCALE_MODELS)
        return self


class Segment(TaskInput):
    image: ToolkitImage = Field(..., description="Image to segment (URL or base64).")
    prompt: str = Field(..., min_length=1, description='What to cut out, comma-separated: "clothes,shoes".')
    negative_prompt: NegativePrompt = ""
    segment_factor: int = Field(
        0, ge=-256, le=256, description="Pixels to grow (positive) or shrink (negative) the mask edge by."
    )


class FaceSwap(TaskInput):
    target_image: ToolkitImage = Field(..., description="Image whose face is replaced.")
    swap_image: ToolkitImage = Field(..., description="Image with the face to put onto target_image.")


class MultiFaceSwap(FaceSwap):
    swap_faces_index: FaceIndexes = "0"
    target_faces_index: FaceIndexes = "0"

    @model_validator(mode="after")
    def _same_count(self) -> Self:
        if face_index_count(self.swap_faces_index) != face_index_count(self.target_faces_index):
            raise ValueError("swap_faces_index and target_faces_index must list the same number of faces")
        return self


def _entry(
    task_type: str,
    input_model: type[TaskInput],
    price_usd: float,
    description: str,
    generated: tuple[str, ...],
) -> CatalogEntry:
    return CatalogEntry(
        model=MODEL,
        task_type=task_type,
        input_model=input_model,
        price=flat(price_usd),
        family=FAMILY,
        retention=IMAGE_RETENTION,
        description=description,
        generated_input_fields=generated,
    )


ENTRIES: list[CatalogEntry] = [
    _entry("background-remove", BackgroundRemove, 0.001, "Remove the background of an image.", ("image",)),
    # price: our choice — $0.002 per image, any scale.
    _entry(
        "upscale",
        Upscale,
        0.002,
        "Super-resolution, 2-10x, with Real-ESRGAN x4plus (photo model) corrected to shrink back to the input; "
        "face_enhance restores faces with GFPGAN v1.4 where its weights are installed.",
        ("image",),
    ),
    # price: our choice — the list price is $0.01 per started megapixel, which needs the decoded image; a flat
    # $0.02 covers a 1024x1024 image (1.05 MP, billed as 2 MP).
    _entry("segment", Segment, 0.02, "Cut out what the prompt names.", ("image",)),
    # price: our choice — $0.01 per swap.
    _entry(
        "face-swap",
        FaceSwap,
        0.01,
        "Swap one face (a landmark warp with Poisson blending, not a swap network).",
        ("target_image", "swap_image"),
    ),
    _entry(
        "multi-face-swap",
        MultiFaceSwap,
        0.015,
        "Swap several faces chosen by index (a landmark warp with Poisson blending, not a swap network).",
        ("target_image", "swap_image"),
    ),
]
