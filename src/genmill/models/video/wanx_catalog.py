"""Wan 2.1 / 2.2 video: `Qubico/wanx`.

Wan 2.1 task types produce 85 frames at 480p, except `img2video-14b-keyframe` (81 frames at 720p, the
first-last-frame model's native size); `wan22-*` produce 720p (or 480p) clips. Aspect ratio 16:9 or 9:16.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from genmill.domain.catalog import VIDEO_RETENTION, CatalogEntry
from genmill.models.schema import LoraList, MediaRef, NegativePrompt, Setting, TaskInput, flat

MODEL = "Qubico/wanx"
FAMILY = "wanx"

WanAspectRatio = Literal["16:9", "9:16"]
CameraMotion = Literal[
    "zoom_in",
    "zoom_out",
    "pan_left",
    "pan_right",
    "pan_up",
    "pan_down",
    "tilt_left",
    "tilt_right",
    "tilt_up",
    "tilt_down",
    "roll_clockwise",
    "roll_anticlockwise",
]


class CameraSetting(Setting):
    motion_type: CameraMotion = Field(..., description="Camera movement.")
    motion_speed: float = Field(0.2, ge=0.0, le=10.0, description="Speed of the movement.")


class WanTxt2Video(TaskInput):
    prompt: str = Field(..., min_length=1, description="What happens in the video.")
    negative_prompt: NegativePrompt = ""
    aspect_ratio: WanAspectRatio = Field("16:9", description="16:9 or 9:16.")


class WanImg2Video(WanTxt2Video):
    image: MediaRef = Field(..., description="First frame (URL or base64).")


class WanTxt2VideoLora(WanTxt2Video):
    lora_settings: LoraList = Field(..., description="LoRA adapters to apply.")


class WanImg2VideoLora(WanImg2Video):
    lora_settings: LoraList = Field(..., description="LoRA adapters to apply.")


class WanKeyframe(WanTxt2Video):
    first_frame: MediaRef = Field(..., description="Image the video starts from.")
    last_frame: MediaRef = Field(..., description="Image the video ends on.")


class WanControlCamera(WanImg2Video):
    control_camera_settings: list[CameraSetting] = Field(
        ..., min_length=1, max_length=4, description="Camera movements to apply."
    )


class Wan22Txt2Video(WanTxt2Video):
    video_resolution: Literal["480p", "720p"] = Field("720p", description="Output resolution.")


class Wan22Img2Video(Wan22Txt2Video):
    image: MediaRef = Field(..., description="First frame (URL or base64).")


def _entry(task_type: str, input_model: type[TaskInput], price_usd: float, description: str) -> CatalogEntry:
    return CatalogEntry(
        model=MODEL,
        task_type=task_type,
        input_model=input_model,
        price=flat(price_usd),
        family=FAMILY,
        retention=VIDEO_RETENTION,
        description=description,
    )


ENTRIES: list[CatalogEntry] = [
    _entry("txt2video-1.3b", WanTxt2Video, 0.12, "Lightweight text to video (480p, 85 frames)."),
    _entry("txt2video-14b", WanTxt2Video, 0.28, "Text to video (480p, 85 frames)."),
    _entry("img2video-14b", WanImg2Video, 0.28, "Image to video (480p, 85 frames)."),
    # price: our choice — the LoRA, keyframe, camera and Wan 2.2 variants at the 14B price, $0.28.
    _entry("txt2video-14b-lora", WanTxt2VideoLora, 0.28, "Text to video with LoRA adapters."),
    _entry("img2video-14b-lora", WanImg2VideoLora, 0.28, "Image to video with LoRA adapters."),
    _entry("img2video-14b-keyframe", WanKeyframe, 0.28, "Video between a first and a last frame (720p, 81 frames)."),
    _entry("img2video-14b-control-camera", WanControlCamera, 0.28, "Image to video with camera movements."),
    _entry("wan22-txt2video-14b", Wan22Txt2Video, 0.28, "Wan 2.2 text to video."),
    _entry("wan22-img2video-14b", Wan22Img2Video, 0.28, "Wan 2.2 image to video."),
]
