"""Image tools: `Qubico/image-toolkit` — background removal, super-resolution, segmentation and face swaps.

Input images are URLs or base64 (at most 2048x2048, checked by the backend once the image is decoded).
"""

from __future__ import annotations

from typing import Self

from pydantic import Field, model_validator

from genmill.catalog._common import FaceIndexes, MediaRef, NegativePrompt, TaskInput, face_index_count, flat
from genmill.domain.catalog import IMAGE_RETENTION, CatalogEntry

MODEL = "Qubico/image-toolkit"
FAMILY = "image-toolkit"


class BackgroundRemove(TaskInput):
    image: MediaRef = Field(..., description="Image whose background is removed (URL or base64).")


class Upscale(TaskInput):
    image: MediaRef = Field(..., description="Image to enlarge (URL or base64).")
    scale: int = Field(2, ge=2, le=10, description="Enlargement factor.")
    face_enhance: bool = Field(False, description="Also restore faces.")


class Segment(TaskInput):
    image: MediaRef = Field(..., description="Image to segment (URL or base64).")
    prompt: str = Field(..., min_length=1, description='What to cut out, comma-separated: "clothes,shoes".')
    negative_prompt: NegativePrompt = ""
    segment_factor: int = Field(
        0, ge=-256, le=256, description="Pixels to grow (positive) or shrink (negative) the mask edge by."
    )


class FaceSwap(TaskInput):
    target_image: MediaRef = Field(..., description="Image whose face is replaced.")
    swap_image: MediaRef = Field(..., description="Image with the face to put onto target_image.")


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
    _entry("upscale", Upscale, 0.002, "Super-resolution, 2-10x, optional face restoration.", ("image",)),
    # price: our choice — the list price is $0.01 per started megapixel, which needs the decoded image; a flat
    # $0.02 covers a 1024x1024 image (1.05 MP, billed as 2 MP).
    _entry("segment", Segment, 0.02, "Cut out what the prompt names.", ("image",)),
    # price: our choice — $0.01 per swap.
    _entry("face-swap", FaceSwap, 0.01, "Swap one face.", ("target_image", "swap_image")),
    _entry(
        "multi-face-swap",
        MultiFaceSwap,
        0.015,
        "Swap several faces chosen by index.",
        ("target_image", "swap_image"),
    ),
]
