"""The legacy Midjourney API (`/mj/v2/*`) through HTTP, on a double that serves the unified `midjourney` entries:
each create answers GoAPI's `{task_id, status, message}` and makes the unified task; fetch maps every unified
status and result onto GoAPI's task object; errors read as GoAPI's failed answers, naming the field."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.integration.legacy_support import Legacy, legacy_server


@pytest.fixture
def legacy(tmp_path: Path) -> Iterator[Legacy]:
    yield from legacy_server(tmp_path)


def imagine(legacy: Legacy, prompt: str = "a red fox", **fields: Any) -> str:
    answer = legacy.http.post("/mj/v2/imagine", json={"prompt": prompt, **fields}, headers=legacy.headers())
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["status"] == "success" and body["message"] == "" and set(body) == {"task_id", "status", "message"}
    task_id: str = body["task_id"]
    return task_id


def fetch(legacy: Legacy, task_id: str, key: str | None = None) -> dict[str, Any]:
    answer = legacy.http.post("/mj/v2/fetch", json={"task_id": task_id}, headers=legacy.headers(key))
    assert answer.status_code == 200, answer.text
    task: dict[str, Any] = answer.json()
    return task


def test_imagine_makes_the_unified_task_and_fetch_follows_it_to_finished(legacy: Legacy) -> None:
    hook = {"webhook_endpoint": "https://hooks.example/mj", "webhook_secret": "s3"}
    task_id = imagine(legacy, aspect_ratio="16:9", process_mode="relax", **hook)
    unified = legacy.unified(task_id)
    assert (unified["model"], unified["task_type"], unified["status"]) == ("midjourney", "imagine", "pending")
    assert unified["input"]["prompt"] == "a red fox" and unified["input"]["aspect_ratio"] == "16:9"
    assert unified["config"]["webhook_config"] == {"endpoint": "https://hooks.example/mj", "secret": "s3"}
    frozen = unified["meta"]["usage"]["frozen"]
    assert frozen == 150_000  # relax mode, metered as the unified create is

    pending = fetch(legacy, task_id)
    assert pending["status"] == "pending" and pending["task_id"] == task_id
    assert pending["meta"]["task_type"] == "imagine" and pending["meta"]["process_mode"] == "relax"
    assert pending["meta"]["quota_frozen"] == frozen and pending["task_result"]["image_url"] == ""

    with legacy.processing(task_id):
        running = fetch(legacy, task_id)
        assert running["status"] == "processing" and running["task_result"]["task_progress"] == 40
        assert running["meta"]["started_at"] > 0

    done = fetch(legacy, task_id)
    output = legacy.unified(task_id)["output"]
    result = done["task_result"]
    assert done["status"] == "finished" and result["task_progress"] == 100 and done["process_time"] >= 0
    assert result["image_url"] == output["image_url"] == result["discord_image_url"]
    assert result["image_urls"] == result["temporary_image_urls"] == output["temporary_image_urls"]
    assert result["actions"] == output["actions"] and result["error_messages"] == []
    assert result["quota_used"] == frozen == legacy.unified(task_id)["meta"]["usage"]["consume"]
    assert legacy.http.get(result["image_url"]).status_code == 200


def test_follow_ups_map_their_fields_onto_the_unified_inputs(legacy: Legacy) -> None:
    origin = imagine(legacy)
    legacy.run_worker()
    upscaled = legacy.http.post("/mj/v2/upscale", json={"origin_task_id": origin, "index": 2}, headers=legacy.headers())
    assert upscaled.status_code == 200, upscaled.text
    upscale_id = upscaled.json()["task_id"]
    assert legacy.unified(upscale_id)["input"] == {"origin_task_id": origin, "index": "2", "process_mode": "fast"}
    legacy.run_worker()
    done = fetch(legacy, upscale_id)
    assert done["status"] == "finished" and done["meta"]["origin_task_id"] == origin

    seed_id = legacy.http.post("/mj/v2/seed", json={"task_id": origin}, headers=legacy.headers()).json()["task_id"]
    assert legacy.unified(seed_id)["input"]["origin_task_id"] == origin
    legacy.run_worker()
    assert fetch(legacy, seed_id)["task_result"]["seed"] == "1234567"

    describe = {"image_url": fetch(legacy, upscale_id)["task_result"]["image_url"], "process_mode": "relax"}
    describe_id = legacy.http.post("/mj/v2/describe", json=describe, headers=legacy.headers()).json()["task_id"]
    legacy.run_worker()
    assert fetch(legacy, describe_id)["task_result"]["description"].startswith("1️⃣ a red fox")


def test_a_failed_task_reads_failed_with_its_messages(legacy: Legacy) -> None:
    task_id = imagine(legacy, "please fail")
    legacy.run_worker()
    failed = fetch(legacy, task_id)
    assert failed["status"] == "failed" and failed["task_result"]["image_url"] == ""
    assert "moderation: flagged" in failed["task_result"]["error_messages"]
    assert legacy.unified(task_id)["meta"]["usage"]["consume"] == 0


def test_cancel_multi_fetch_and_other_accounts(legacy: Legacy) -> None:
    first, second = imagine(legacy), imagine(legacy, "a blue fox")
    cancelled = legacy.http.post("/mj/v2/cancel", json={"task_id": second}, headers=legacy.headers())
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "success"
    assert legacy.unified(second)["status"] == "cancelled"
    assert fetch(legacy, second)["status"] == "failed"
    again = legacy.http.post("/mj/v2/cancel", json={"task_id": second}, headers=legacy.headers())
    assert again.status_code == 400 and again.json()["status"] == "failed"

    theirs = legacy.http.post("/mj/v2/imagine", json={"prompt": "x"}, headers=legacy.headers(legacy.other_key)).json()
    asked = {"task_ids": [second, theirs["task_id"], "no-such-task", first]}
    many = legacy.http.post("/mj/v2/multi_fetch", json=asked, headers=legacy.headers())
    assert many.status_code == 200 and [task["task_id"] for task in many.json()] == [second, first]

    foreign = legacy.http.post("/mj/v2/fetch", json={"task_id": theirs["task_id"]}, headers=legacy.headers())
    assert foreign.status_code == 404 and foreign.json()["status"] == "failed"
    foreign_cancel = legacy.http.post("/mj/v2/cancel", json={"task_id": theirs["task_id"]}, headers=legacy.headers())
    assert (
        foreign_cancel.status_code == 404 and legacy.unified(theirs["task_id"], legacy.other_key)["status"] == "pending"
    )


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/mj/v2/imagine", {}, "prompt"),
        ("/mj/v2/imagine", {"prompt": "x", "aspect_ratio": "wide"}, "aspect_ratio"),
        ("/mj/v2/imagine", {"prompt": "x", "process_mode": "ludicrous"}, "process_mode"),
        ("/mj/v2/upscale", {"origin_task_id": "t", "index": "9"}, "index"),
        ("/mj/v2/blend", {"image_urls": ["https://e.x/a.png"]}, "image_urls"),
        ("/mj/v2/pan", {"origin_task_id": "t", "direction": "sideways"}, "direction"),
        ("/mj/v2/seed", {}, "task_id"),
        ("/mj/v2/fetch", {}, "task_id"),
    ],
)
def test_bad_bodies_are_refused_naming_the_field_with_no_credit_moved(
    legacy: Legacy, path: str, body: dict[str, Any], field: str
) -> None:
    refusal = legacy.refusal(path, body)
    assert refusal["status"] == "failed" and refusal["code"] == 400 and field in refusal["message"], refusal
    assert "input." not in refusal["message"]


def test_keys_and_credits_are_checked_as_for_the_unified_create(legacy: Legacy) -> None:
    wrong = legacy.http.post("/mj/v2/imagine", json={"prompt": "x"}, headers={"X-API-KEY": "nope"})
    assert wrong.status_code == 401 and wrong.json()["status"] == "failed"
    poor = legacy.http.post("/mj/v2/imagine", json={"prompt": "x"}, headers=legacy.headers(legacy.poor_key))
    assert poor.status_code == 402 and poor.json()["status"] == "failed"
    face_swap = {
        "model": "Qubico/image-toolkit",
        "task_type": "background-remove",
        "input": {"image": "https://e.x/a.png"},
    }
    other_family = legacy.http.post("/api/v1/task", json=face_swap, headers=legacy.headers()).json()["data"]["task_id"]
    assert legacy.http.post("/mj/v2/fetch", json={"task_id": other_family}, headers=legacy.headers()).status_code == 404


def test_a_follow_up_on_another_accounts_task_is_refused_like_the_unified_one(legacy: Legacy) -> None:
    theirs = legacy.http.post("/mj/v2/imagine", json={"prompt": "x"}, headers=legacy.headers(legacy.other_key))
    origin = theirs.json()["task_id"]
    refusal = legacy.refusal("/mj/v2/upscale", {"origin_task_id": origin, "index": "1"})
    assert refusal["status"] == "failed"
    assert refusal["message"] == f"origin_task_id: no task {origin} found for this account"
