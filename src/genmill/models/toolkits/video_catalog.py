"""Video tools: `Qubico/video-toolkit` — 2x upscale, face swap and background removal.

Limits that need the decoded video (720p, 10-240 frames for upscale, 600 frames for face swap) are checked
by the backend; what the input itself shows (MP4 container, at most 10 MB when sent inline, a non-MP4 file
extension) is checked here. Prices per frame are frozen at the frame cap when the task is created.
"""

from __future__ import annotations

from typing import Annotated, Self

from pydantic import Field, model_validator

from genmill.domain.catalog import VIDEO_RETENTION, CatalogEntry
from genmill.models.schema import (
    MEDIA_INPUT,
    FaceIndexes,
    TaskInput,
    face_index_count,
    flat,
    mp4_video_ref,
    per_unit,
    usage_per_unit,
    video_size_limit,
)
from genmill.models.toolkits.image_catalog import UPSCALE_MODELS, ToolkitImage, check_extra_choice

MODEL = "Qubico/video-toolkit"
FAMILY = "video-toolkit"

UPSCALE_USD_PER_FRAME = 0.0003
UPSCALE_MIN_FRAMES = 10
UPSCALE_MAX_FRAMES = 240
UPSCALE_MAX_HEIGHT = 720
"""Upscale input: at most 720p (1280x720), 10-240 frames; the output is 2x in each dimension."""

# price: our choice — PiAPI bills video face swap per processed frame without a published rate.
VIDEO_UPSCALE_MODES = ("realesrgan", "lanczos")
"""Real-ESRGAN on every frame (the default), or ffmpeg's 2x Lanczos resize (a fast mode, not super-resolution)."""

FACE_SWAP_USD_PER_FRAME = 0.0002
FACE_SWAP_MAX_FRAMES = 600

Mp4Video = Annotated[str, mp4_video_ref(), MEDIA_INPUT]
AnyVideo = Annotated[str, video_size_limit(), MEDIA_INPUT]


class VideoUpscale(TaskInput):
    video: Mp4Video = Field(..., description="MP4, at most 720p, 10-240 frames and 10 MB; upscaled 2x.")
    # genmill extras, undeclared so PiAPI's echoed input keeps its keys: `upscale_mode` (realesrgan or lanczos,
    # else GENMILL_VIDEO_UPSCALE) and `upscale_model` (as for the image upscale), checked when sent.

    @model_validator(mode="after")
    def _known_extras(self) -> Self:
        check_extra_choice(self, "upscale_mode", VIDEO_UPSCALE_MODES)
        check_extra_choice(self, "upscale_model", UPSCALE_MODELS)
        return self


class VideoFaceSwap(TaskInput):
    swap_image: ToolkitImage = Field(..., description="Image with the face(s) to put into the video.")
    target_video: Mp4Video = Field(..., description="MP4 of at most 600 frames and 10 MB.")
    swap_faces_index: FaceIndexes = "0"
    target_faces_index: FaceIndexes = "0"

    @model_validator(mode="after")
    def _same_count(self) -> Self:
        if face_index_count(self.swap_faces_index) != face_index_count(self.target_faces_index):
            raise ValueError("swap_faces_index and target_faces_index must list the same number of faces")
        return self


class VideoBackgroundRemove(TaskInput):
    video: AnyVideo = Field(..., description="Video whose background is removed (at most 10 MB).")
    invert_output: bool = Field(False, description="Keep the background and remove the subject instead.")


def upscale_price_for_frames(frames: int) -> int:
    """The list price of upscaling a video of `frames` frames ($0.0003 per frame)."""
    return per_unit(UPSCALE_USD_PER_FRAME, frames)


def face_swap_price_for_frames(frames: int) -> int:
    return per_unit(FACE_SWAP_USD_PER_FRAME, frames)


def _upscale_price(_inputs: VideoUpscale) -> int:
    # price: our choice — the frame count is known only once the video is decoded, so the price of the
    # largest allowed video (240 frames) is frozen; on completion only the frames the output reports
    # (`output.frames`) are consumed and the rest released.
    return upscale_price_for_frames(UPSCALE_MAX_FRAMES)


def _face_swap_price(_inputs: VideoFaceSwap) -> int:
    return face_swap_price_for_frames(FACE_SWAP_MAX_FRAMES)


ENTRIES: list[CatalogEntry] = [
    CatalogEntry(
        model=MODEL,
        task_type="upscale",
        input_model=VideoUpscale,
        price=_upscale_price,
        usage_price=usage_per_unit("frames", upscale_price_for_frames, UPSCALE_MAX_FRAMES),
        family=FAMILY,
        retention=VIDEO_RETENTION,
        description="2x video upscale with Real-ESRGAN x4plus on every frame (or, as configured, ffmpeg's Lanczos "
        "resize, which is not super-resolution); $0.0003 per frame, frozen at the 240-frame cap, and the frames "
        "the video had consumed.",
    ),
    CatalogEntry(
        model=MODEL,
        task_type="face-swap",
        input_model=VideoFaceSwap,
        price=_face_swap_price,
        usage_price=usage_per_unit("frames", face_swap_price_for_frames, FACE_SWAP_MAX_FRAMES),
        family=FAMILY,
        retention=VIDEO_RETENTION,
        description="Swap faces in a video with a landmark warp and Poisson blending, not a swap network (per "
        "frame, frozen at the 600-frame cap, and the frames the video had consumed).",
    ),
    CatalogEntry(
        model=MODEL,
        task_type="background-remove",
        input_model=VideoBackgroundRemove,
        # price: our choice — $0.028 per video, what PiAPI's published example consumed.
        price=flat(0.028),
        family=FAMILY,
        retention=VIDEO_RETENTION,
        description="Remove the background of a video: the subject of every frame (any object, not only people) "
        "cut out by U²-Net-p into a WebM (VP9) with an alpha channel.",
    ),
]
