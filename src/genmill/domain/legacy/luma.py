"""The legacy Dream Machine API: `POST /api/luma/v1/video`, `POST /api/luma/v1/video/{task_id}/extend` and
`GET /api/luma/v1/video/{task_id}`, mapped onto the unified `luma` tasks.

The legacy body names the frames `image_url` and `image_end_url`; the unified input names them
`key_frames.frame0` and `key_frames.frame1` (`{type: "image", url}`), and an extend continues the task in the path
(`origin_task_id`, `key_frames.frame0 {type: "generation", id}`). Fetch answers PiAPI's legacy object: `task_id`,
`input` (a JSON string), `status`, `metadata` and Luma's `generation` (`id`, `prompt`, `state`, `created_at`,
`video`, ...).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, Field

from genmill.domain.legacy import VIDEO_STATUS, LegacyCreate, metadata, present, webhook_config

MODEL = "luma"
ENTRIES = {(MODEL, "video_generation"), (MODEL, "extend_video")}

RENAMES = {
    "origin_task_id": "task_id",
    "key_frames.frame0.url": "image_url",
    "key_frames.frame1.url": "image_end_url",
    "key_frames.frame0": "image_url",
    "key_frames.frame1": "image_end_url",
}
"""Unified input fields and the legacy fields they came from (an extend's origin is the path's task_id), for error
messages."""


class LumaExtendRequest(BaseModel):
    """`POST /api/luma/v1/video/{task_id}/extend`."""

    prompt: str = Field(..., description="What happens next.")
    expand_prompt: bool | None = Field(None, description="Let Luma rewrite the prompt (false recommended).")
    loop: bool | None = Field(None, description="Make the end flow back into the start.")
    image_end_url: str | None = Field(None, description="An image for the video to end on.")
    webhook_endpoint: str | None = Field(None, description="URL to POST task updates to (the unified webhook).")
    webhook_secret: str | None = Field(None, description="Sent back in the x-webhook-secret header.")


class LumaVideoRequest(LumaExtendRequest):
    """`POST /api/luma/v1/video`."""

    image_url: str | None = Field(None, description="The first frame: makes it an image-to-video task.")
    aspect_ratio: str | None = Field(None, description="16:9 by default (the unified input's choices).")


def frame(url: str | None) -> dict[str, str] | None:
    return {"type": "image", "url": url} if url else None


def to_create(request: LumaVideoRequest) -> LegacyCreate:
    fields = present(
        {
            "prompt": request.prompt,
            "expand_prompt": request.expand_prompt,
            "loop": request.loop,
            "aspect_ratio": request.aspect_ratio,
        }
    )
    frames = present({"frame0": frame(request.image_url), "frame1": frame(request.image_end_url)})
    if frames:
        fields["key_frames"] = frames
    return LegacyCreate(
        MODEL, "video_generation", fields, webhook_config(request.webhook_endpoint, request.webhook_secret)
    )


def to_extend(origin_task_id: str, request: LumaExtendRequest) -> LegacyCreate:
    fields = present({"prompt": request.prompt, "expand_prompt": request.expand_prompt, "loop": request.loop})
    fields["origin_task_id"] = origin_task_id
    fields["key_frames"] = present(
        {"frame0": {"type": "generation", "id": origin_task_id}, "frame1": frame(request.image_end_url)}
    )
    return LegacyCreate(MODEL, "extend_video", fields, webhook_config(request.webhook_endpoint, request.webhook_secret))


def url_of(value: Any) -> str | None:
    """A Luma asset as a URL: the unified output gives `{url, width, height}` objects (or a plain URL)."""
    if isinstance(value, dict):
        return str(value.get("url") or "") or None
    return str(value) if value else None


def fetch_view(task: Mapping[str, Any]) -> dict[str, Any]:
    """PiAPI's legacy Dream Machine task for a unified `luma` task."""
    output = task.get("output") or {}
    task_input = task.get("input") or {}
    status = VIDEO_STATUS.get(str(task.get("status")), "pending")
    meta = metadata(task)
    return {
        "task_id": task.get("task_id", ""),
        "input": json.dumps(task_input, sort_keys=True),
        "status": status,
        "metadata": meta,
        "generation": {
            "id": task.get("task_id", ""),
            "prompt": output.get("prompt") or task_input.get("prompt", ""),
            "state": status,
            "created_at": meta["created_at"],
            "video": url_of(output.get("video") or output.get("video_url")),
            "video_raw": url_of(output.get("video_raw")),
            "thumbnail": url_of(output.get("thumbnail")),
            "last_frame": url_of(output.get("last_frame")),
            "like": None,
            "estimate_wait_seconds": None,
        },
    }


__all__ = ["ENTRIES", "RENAMES", "LumaExtendRequest", "LumaVideoRequest", "fetch_view", "to_create", "to_extend"]
