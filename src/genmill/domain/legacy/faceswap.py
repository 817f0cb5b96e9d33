"""The legacy face swap API: `POST /api/face_swap/v1/async` and `POST /api/face_swap/v1/fetch`.

One async endpoint served PiAPI's image face swap, multi-face swap and video face swap (its legacy pages "Face
Swap", "Multi-face-swap" and "Video Faceswap" all post there); the body says which: a `target_video` is a video
face swap (`Qubico/video-toolkit` `face-swap`), face indexes make it a multi-face swap (`Qubico/image-toolkit`
`multi-face-swap`), otherwise it is the one-face `face-swap`. `result_type` (`url` or `base64`, base64 by
default as PiAPI documented) decides how fetch answers the image; it is kept in the task's input, which the
unified models accept and echo, so that fetch can honour it later.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, Field

from genmill.domain.legacy import LegacyCreate, error_messages, present, webhook_config

IMAGE_MODEL = "Qubico/image-toolkit"
VIDEO_MODEL = "Qubico/video-toolkit"
ENTRIES = {(IMAGE_MODEL, "face-swap"), (IMAGE_MODEL, "multi-face-swap"), (VIDEO_MODEL, "face-swap")}
"""The unified entries a legacy face swap creates; its fetch answers tasks of these only."""

ResultType = Literal["url", "base64"]

STATUS = {
    "pending": "pending",
    "staged": "pending",
    "processing": "processing",
    "completed": "success",
    "failed": "failed",
    "cancelled": "failed",
}
"""Unified status to the legacy one: clients poll while `pending`/`processing` and read `image` on `success`."""


class FaceSwapRequest(BaseModel):
    """`POST /api/face_swap/v1/async`."""

    target_image: str | None = Field(None, description="URL or base64 of the image whose face is replaced.")
    swap_image: str = Field(..., description="URL or base64 of the image with the face to put in.")
    target_video: str | None = Field(None, description="URL of an MP4 instead of target_image: a video face swap.")
    swap_faces_index: str | None = Field(None, description='Faces of swap_image to use, e.g. "0" or "1,0".')
    target_faces_index: str | None = Field(None, description='Faces of the target to replace, e.g. "0,1".')
    result_type: ResultType = Field("base64", description="How fetch answers the image: inline base64 or a URL.")
    webhook_endpoint: str | None = Field(None, description="URL to POST task updates to (the unified webhook).")
    webhook_secret: str | None = Field(None, description="Sent back in the x-webhook-secret header.")


class FetchRequest(BaseModel):
    """`POST /api/face_swap/v1/fetch`."""

    task_id: str = Field(..., min_length=1, max_length=100, description="The task_id the async endpoint answered.")


def to_create(request: FaceSwapRequest) -> LegacyCreate:
    """The unified task a legacy face swap stands for; ValueError (naming the field) when the body says neither
    an image nor a video target, or both."""
    config = webhook_config(request.webhook_endpoint, request.webhook_secret)
    indexes = present({"swap_faces_index": request.swap_faces_index, "target_faces_index": request.target_faces_index})
    if request.target_video is not None:
        if request.target_image is not None:
            raise ValueError("target_image: send target_image or target_video, not both")
        fields = {"swap_image": request.swap_image, "target_video": request.target_video, **indexes}
        return LegacyCreate(VIDEO_MODEL, "face-swap", fields, config)
    if request.target_image is None:
        raise ValueError("target_image: required (or target_video for a video face swap)")
    fields = {
        "target_image": request.target_image,
        "swap_image": request.swap_image,
        "result_type": request.result_type,
    }
    task_type = "multi-face-swap" if indexes else "face-swap"
    return LegacyCreate(IMAGE_MODEL, task_type, {**fields, **indexes}, config)


def wants_base64(task: Mapping[str, Any]) -> bool:
    """Whether fetch answers this task's image inline: an image task created with `result_type` base64 (the
    default, also for a task created through the unified API, which has no result_type)."""
    return task.get("model") == IMAGE_MODEL and (task.get("input") or {}).get("result_type", "base64") == "base64"


def fetch_view(task: Mapping[str, Any], image_base64: str | None = None) -> dict[str, Any]:
    """The legacy fetch `data` for a unified task: `{task_id, status, image, error_messages}`, plus `video` for a
    video face swap. `image` is empty until `success`; then it is `image_base64` (the output image's bytes,
    read by the caller when `wants_base64`) or the output URL."""
    output = task.get("output") or {}
    status = STATUS.get(str(task.get("status")), "pending")
    view: dict[str, Any] = {
        "task_id": task.get("task_id", ""),
        "status": status,
        "image": "",
        "error_messages": error_messages(task),
    }
    if task.get("model") == VIDEO_MODEL:
        view["video"] = output.get("video_url", "") if status == "success" else ""
    elif status == "success":
        view["image"] = image_base64 if image_base64 is not None else output.get("image_url", "")
    return view


__all__ = ["ENTRIES", "FaceSwapRequest", "FetchRequest", "fetch_view", "to_create", "wants_base64"]
