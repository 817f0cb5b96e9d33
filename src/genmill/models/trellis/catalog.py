"""Image or text to 3D: `Qubico/trellis` (`image-to-3d`, `text-to-3d`).

Outputs a GLB (`model_file`), a turntable video (`combined_video`) and, for images, the cut-out input
(`no_background_image`).
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from genmill.domain.catalog import IMAGE_RETENTION, CatalogEntry
from genmill.models.schema import MediaRef, TaskInput, flat

MODEL = "Qubico/trellis"
FAMILY = "trellis"

SamplingSteps = Annotated[int, Field(ge=1, le=50, description="Sampling steps of the stage.")]
GuidanceStrength = Annotated[float, Field(ge=0.0, le=10.0, description="Guidance strength of the stage.")]


class TrellisSettings(TaskInput):
    seed: int = Field(0, ge=0, description="Random seed; 0 picks one at random.")
    ss_sampling_steps: SamplingSteps = 12
    slat_sampling_steps: SamplingSteps = 12
    ss_guidance_strength: GuidanceStrength = 7.5
    slat_guidance_strength: GuidanceStrength = 3.0


class ImageTo3D(TrellisSettings):
    image: MediaRef = Field(..., description="Image of the object (URL or base64, at most 1024x1024).")


class TextTo3D(TrellisSettings):
    prompt: str = Field(..., min_length=1, description="The object to model.")


# $0.04 per model, the amount PiAPI's published text-to-3d example consumed.
_price = flat(0.04)

ENTRIES: list[CatalogEntry] = [
    CatalogEntry(
        model=MODEL,
        task_type="image-to-3d",
        input_model=ImageTo3D,
        price=_price,
        family=FAMILY,
        retention=IMAGE_RETENTION,
        description="3D model (GLB) from one image.",
    ),
    CatalogEntry(
        model=MODEL,
        task_type="text-to-3d",
        input_model=TextTo3D,
        price=_price,
        family=FAMILY,
        retention=IMAGE_RETENTION,
        description="3D model (GLB) from a text prompt.",
    ),
]
