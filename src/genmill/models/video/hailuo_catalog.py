"""Hailuo (MiniMax) as PiAPI resells it: model `hailuo`, task `video_generation`.

PiAPI's Generate Video page: $0.20 per video, $0.30 for s2v-01 (subject reference, which needs a detectable
face), charged on success only; prompts of at most 2000 characters; images JPG/PNG, at most 10 MB, 300-4096 px
and between 2:5 and 5:2. PiAPI reports Hailuo's `meta.usage.type` as "point".
"""

from __future__ import annotations

from typing import Any, Literal, Self

from pydantic import Field, model_validator

from genmill.domain.catalog import VIDEO_RETENTION, CatalogEntry, usd
from genmill.models.schema import OptionalMediaRef, TaskInput

MODEL = "hailuo"
FAMILY = "hailuo"

HailuoModel = Literal["t2v-01", "t2v-01-director", "i2v-01", "i2v-01-live", "i2v-01-director", "s2v-01"]
TEXT_MODELS = ("t2v-01", "t2v-01-director")
SUBJECT_MODEL = "s2v-01"
USD_PER_VIDEO = 0.20
"""t2v-01, i2v-01 and i2v-01-live are PiAPI's $0.20; the two director models at the same price is our choice."""
SUBJECT_USD = 0.30
DEFAULT_MODEL: HailuoModel = "t2v-01"
"""PiAPI marks `model` required-ish but shows no default; t2v-01 (plain text to video) is our choice."""


class HailuoVideo(TaskInput):
    prompt: str = Field("", max_length=2000, description="What happens (required for t2v and s2v models).")
    model: HailuoModel = Field(DEFAULT_MODEL, description="Which Hailuo model runs.")
    expand_prompt: bool = Field(False, description="Let Hailuo rewrite the prompt.")
    image_url: OptionalMediaRef = Field(
        "", description="First frame (i2v) or the face to keep (s2v): JPG/PNG, 10 MB, 300-4096 px, 2:5 to 5:2."
    )

    @model_validator(mode="after")
    def _by_model(self) -> Self:
        if self.model in TEXT_MODELS:
            if self.image_url:
                raise ValueError(f"image_url: {self.model} is text-to-video and takes no image")
            if not self.prompt.strip():
                raise ValueError(f"prompt: required for {self.model}")
        elif not self.image_url:
            raise ValueError(f"image_url: required for {self.model}")
        elif self.model == SUBJECT_MODEL and not self.prompt.strip():
            raise ValueError("prompt: required for s2v-01")
        return self


def price(inputs: HailuoVideo) -> int:
    return usd(SUBJECT_USD if inputs.model == SUBJECT_MODEL else USD_PER_VIDEO)


ENTRIES: list[CatalogEntry] = [
    CatalogEntry(
        model=MODEL,
        task_type="video_generation",
        input_model=HailuoVideo,
        price=price,
        family=FAMILY,
        retention=VIDEO_RETENTION,
        description="Hailuo text, image or subject-reference video.",
        usage_type="point",
    )
]

EXAMPLE_INPUTS: dict[str, dict[str, Any]] = {
    "video_generation": {
        "prompt": "The flower slowly unfolds",
        "model": "i2v-01",
        "expand_prompt": True,
        "image_url": "https://example.com/flower.jpg",
    }
}
