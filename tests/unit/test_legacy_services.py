"""The legacy Midjourney, Dream Machine and Kling mappings, both ways, on plain dicts: which unified task each
legacy body creates, and how each unified status and output reads in the legacy fetch."""

from __future__ import annotations

import json
from typing import Any

import pytest

from genmill.domain.legacy import kling, luma
from genmill.domain.legacy import midjourney as mj

CREATED = "2025-06-30T07:11:30Z"
STARTED = "2025-06-30T07:11:40.500000Z"
ENDED = "2025-06-30T07:12:10.500000Z"
ZERO = "0001-01-01T00:00:00Z"


def task(model: str, task_type: str, status: str, **fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "task_id": "t1",
        "model": model,
        "task_type": task_type,
        "status": status,
        "input": {"prompt": "a cat"},
        "output": None,
        "meta": {
            "created_at": CREATED,
            "started_at": ZERO if status in ("pending", "staged") else STARTED,
            "ended_at": ENDED if status in ("completed", "failed", "cancelled") else ZERO,
            "usage": {"type": "quota", "frozen": 450000, "consume": 450000 if status == "completed" else 0},
        },
        "detail": None,
        "error": {"code": 0, "raw_message": "", "message": "", "detail": None},
    }
    return {**base, **fields}


# --- Midjourney --------------------------------------------------------------------------------------------------


def test_midjourney_bodies_keep_their_field_names_and_drop_the_webhook_into_config() -> None:
    body = mj.ImagineRequest(prompt="a cat", aspect_ratio="16:9", webhook_endpoint="https://h.x/", webhook_secret="s")
    create = mj.to_create("imagine", body)
    assert (create.model, create.task_type) == ("midjourney", "imagine")
    assert create.input == {"prompt": "a cat", "aspect_ratio": "16:9"}
    assert create.config == {"service_mode": "", "webhook_config": {"endpoint": "https://h.x/", "secret": "s"}}
    assert mj.to_create("upscale", mj.UpscaleRequest(origin_task_id="o", index=3)).input == {
        "origin_task_id": "o",
        "index": "3",
    }
    assert mj.to_create("outpaint", mj.OutpaintRequest(origin_task_id="o", zoom_ratio=1.5)).input["zoom_ratio"] == "1.5"


def test_midjourney_seed_takes_its_origin_as_task_id_or_origin_task_id() -> None:
    assert mj.to_create("seed", mj.SeedRequest(task_id="o")).input == {"origin_task_id": "o"}
    assert mj.to_create("seed", mj.SeedRequest(origin_task_id="o", task_id="o")).input == {"origin_task_id": "o"}
    with pytest.raises(ValueError, match="task_id"):
        mj.to_create("seed", mj.SeedRequest())
    with pytest.raises(ValueError, match="disagrees"):
        mj.to_create("seed", mj.SeedRequest(origin_task_id="a", task_id="b"))


@pytest.mark.parametrize(
    ("status", "legacy"),
    [
        ("pending", "pending"),
        ("staged", "staged"),
        ("processing", "processing"),
        ("completed", "finished"),
        ("failed", "failed"),
        ("cancelled", "failed"),
    ],
)
def test_midjourney_statuses(status: str, legacy: str) -> None:
    assert mj.fetch_view(task("midjourney", "imagine", status))["status"] == legacy


def test_a_finished_midjourney_task_carries_its_images_actions_and_times() -> None:
    output = {
        "image_url": "http://s/files/grid.png",
        "temporary_image_urls": ["http://s/files/1.png", "http://s/files/2.png"],
        "actions": ["upscale1", "reroll"],
        "seed": 42,
    }
    fields = {"input": {"prompt": "a cat", "process_mode": "fast"}, "output": output}
    view = mj.fetch_view(task("midjourney", "imagine", "completed", **fields))
    result = view["task_result"]
    assert result["image_url"] == result["discord_image_url"] == "http://s/files/grid.png"
    assert result["image_urls"] == result["temporary_image_urls"] == output["temporary_image_urls"]
    assert (result["actions"], result["seed"], result["task_progress"]) == (["upscale1", "reroll"], "42", 100)
    assert view["process_time"] == 30.0 and view["meta"]["created_at"] == 1751267490
    assert view["meta"]["process_mode"] == "fast" and view["meta"]["task_request"] == fields["input"]
    assert result["quota_used"] == view["meta"]["quota_frozen"] == 450000


def test_midjourney_progress_comes_from_the_reported_fraction() -> None:
    running = task("midjourney", "imagine", "processing", detail={"progress": 0.37, "note": "step 10/28"})
    assert mj.fetch_view(running)["task_result"]["task_progress"] == 37
    assert mj.fetch_view(task("midjourney", "imagine", "pending"))["task_result"]["task_progress"] == 0
    assert mj.fetch_view(task("midjourney", "imagine", "pending"))["process_time"] == 0.0


def test_a_describe_result_and_a_failure() -> None:
    described = mj.fetch_view(task("midjourney", "describe", "completed", output={"description": "1️⃣ a cat"}))
    assert described["task_result"]["description"] == "1️⃣ a cat" and described["task_result"]["image_url"] == ""
    error = {"code": 10000, "raw_message": "CUDA out of memory", "message": "the backend failed", "detail": None}
    failed = mj.fetch_view(task("midjourney", "imagine", "failed", error=error))
    assert failed["task_result"]["error_messages"] == ["the backend failed", "CUDA out of memory"]


# --- Dream Machine -----------------------------------------------------------------------------------------------


def test_luma_frames_become_key_frames_and_extend_names_its_origin() -> None:
    plain = luma.to_create(luma.LumaVideoRequest(prompt="a cat"))
    assert (plain.task_type, plain.input) == ("video_generation", {"prompt": "a cat"})
    framed = luma.to_create(luma.LumaVideoRequest(prompt="a cat", image_url="a.png", image_end_url="b.png", loop=True))
    assert framed.input["key_frames"] == {
        "frame0": {"type": "image", "url": "a.png"},
        "frame1": {"type": "image", "url": "b.png"},
    }
    extend = luma.to_extend("o1", luma.LumaExtendRequest(prompt="more", expand_prompt=False))
    assert extend.task_type == "extend_video"
    assert extend.input == {
        "prompt": "more",
        "expand_prompt": False,
        "origin_task_id": "o1",
        "key_frames": {"frame0": {"type": "generation", "id": "o1"}},
    }


def test_a_luma_fetch_shows_the_generation() -> None:
    output = {"video": {"url": "http://s/v.mp4", "width": 8, "height": 8}, "thumbnail": {"url": "http://s/t.png"}}
    view = luma.fetch_view(task("luma", "video_generation", "completed", output=output))
    assert view["status"] == view["generation"]["state"] == "completed"
    assert view["generation"]["video"] == "http://s/v.mp4" and view["generation"]["thumbnail"] == "http://s/t.png"
    assert view["generation"]["last_frame"] is None and json.loads(view["input"]) == {"prompt": "a cat"}
    assert view["metadata"] == {
        "created_at": CREATED,
        "started_at": STARTED,
        "ended_at": ENDED,
        "quota_frozen": 450000,
        "quota_usage": 450000,
    }
    assert luma.fetch_view(task("luma", "video_generation", "staged"))["status"] == "pending"


# --- Kling -------------------------------------------------------------------------------------------------------


def test_kling_renames_creativity_professional_mode_tail_image_and_camera() -> None:
    body = kling.KlingVideoRequest(
        prompt="egrets",
        creativity=0.2,
        professional_mode=False,
        image_url="a.png",
        tail_image_url="b.png",
        camera=kling.Camera(type="simple", zoom=5),
    )
    fields = kling.to_create(body).input
    assert fields["cfg_scale"] == 0.2 and fields["mode"] == "std" and fields["image_tail_url"] == "b.png"
    assert fields["camera_control"] == {
        "type": "simple",
        "config": {"horizontal": 0.0, "vertical": 0.0, "pan": 0.0, "tilt": 0.0, "roll": 0.0, "zoom": 5.0},
    }
    assert "camera_control" not in kling.to_create(kling.KlingVideoRequest(prompt="x", camera=kling.Camera())).input
    master = kling.to_create(kling.KlingVideoRequest(prompt="x", camera=kling.Camera(type="down_back"))).input
    assert master["camera_control"]["type"] == "down_back"
    assert "mode" not in kling.to_create(kling.KlingVideoRequest(prompt="x")).input  # the unified default applies


@pytest.mark.parametrize(
    ("status", "legacy", "code"),
    [
        ("pending", "pending", 5),
        ("processing", "processing", 10),
        ("completed", "completed", 99),
        ("failed", "failed", 50),
    ],
)
def test_kling_statuses_and_works(status: str, legacy: str, code: int) -> None:
    works = [{"video": {"resource": "http://s/v.mp4"}}]
    output = {"type": "m2v_txt2video", "status": 99, "works": works} if status == "completed" else None
    view = kling.fetch_view(task("kling", "video_generation", status, output=output))
    assert (view["status"], view["task"]["status"]) == (legacy, code)
    assert view["works"] == (works if status == "completed" else [])


def test_a_kling_extend_names_its_origin_and_renames_creativity() -> None:
    extend = kling.to_extend("o1", kling.KlingExtendRequest(prompt="more", creativity=0.6))
    assert (extend.model, extend.task_type) == ("kling", "extend_video")
    assert extend.input == {"prompt": "more", "cfg_scale": 0.6, "origin_task_id": "o1"}
