"""The legacy Kling API: `POST /api/kling/v1/video`, `POST /api/kling/v1/video/{task_id}/extend` and
`GET /api/kling/v1/video/{task_id}`, mapped onto the unified `kling` `video_generation` and `extend_video` tasks.

Legacy names and their unified fields: `creativity` is `cfg_scale`, `professional_mode` picks `mode` pro (else
std), `tail_image_url` is `image_tail_url`, and `camera {type, horizontal, vertical, zoom, tilt, pan, roll}` is
`camera_control {type, config {...}}` (a camera that moves along no axis is no camera control). The legacy
body has no version; the unified default applies unless the body gives one. Fetch answers `task_id`, `status`,
`input`, `metadata`, and Kling's own `task` and `works` as the unified output carries them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, Field

from genmill.domain.legacy import VIDEO_STATUS, LegacyCreate, metadata, present, webhook_config

MODEL = "kling"
ENTRIES = {(MODEL, "video_generation"), (MODEL, "extend_video")}

AXES = ("horizontal", "vertical", "pan", "tilt", "roll", "zoom")
KLING_STATUS = {"pending": 5, "processing": 10, "completed": 99, "failed": 50}
"""Kling's numeric task status for each legacy one (99 is what the unified output reports on success)."""

RENAMES = {
    "origin_task_id": "task_id",
    "cfg_scale": "creativity",
    "image_tail_url": "tail_image_url",
    "camera_control.config": "camera",
    "camera_control": "camera",
    "mode": "professional_mode",
}


class Camera(BaseModel):
    type: str | None = Field(None, description='"simple" (one axis) or a master shot such as "down_back".')
    horizontal: float = 0.0
    vertical: float = 0.0
    zoom: float = 0.0
    tilt: float = 0.0
    pan: float = 0.0
    roll: float = 0.0


class KlingExtendRequest(BaseModel):
    """`POST /api/kling/v1/video/{task_id}/extend` (its legacy page was not readable: the video body's prompt
    fields, our choice)."""

    prompt: str | None = Field(None, description="What happens next.")
    negative_prompt: str | None = None
    creativity: float | None = Field(None, description="0 to 1: the lower, the more creative (cfg_scale).")
    webhook_endpoint: str | None = Field(None, description="URL to POST task updates to (the unified webhook).")
    webhook_secret: str | None = Field(None, description="Sent back in the x-webhook-secret header.")


class KlingVideoRequest(KlingExtendRequest):
    """`POST /api/kling/v1/video`."""

    duration: int | None = Field(None, description="5 or 10 seconds.")
    aspect_ratio: str | None = Field(None, description="16:9, 9:16 or 1:1.")
    professional_mode: bool | None = Field(None, description="Pro mode (1080p) instead of std.")
    image_url: str | None = Field(None, description="First frame: makes it an image-to-video task.")
    tail_image_url: str | None = Field(None, description="Last frame; needs image_url.")
    camera: Camera | None = Field(None, description="Camera movement (text-to-video).")
    version: str | None = Field(None, description="Kling version (the unified default when absent).")


def camera_control(camera: Camera | None) -> dict[str, Any] | None:
    if camera is None:
        return None
    config = {axis: getattr(camera, axis) for axis in AXES}
    kind = camera.type or "simple"
    if kind == "simple" and not any(config.values()):
        return None
    return {"type": kind, "config": config}


def to_create(request: KlingVideoRequest) -> LegacyCreate:
    mode = None if request.professional_mode is None else ("pro" if request.professional_mode else "std")
    fields = present(
        {
            "prompt": request.prompt,
            "negative_prompt": request.negative_prompt,
            "cfg_scale": request.creativity,
            "duration": request.duration,
            "aspect_ratio": request.aspect_ratio,
            "mode": mode,
            "image_url": request.image_url,
            "image_tail_url": request.tail_image_url,
            "camera_control": camera_control(request.camera),
            "version": request.version,
        }
    )
    return LegacyCreate(
        MODEL, "video_generation", fields, webhook_config(request.webhook_endpoint, request.webhook_secret)
    )


def to_extend(origin_task_id: str, request: KlingExtendRequest) -> LegacyCreate:
    fields = present(
        {"prompt": request.prompt, "negative_prompt": request.negative_prompt, "cfg_scale": request.creativity}
    )
    fields["origin_task_id"] = origin_task_id
    return LegacyCreate(MODEL, "extend_video", fields, webhook_config(request.webhook_endpoint, request.webhook_secret))


def fetch_view(task: Mapping[str, Any]) -> dict[str, Any]:
    """The legacy Kling task for a unified `kling` task."""
    output = task.get("output") or {}
    status = VIDEO_STATUS.get(str(task.get("status")), "pending")
    return {
        "task_id": task.get("task_id", ""),
        "status": status,
        "input": dict(task.get("input") or {}),
        "metadata": metadata(task),
        "task": {"id": task.get("task_id", ""), "type": output.get("type", ""), "status": KLING_STATUS[status]},
        "works": list(output.get("works") or []),
    }


__all__ = ["ENTRIES", "RENAMES", "KlingExtendRequest", "KlingVideoRequest", "fetch_view", "to_create", "to_extend"]
