"""The legacy Midjourney API (`/mj/v2/*`), mapped onto the unified `midjourney` tasks.

Each `/mj/v2/<operation>` body carries the unified input's own field names (PiAPI kept them when it unified the
API) plus `webhook_endpoint`/`webhook_secret`, which become the unified `config.webhook_config`; `seed` also
takes its origin as `task_id`, and an `index` sent as a number reads as its string. A create answers
`{task_id, status: "success", message}`. Fetch answers GoAPI's task object: top-level `task_id`, `status`
(`pending`, `staged`, `processing`, `finished`, `failed`), `process_time`, `retry_count`, `meta` and
`task_result` (the field list of PiAPI's "Midjourney Task Result" page), built from the unified task.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, Field

from genmill.domain.legacy import LegacyCreate, elapsed_seconds, error_messages, present, unix_seconds, webhook_config

MODEL = "midjourney"
TASK_TYPES = ("imagine", "upscale", "variation", "reroll", "describe", "seed", "blend", "inpaint", "outpaint", "pan")

STATUS = {
    "pending": "pending",
    "staged": "staged",
    "processing": "processing",
    "completed": "finished",
    "failed": "failed",
    "cancelled": "failed",
}
"""Unified status to GoAPI's: clients poll until `finished` or `failed`."""

MAX_MULTI_FETCH = 100
"""Task ids one multi_fetch answers (our choice)."""


class Webhook(BaseModel):
    webhook_endpoint: str | None = Field(None, description="URL to POST task updates to (the unified webhook).")
    webhook_secret: str | None = Field(None, description="Sent back in the x-webhook-secret header.")


class ImagineRequest(Webhook):
    prompt: str = Field(..., description="What to draw.")
    aspect_ratio: str | None = Field(None, description='"W:H", 1:1 by default.')
    process_mode: str | None = Field(None, description="relax, fast or turbo.")
    skip_prompt_check: bool | None = None
    bot_id: int | None = None


class FollowUp(Webhook):
    origin_task_id: str = Field(..., description="The earlier Midjourney task.")
    process_mode: str | None = Field(None, description="The mode the follow-up is priced at (fast by default).")


class UpscaleRequest(FollowUp):
    index: str | int = Field(..., description='"1"-"4", light, beta, 2x, 4x, subtle or creative.')


class VariationRequest(FollowUp):
    index: str | int = Field(..., description='"1"-"4", high_variation or low_variation.')
    prompt: str | None = None
    aspect_ratio: str | None = None
    skip_prompt_check: bool | None = None


class RerollRequest(FollowUp):
    prompt: str | None = None
    aspect_ratio: str | None = None
    skip_prompt_check: bool | None = None


class DescribeRequest(Webhook):
    image_url: str = Field(..., description="The image to describe (URL or base64).")
    process_mode: str | None = None
    bot_id: int | None = None


class BlendRequest(Webhook):
    image_urls: list[str] = Field(..., description="2 to 5 images (URLs or base64).")
    dimension: str | None = Field(None, description="square, portrait or landscape.")
    process_mode: str | None = None
    bot_id: int | None = None


class SeedRequest(Webhook):
    origin_task_id: str | None = Field(None, description="The earlier image task (also accepted as task_id).")
    task_id: str | None = Field(None, description="The earlier image task, GoAPI's spelling.")


class InpaintRequest(FollowUp):
    mask: str = Field(..., description="Mask over the upscaled image (base64 or URL): white is repainted.")
    prompt: str | None = None
    skip_prompt_check: bool | None = None


class OutpaintRequest(FollowUp):
    zoom_ratio: str | float | None = Field(None, description='"1.5", "2", "1" (make square) or 1-2.')
    aspect_ratio: str | None = None
    prompt: str | None = None
    skip_prompt_check: bool | None = None


class PanRequest(FollowUp):
    direction: str = Field(..., description="up, down, left or right.")
    prompt: str | None = None
    skip_prompt_check: bool | None = None


class TaskIdRequest(BaseModel):
    """`fetch` and `cancel`."""

    task_id: str = Field(..., min_length=1, max_length=100)


class MultiFetchRequest(BaseModel):
    task_ids: list[str] = Field(..., min_length=1, max_length=MAX_MULTI_FETCH)


REQUESTS: dict[str, type[Webhook]] = {
    "imagine": ImagineRequest,
    "upscale": UpscaleRequest,
    "variation": VariationRequest,
    "reroll": RerollRequest,
    "describe": DescribeRequest,
    "seed": SeedRequest,
    "blend": BlendRequest,
    "inpaint": InpaintRequest,
    "outpaint": OutpaintRequest,
    "pan": PanRequest,
}
"""The body of each `/mj/v2/<task_type>` create."""


def to_create(task_type: str, request: Webhook) -> LegacyCreate:
    """The unified `midjourney` task a legacy body stands for; ValueError naming the field when it cannot be."""
    fields = present(request.model_dump(exclude={"webhook_endpoint", "webhook_secret"}))
    if "index" in fields:
        fields["index"] = str(fields["index"])
    if "zoom_ratio" in fields:
        fields["zoom_ratio"] = (
            f"{fields['zoom_ratio']:g}" if isinstance(fields["zoom_ratio"], float) else fields["zoom_ratio"]
        )
    if task_type == "seed":
        origin, named = fields.pop("origin_task_id", None), fields.pop("task_id", None)
        if origin and named and origin != named:
            raise ValueError("task_id: disagrees with origin_task_id; give one of them")
        if not (origin or named):
            raise ValueError("task_id: required (the task whose seed to read)")
        fields["origin_task_id"] = origin or named
    return LegacyCreate(MODEL, task_type, fields, webhook_config(request.webhook_endpoint, request.webhook_secret))


def created(task_id: str) -> dict[str, Any]:
    """What a legacy create answers."""
    return {"task_id": task_id, "status": "success", "message": ""}


def progress(task: Mapping[str, Any]) -> int:
    """0-100: 100 once finished, else what the backend reported (output `task_progress` or `detail.progress`)."""
    if task.get("status") == "completed":
        return 100
    output, detail = task.get("output") or {}, task.get("detail") or {}
    if isinstance(output.get("task_progress"), int | float):
        return int(output["task_progress"])
    fraction = detail.get("progress") if isinstance(detail, dict) else None
    return int(float(fraction) * 100) if isinstance(fraction, int | float) else 0


def fetch_view(task: Mapping[str, Any]) -> dict[str, Any]:
    """GoAPI's task object for a unified `midjourney` task."""
    output = task.get("output") or {}
    task_input = task.get("input") or {}
    meta = task.get("meta") or {}
    usage = meta.get("usage") or {}
    image_url = str(output.get("image_url") or "")
    split = list(output.get("temporary_image_urls") or output.get("image_urls") or [])
    result = {
        "discord_image_url": output.get("discord_image_url") or image_url,
        "image_url": image_url,
        "image_urls": list(output.get("image_urls") or split),
        "temporary_image_urls": split,
        "permanent_url": "",
        "task_progress": progress(task),
        "intermediate_image_urls": list(output.get("intermediate_image_urls") or []),
        "image_id": "",
        "seed": str(output.get("seed", "")),
        "result_message_id": "",
        "quota_used": usage.get("consume", 0),
        "credit": 0,
        "message": str(output.get("message") or ""),
        "error_messages": [*error_messages(task), *(output.get("error_messages") or [])],
        "need_retry": False,
        "actions": list(output.get("actions") or []),
    }
    if "description" in output:
        result["description"] = output["description"]
    return {
        "task_id": task.get("task_id", ""),
        "status": STATUS.get(str(task.get("status")), "pending"),
        "process_time": elapsed_seconds(meta),
        "retry_count": 0,
        "meta": {
            "task_type": task.get("task_type", ""),
            "origin_task_id": task_input.get("origin_task_id", ""),
            "process_mode": task_input.get("process_mode", ""),
            "created_at": unix_seconds(meta.get("created_at", "")),
            "started_at": unix_seconds(meta.get("started_at", "")),
            "ended_at": unix_seconds(meta.get("ended_at", "")),
            "quota_frozen": usage.get("frozen", 0),
            "task_request": dict(task_input),
            "task_param": dict(task_input),
        },
        "task_result": result,
    }


__all__ = ["MODEL", "REQUESTS", "TASK_TYPES", "created", "fetch_view", "to_create"]
