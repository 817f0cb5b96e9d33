"""Other video models: `Qubico/skyreels`, `Qubico/framepack`, `Qubico/hunyuan` and `Qubico/hug-video`
(AI Hug).

AI Hug videos are kept 1 day; every other video 3 days.
"""

from __future__ import annotations

from pydantic import Field

from genmill.domain.catalog import HUG_VIDEO_RETENTION, VIDEO_RETENTION, CatalogEntry
from genmill.models.schema import (
    LoraList,
    MediaRef,
    NegativePrompt,
    OptionalMediaRef,
    TaskInput,
    VideoAspectRatio,
    flat,
    per_unit,
)

SKYREELS = "Qubico/skyreels"
FRAMEPACK = "Qubico/framepack"
HUNYUAN = "Qubico/hunyuan"
HUG_VIDEO = "Qubico/hug-video"


# --------------------------------------------------------------------------------------------------
# Skyreels
# --------------------------------------------------------------------------------------------------


class SkyreelsImg2Video(TaskInput):
    prompt: str = Field(..., min_length=1, description="What happens in the video.")
    negative_prompt: NegativePrompt = ""
    image: MediaRef = Field(..., description="First frame (URL or base64).")
    aspect_ratio: VideoAspectRatio = Field("16:9", description="16:9, 9:16 or 1:1.")
    guidance_scale: float = Field(
        3.5, gt=0.0, le=10.0, description="Prompt adherence: 1-3 freer, 3-5 balanced, 5-10 strict."
    )


# --------------------------------------------------------------------------------------------------
# Framepack
# --------------------------------------------------------------------------------------------------

FRAMEPACK_USD_PER_SECOND = 0.03


class FramepackImg2Video(TaskInput):
    prompt: str = Field(..., min_length=1, description="What happens in the video.")
    negative_prompt: NegativePrompt = ""
    start_image: MediaRef = Field(..., description="Image the video starts from.")
    end_image: OptionalMediaRef = Field("", description="Optional image the video ends on.")
    duration: int = Field(10, ge=10, le=30, description="Length of the video in seconds.")


def _framepack_price(inputs: FramepackImg2Video) -> int:
    return per_unit(FRAMEPACK_USD_PER_SECOND, inputs.duration)


# --------------------------------------------------------------------------------------------------
# Hunyuan
# --------------------------------------------------------------------------------------------------


class HunyuanTxt2Video(TaskInput):
    prompt: str = Field(..., min_length=1, max_length=1000, description="What happens in the video.")
    negative_prompt: NegativePrompt = ""
    aspect_ratio: VideoAspectRatio = Field("16:9", description="16:9, 9:16 or 1:1.")


class HunyuanImg2Video(HunyuanTxt2Video):
    image: MediaRef = Field(..., description="Image to animate (URL or base64).")


class HunyuanTxt2VideoLora(HunyuanTxt2Video):
    lora_settings: LoraList = Field(..., description="LoRA adapters to apply.")


# --------------------------------------------------------------------------------------------------
# AI Hug
# --------------------------------------------------------------------------------------------------


class HugImageToVideo(TaskInput):
    image_url: MediaRef = Field(..., description="Photo of two people (URL or base64).")


ENTRIES: list[CatalogEntry] = [
    CatalogEntry(
        model=SKYREELS,
        task_type="img2video",
        input_model=SkyreelsImg2Video,
        # price: our choice — $0.15 per video.
        price=flat(0.15),
        family="skyreels",
        retention=VIDEO_RETENTION,
        description="Human-centric image to video.",
    ),
    CatalogEntry(
        model=FRAMEPACK,
        task_type="img2video",
        input_model=FramepackImg2Video,
        price=_framepack_price,
        family="framepack",
        retention=VIDEO_RETENTION,
        description="Long image to video, 10-30 s ($0.03 per second).",
    ),
    CatalogEntry(
        model=HUNYUAN,
        task_type="txt2video",
        input_model=HunyuanTxt2Video,
        # price: our choice — $0.09, and $0.03 for fast-txt2video: the Hunyuan prices public clients quote.
        price=flat(0.09),
        family="hunyuan",
        retention=VIDEO_RETENTION,
        description="Text to video.",
    ),
    CatalogEntry(
        model=HUNYUAN,
        task_type="fast-txt2video",
        input_model=HunyuanTxt2Video,
        price=flat(0.03),
        family="hunyuan",
        retention=VIDEO_RETENTION,
        description="Faster, cheaper text to video.",
    ),
    CatalogEntry(
        model=HUNYUAN,
        task_type="img2video-concat",
        input_model=HunyuanImg2Video,
        # price: our choice — image to video and LoRA at the txt2video price, $0.09.
        price=flat(0.09),
        family="hunyuan",
        retention=VIDEO_RETENTION,
        description="Image to video with freer motion.",
    ),
    CatalogEntry(
        model=HUNYUAN,
        task_type="img2video-replace",
        input_model=HunyuanImg2Video,
        price=flat(0.09),
        family="hunyuan",
        retention=VIDEO_RETENTION,
        description="Image to video that sticks to the image.",
    ),
    CatalogEntry(
        model=HUNYUAN,
        task_type="txt2video-lora",
        input_model=HunyuanTxt2VideoLora,
        price=flat(0.09),
        family="hunyuan",
        retention=VIDEO_RETENTION,
        description="Text to video with LoRA adapters.",
    ),
    CatalogEntry(
        model=HUG_VIDEO,
        task_type="image_to_video",
        input_model=HugImageToVideo,
        # price: our choice — $0.20 per video.
        price=flat(0.20),
        family="hug-video",
        retention=HUG_VIDEO_RETENTION,
        description="AI Hug: a video of the two people in the photo hugging (kept 1 day).",
    ),
]
