"""Luma Dream Machine as PiAPI resells it: model `luma`, tasks `video_generation` and `extend_video`.

Two input forms are accepted, as PiAPI's pages show them: `key_frames {frame0, frame1}` (each `{type: "image",
url}`, or for extend `frame0 {type: "generation", id}` naming the task to continue) with `model_name`, and the
newer `{model: "ray-v2", start_image, end_image}`. PiAPI reports Luma's `meta.usage.type` as "point" and froze
2,000,000 credits ($0.20) for a 5-second clip.
"""

from __future__ import annotations

from typing import Any, Literal, Self

from pydantic import Field, model_validator

from genmill.domain.catalog import VIDEO_RETENTION, CatalogEntry, DerivedFrom, usd
from genmill.models.schema import OptionalMediaRef, Setting, TaskInput

MODEL = "luma"
FAMILY = "luma"

LumaModelName = Literal["ray-v1", "ray-v2"]
LumaAspectRatio = Literal["16:9", "9:16", "1:1", "4:3", "3:4", "21:9", "9:21"]
USD_PER_5S = 0.20
"""$0.20 per started 5 s (PiAPI's example froze 2,000,000 for 5 s; longer clips in proportion is our choice)."""
DEFAULT_MODEL_NAME: LumaModelName = "ray-v1"
"""Dream Machine 1.6, what PiAPI ran before `model_name` existed (our choice of default)."""


class KeyFrame(Setting):
    type: Literal["image", "generation"] = Field(..., description='"image" with url, or "generation" with id.')
    url: OptionalMediaRef = Field("", description="The image, for type image.")
    id: str = Field("", description="The earlier task, for type generation (extend_video).")

    @model_validator(mode="after")
    def _target(self) -> Self:
        if self.type == "image" and not self.url:
            raise ValueError("url: a key frame of type image needs url")
        if self.type == "generation" and not self.id:
            raise ValueError("id: a key frame of type generation needs id")
        return self


class KeyFrames(Setting):
    frame0: KeyFrame | None = Field(None, description="The first frame (or the generation to continue).")
    frame1: KeyFrame | None = Field(None, description="The last frame.")


class LumaVideo(TaskInput):
    prompt: str = Field(..., min_length=1, description="What happens in the video.")
    expand_prompt: bool = Field(False, description="Let Luma rewrite the prompt (PiAPI recommends false).")
    loop: bool = Field(False, description="Make the last frame flow back into the first.")
    key_frames: KeyFrames | None = Field(None, description="First and/or last frame; none for text-to-video.")
    model_name: LumaModelName = Field(DEFAULT_MODEL_NAME, description="ray-v1 (Dream Machine 1.6) or ray-v2.")
    model: Literal["", "ray-v1", "ray-v2"] = Field("", description="The newer form's name for model_name.")
    start_image: OptionalMediaRef = Field("", description="The newer form's first frame.")
    end_image: OptionalMediaRef = Field("", description="The newer form's last frame.")
    duration: Literal[5, 9, 10] = Field(5, description="Seconds: 5, or 9/10 with ray-v2.")
    aspect_ratio: LumaAspectRatio = Field("16:9", description="16:9, 9:16, 1:1, 4:3, 3:4, 21:9 or 9:21.")

    @model_validator(mode="after")
    def _forms(self) -> Self:
        if self.model and self.model != self.model_name:
            if "model_name" in self.model_fields_set:
                raise ValueError("model: disagrees with model_name; give one of them")
            self.model_name = self.model
        frames = self.key_frames or KeyFrames()
        if (self.start_image and frames.frame0) or (self.end_image and frames.frame1):
            raise ValueError("start_image: give key_frames or start_image/end_image, not both for one frame")
        if self.duration != 5 and self.model_name == "ray-v1":
            raise ValueError("duration: ray-v1 makes 5-second clips; longer ones need model_name ray-v2")
        self._check_frames(frames)
        return self

    def _check_frames(self, frames: KeyFrames) -> None:
        for name, frame in (("frame0", frames.frame0), ("frame1", frames.frame1)):
            if frame is not None and frame.type == "generation":
                raise ValueError(f"key_frames.{name}: video_generation takes frames of type image only")

    def first_image(self) -> str:
        """The first frame's image in either form, or ""."""
        frame = self.key_frames.frame0 if self.key_frames else None
        return frame.url if frame is not None and frame.type == "image" else self.start_image

    def last_image(self) -> str:
        frame = self.key_frames.frame1 if self.key_frames else None
        return frame.url if frame is not None and frame.type == "image" else self.end_image


class LumaExtend(LumaVideo):
    """Continue an earlier Luma video: `key_frames.frame0 {type: "generation", id}` names it (or, genmill's
    spelling, `origin_task_id`; each fills the other so the echoed input carries both); `frame1` may give an image
    to end on."""

    origin_task_id: str = Field("", description="The Luma task to continue (key_frames.frame0.id).")

    @model_validator(mode="after")
    def _origin(self) -> Self:
        frame0 = self.key_frames.frame0 if self.key_frames else None
        named = frame0.id if frame0 is not None and frame0.type == "generation" else ""
        if named and self.origin_task_id and named != self.origin_task_id:
            raise ValueError("origin_task_id: disagrees with key_frames.frame0.id")
        if frame0 is not None and frame0.type == "image":
            raise ValueError("key_frames.frame0: extend_video continues a generation; give type generation and id")
        origin = named or self.origin_task_id
        if not origin:
            raise ValueError("key_frames.frame0: name the video to extend ({type: generation, id: <task id>})")
        self.origin_task_id = origin
        if not named:
            self.key_frames = KeyFrames(
                frame0=KeyFrame(type="generation", id=origin),
                frame1=self.key_frames.frame1 if self.key_frames else None,
            )
        return self

    def _check_frames(self, frames: KeyFrames) -> None:
        if frames.frame1 is not None and frames.frame1.type != "image":
            raise ValueError("key_frames.frame1: must be of type image")


def price(inputs: LumaVideo) -> int:
    return usd(USD_PER_5S) * -(-inputs.duration // 5)


ORIGINS = DerivedFrom(models=(MODEL,), task_types=("video_generation", "extend_video"))


def _entry(task_type: str, input_model: type[TaskInput], description: str, **extra: Any) -> CatalogEntry:
    return CatalogEntry(
        model=MODEL,
        task_type=task_type,
        input_model=input_model,
        price=price,
        family=FAMILY,
        retention=VIDEO_RETENTION,
        description=description,
        usage_type="point",
        **extra,
    )


ENTRIES: list[CatalogEntry] = [
    _entry("video_generation", LumaVideo, "Dream Machine text or image to video."),
    _entry("extend_video", LumaExtend, "Continue a Dream Machine video.", derived_from=ORIGINS),
]

EXAMPLE_INPUTS: dict[str, dict[str, Any]] = {
    "video_generation": {"prompt": "Fly fishing", "expand_prompt": True, "loop": True},
    "extend_video": {
        "prompt": "Fly fishing",
        "key_frames": {"frame0": {"type": "generation", "id": "<origin_task_id>"}},
        "model_name": "ray-v2",
        "duration": 5,
        "aspect_ratio": "9:16",
    },
}
KEY_FRAMES_EXAMPLE: dict[str, Any] = {
    "prompt": "Fly fishing",
    "key_frames": {"frame0": {"type": "image", "url": "https://example.com/river.png"}},
    "model_name": "ray-v2",
    "duration": 5,
    "aspect_ratio": "9:16",
}
"""PiAPI's key-frame example (its page's placeholder frame values replaced by a real image frame)."""
NEWER_FORM_EXAMPLE: dict[str, Any] = {
    "prompt": "Fly fishing",
    "model": "ray-v2",
    "start_image": "https://example.com/river.png",
    "end_image": "https://example.com/sunset.png",
}
