"""The legacy Dream Machine (`/api/luma/v1/video`) and Kling (`/api/kling/v1/video`) APIs through HTTP, on a double
serving the unified `luma` and `kling` entries: creates answer `{code, data: {task_id}, message}` and make the
unified task with the legacy fields renamed; fetches map each status and the output onto the legacy objects."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.integration.legacy_support import Legacy, legacy_server


@pytest.fixture
def legacy(tmp_path: Path) -> Iterator[Legacy]:
    yield from legacy_server(tmp_path)


def create(legacy: Legacy, path: str, body: dict[str, Any]) -> str:
    answer = legacy.http.post(path, json=body, headers=legacy.headers())
    assert answer.status_code == 200, answer.text
    envelope = answer.json()
    assert envelope["code"] == 200 and envelope["message"] == "success" and set(envelope["data"]) == {"task_id"}
    task_id: str = envelope["data"]["task_id"]
    return task_id


def get(legacy: Legacy, path: str, key: str | None = None) -> dict[str, Any]:
    answer = legacy.http.get(path, headers=legacy.headers(key))
    assert answer.status_code == 200, answer.text
    data: dict[str, Any] = answer.json()["data"]
    return data


def test_luma_video_and_extend_follow_the_unified_tasks(legacy: Legacy) -> None:
    body = {"prompt": "a flying cat", "expand_prompt": False, "image_url": "https://e.x/cat.png", "loop": True}
    task_id = create(legacy, "/api/luma/v1/video", {**body, "webhook_endpoint": "https://hooks.example/l"})
    unified = legacy.unified(task_id)
    assert (unified["model"], unified["task_type"]) == ("luma", "video_generation")
    assert unified["input"]["key_frames"]["frame0"] == {"type": "image", "url": "https://e.x/cat.png", "id": ""}
    assert (
        unified["input"]["loop"] is True
        and unified["config"]["webhook_config"]["endpoint"] == "https://hooks.example/l"
    )
    assert unified["meta"]["usage"]["frozen"] == 2_000_000

    pending = get(legacy, f"/api/luma/v1/video/{task_id}")
    assert pending["status"] == pending["generation"]["state"] == "pending" and pending["generation"]["video"] is None
    assert json.loads(pending["input"])["prompt"] == "a flying cat"
    assert (
        pending["metadata"]["quota_frozen"] == 2_000_000 and pending["metadata"]["ended_at"] == "0001-01-01T00:00:00Z"
    )
    with legacy.processing(task_id):
        assert get(legacy, f"/api/luma/v1/video/{task_id}")["status"] == "processing"
    done = get(legacy, f"/api/luma/v1/video/{task_id}")
    output = legacy.unified(task_id)["output"]
    assert done["status"] == "completed" and done["generation"]["video"] == output["video"]["url"]
    assert (
        done["generation"]["thumbnail"] == output["thumbnail"]["url"] and done["metadata"]["quota_usage"] == 2_000_000
    )

    extend = {"prompt": "the cat lands", "image_end_url": "https://e.x/end.png"}
    extended = create(legacy, f"/api/luma/v1/video/{task_id}/extend", extend)
    unified = legacy.unified(extended)
    assert (unified["task_type"], unified["input"]["origin_task_id"]) == ("extend_video", task_id)
    assert unified["input"]["key_frames"]["frame0"]["id"] == task_id
    assert unified["input"]["key_frames"]["frame1"]["url"] == "https://e.x/end.png"
    assert get(legacy, f"/api/luma/v1/video/{extended}")["status"] == "pending"


def test_kling_video_renames_its_fields_and_fetch_answers_the_works(legacy: Legacy) -> None:
    body = {
        "prompt": "white egrets over paddy fields",
        "negative_prompt": "",
        "creativity": 0.3,
        "duration": 10,
        "aspect_ratio": "1:1",
        "professional_mode": True,
        "camera": {"type": "simple", "horizontal": 0, "vertical": 0, "zoom": 0, "tilt": 0, "pan": -5, "roll": 0},
    }
    task_id = create(legacy, "/api/kling/v1/video", body)
    unified = legacy.unified(task_id)
    assert (unified["model"], unified["task_type"]) == ("kling", "video_generation")
    fields = unified["input"]
    assert (fields["cfg_scale"], fields["mode"], fields["duration"]) == (0.3, "pro", 10)
    assert fields["camera_control"]["type"] == "simple" and fields["camera_control"]["config"]["pan"] == -5
    assert unified["meta"]["usage"]["frozen"] == 2 * 4_600_000  # 10 s of Kling 1.6 pro, as the unified create prices it

    pending = get(legacy, f"/api/kling/v1/video/{task_id}")
    assert pending["status"] == "pending" and pending["task"]["status"] == 5 and pending["works"] == []
    with legacy.processing(task_id):
        running = get(legacy, f"/api/kling/v1/video/{task_id}")
        assert running["status"] == "processing" and running["task"]["status"] == 10
    done = get(legacy, f"/api/kling/v1/video/{task_id}")
    assert done["status"] == "completed" and done["task"]["status"] == 99
    assert done["works"] == legacy.unified(task_id)["output"]["works"]
    assert legacy.http.get(done["works"][0]["video"]["resource"]).status_code == 200

    extended = create(legacy, f"/api/kling/v1/video/{task_id}/extend", {"prompt": "they land", "creativity": 0.7})
    unified = legacy.unified(extended)
    assert (unified["task_type"], unified["input"]["origin_task_id"], unified["input"]["cfg_scale"]) == (
        "extend_video",
        task_id,
        0.7,
    )
    assert get(legacy, f"/api/kling/v1/video/{extended}")["status"] == "pending"

    still = create(legacy, "/api/kling/v1/video", {"prompt": "a still lake", "camera": {"type": "simple"}})
    assert "camera_control" not in {k for k, v in legacy.unified(still)["input"].items() if v is not None}


def test_failures_read_as_failed(legacy: Legacy) -> None:
    kling_id = create(legacy, "/api/kling/v1/video", {"prompt": "please fail"})
    legacy.run_worker()
    assert get(legacy, f"/api/kling/v1/video/{kling_id}")["task"]["status"] == 50
    luma_id = create(legacy, "/api/luma/v1/video", {"prompt": "please fail"})
    legacy.run_worker()
    failed = get(legacy, f"/api/luma/v1/video/{luma_id}")
    assert failed["status"] == failed["generation"]["state"] == "failed"
    assert legacy.unified(luma_id)["meta"]["usage"]["consume"] == 0


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/api/kling/v1/video", {"prompt": "x", "creativity": 2}, "creativity"),
        ("/api/kling/v1/video", {"prompt": "x", "duration": 7}, "duration"),
        ("/api/kling/v1/video", {"prompt": "x", "tail_image_url": "https://e.x/a.png"}, "tail_image_url"),
        ("/api/kling/v1/video", {"prompt": "x", "camera": {"type": "simple", "pan": 5, "zoom": 5}}, "camera"),
        ("/api/kling/v1/video", {"prompt": "x", "camera": {"pan": 50}}, "camera.pan"),
        ("/api/luma/v1/video", {"expand_prompt": True}, "prompt"),
        ("/api/luma/v1/video", {"prompt": "x", "image_url": "ftp://e.x/a.png"}, "image_url"),
        ("/api/luma/v1/video", {"prompt": "x", "aspect_ratio": "5:4"}, "aspect_ratio"),
    ],
)
def test_bad_bodies_are_refused_naming_the_legacy_field_with_no_credit_moved(
    legacy: Legacy, path: str, body: dict[str, Any], field: str
) -> None:
    envelope = legacy.refusal(path, body)
    assert envelope["code"] == 400 and envelope["data"] is None and field in envelope["message"], envelope
    assert "input." not in envelope["message"]


def test_other_accounts_and_other_families_are_not_found(legacy: Legacy) -> None:
    luma_id = create(legacy, "/api/luma/v1/video", {"prompt": "a cat"})
    kling_id = create(legacy, "/api/kling/v1/video", {"prompt": "a cat"})
    for path in (f"/api/luma/v1/video/{luma_id}", f"/api/kling/v1/video/{kling_id}"):
        answer = legacy.http.get(path, headers=legacy.headers(legacy.other_key))
        assert answer.status_code == 404 and answer.json()["code"] == 404
    assert legacy.http.get(f"/api/kling/v1/video/{luma_id}", headers=legacy.headers()).status_code == 404
    foreign_extend = legacy.http.post(
        f"/api/luma/v1/video/{luma_id}/extend", json={"prompt": "x"}, headers=legacy.headers(legacy.other_key)
    )
    assert foreign_extend.status_code == 404 and foreign_extend.json()["code"] == 404
    kling_extend = legacy.http.post(f"/api/kling/v1/video/{luma_id}/extend", json={}, headers=legacy.headers())
    assert kling_extend.status_code == 404  # a Luma task is no Kling video to extend
    poor = legacy.http.post("/api/kling/v1/video", json={"prompt": "x"}, headers=legacy.headers(legacy.poor_key))
    assert poor.status_code == 402


def test_extending_a_video_that_has_not_finished_is_refused_naming_the_path_task(legacy: Legacy) -> None:
    before = legacy.credits()
    luma_id = create(legacy, "/api/luma/v1/video", {"prompt": "a cat"})
    kling_id = create(legacy, "/api/kling/v1/video", {"prompt": "a cat"})
    for path, origin in (
        (f"/api/luma/v1/video/{luma_id}/extend", luma_id),
        (f"/api/kling/v1/video/{kling_id}/extend", kling_id),
    ):
        answer = legacy.http.post(path, json={"prompt": "more"}, headers=legacy.headers())
        assert answer.status_code == 400, answer.text
        assert answer.json()["message"].startswith(f"task_id: task {origin} is pending")
    frozen = legacy.unified(luma_id)["meta"]["usage"]["frozen"] + legacy.unified(kling_id)["meta"]["usage"]["frozen"]
    assert legacy.credits()["available_credits"] == before["available_credits"] - frozen  # the extends froze nothing
