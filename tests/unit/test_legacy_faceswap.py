"""The legacy face swap mapping, both ways, on plain dicts: which unified entry a body creates, and how each
unified status and result reads in the legacy fetch."""

from __future__ import annotations

from typing import Any

import pytest

from genmill.domain.legacy import legacy_field_message, unix_seconds
from genmill.domain.legacy.faceswap import FaceSwapRequest, fetch_view, to_create, wants_base64


def task(status: str, model: str = "Qubico/image-toolkit", **fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "task_id": "t1",
        "model": model,
        "task_type": "face-swap",
        "status": status,
        "input": {"result_type": "base64"},
        "output": None,
        "error": {"code": 0, "raw_message": "", "message": "", "detail": None},
    }
    return {**base, **fields}


def test_a_target_image_is_a_face_swap_and_face_indexes_make_it_multi() -> None:
    single = to_create(FaceSwapRequest(target_image="t.png", swap_image="s.png"))
    assert (single.model, single.task_type) == ("Qubico/image-toolkit", "face-swap")
    assert single.input == {"target_image": "t.png", "swap_image": "s.png", "result_type": "base64"}
    assert single.config == {"service_mode": "", "webhook_config": {"endpoint": "", "secret": ""}}

    multi = to_create(
        FaceSwapRequest(
            target_image="t.png",
            swap_image="s.png",
            target_faces_index="1,0",
            result_type="url",
            webhook_endpoint="https://h.example/x",
            webhook_secret="s3",
        )
    )
    assert multi.task_type == "multi-face-swap"
    assert multi.input == {
        "target_image": "t.png",
        "swap_image": "s.png",
        "result_type": "url",
        "target_faces_index": "1,0",
    }
    assert multi.config["webhook_config"] == {"endpoint": "https://h.example/x", "secret": "s3"}


def test_a_target_video_is_a_video_face_swap() -> None:
    video = to_create(FaceSwapRequest(swap_image="s.png", target_video="v.mp4", swap_faces_index="0"))
    assert (video.model, video.task_type) == ("Qubico/video-toolkit", "face-swap")
    assert video.input == {"swap_image": "s.png", "target_video": "v.mp4", "swap_faces_index": "0"}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"swap_image": "s"}, "target_image"),
        ({"swap_image": "s", "target_image": "t", "target_video": "v"}, "target_image"),
    ],
)
def test_a_body_with_neither_or_both_targets_is_refused_naming_the_field(body: dict[str, str], field: str) -> None:
    with pytest.raises(ValueError, match=field):
        to_create(FaceSwapRequest.model_validate(body))


@pytest.mark.parametrize(
    ("status", "legacy"),
    [
        ("pending", "pending"),
        ("staged", "pending"),
        ("processing", "processing"),
        ("completed", "success"),
        ("failed", "failed"),
    ],
)
def test_each_unified_status_reads_as_the_legacy_one(status: str, legacy: str) -> None:
    assert fetch_view(task(status))["status"] == legacy


def test_a_completed_image_answers_base64_when_given_else_its_url() -> None:
    done = task("completed", output={"image_url": "http://s/files/o.png"})
    assert fetch_view(done, "aGk=")["image"] == "aGk="
    assert fetch_view(done)["image"] == "http://s/files/o.png"
    assert fetch_view(task("processing", output={"image_url": "http://s/files/o.png"}), "aGk=")["image"] == ""
    assert wants_base64(done) and not wants_base64(task("completed", input={"result_type": "url"}))
    assert wants_base64(task("completed", input={}))  # a task created through the unified API: PiAPI's default
    assert not wants_base64(task("completed", model="Qubico/video-toolkit"))


def test_a_video_face_swap_answers_its_video_url() -> None:
    done = fetch_view(task("completed", model="Qubico/video-toolkit", output={"video_url": "http://s/files/o.mp4"}))
    assert done == {
        "task_id": "t1",
        "status": "success",
        "image": "",
        "video": "http://s/files/o.mp4",
        "error_messages": [],
    }


def test_failures_and_cancellations_carry_their_messages() -> None:
    error = {"code": 10001, "raw_message": "no face in target_image", "message": "bad input", "detail": None}
    assert fetch_view(task("failed", error=error))["error_messages"] == ["bad input", "no face in target_image"]
    cancelled = fetch_view(task("cancelled"))
    assert cancelled["status"] == "failed" and cancelled["error_messages"] == ["the task was cancelled"]


def test_unified_input_errors_read_with_the_legacy_field_names() -> None:
    message = "input.cfg_scale: Input should be less than or equal to 1; input.prompt: Field required"
    renamed = legacy_field_message(message, {"cfg_scale": "creativity"})
    assert renamed == "creativity: Input should be less than or equal to 1; prompt: Field required"
    nested = legacy_field_message("input.key_frames.frame0.url: bad url", {"key_frames.frame0.url": "image_url"})
    assert nested == "image_url: bad url"
    assert legacy_field_message("model: unknown") == "model: unknown"


def test_wire_times_read_as_unix_seconds() -> None:
    assert unix_seconds("0001-01-01T00:00:00Z") == 0
    assert unix_seconds("2025-06-30T07:11:30.719851Z") == 1751267490
