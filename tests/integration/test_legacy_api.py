"""PiAPI's legacy endpoints through HTTP: each create answers its legacy shape and makes the unified task (visible
and metered through `/api/v1/task`), each fetch maps the unified statuses and results onto the legacy shape, other
accounts' tasks are not found, and bad bodies are refused naming the field with no credit moved.

Face swaps run end to end with the real MediaPipe backend on a real photograph (matplotlib's portrait, as in
tests/backends/test_faces.py); the other legacy families run on an in-process test backend serving their unified
entries, so that nothing here needs a GPU model.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image
from tests.backends.memory import image_ref
from tests.backends.test_faces import portrait, striped
from tests.backends.test_video_toolkit import make_from_image
from tests.integration.legacy_support import Legacy, legacy_server


@pytest.fixture
def legacy(tmp_path: Path) -> Iterator[Legacy]:
    for server in legacy_server(tmp_path):
        if not server.face_swap:
            pytest.skip("the MediaPipe face swap backends are unavailable here")
        yield server


def swap_pair() -> dict[str, str]:
    return {"target_image": image_ref(portrait(), "JPEG"), "swap_image": image_ref(striped())}


def decoded(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


# --- face swap ------------------------------------------------------------------------------------------------


def test_face_swap_runs_end_to_end_and_answers_base64_by_default(legacy: Legacy) -> None:
    created = legacy.http.post("/api/face_swap/v1/async", json=swap_pair(), headers=legacy.headers())
    assert created.status_code == 200, created.text
    body = created.json()
    assert body["code"] == 200 and body["message"] == "success" and set(body["data"]) == {"task_id"}
    task_id = body["data"]["task_id"]

    unified = legacy.unified(task_id)
    assert (unified["model"], unified["task_type"], unified["status"]) == (
        "Qubico/image-toolkit",
        "face-swap",
        "pending",
    )
    assert unified["input"]["result_type"] == "base64" and "/files/uploads/" in unified["input"]["swap_image"]
    assert unified["meta"]["usage"]["frozen"] > 0

    pending = legacy.http.post("/api/face_swap/v1/fetch", json={"task_id": task_id}, headers=legacy.headers()).json()
    assert pending["data"] == {"task_id": task_id, "status": "pending", "image": "", "error_messages": []}

    with legacy.processing(task_id):
        running = legacy.http.post("/api/face_swap/v1/fetch", json={"task_id": task_id}, headers=legacy.headers())
        assert running.json()["data"] == {"task_id": task_id, "status": "processing", "image": "", "error_messages": []}
    done = legacy.http.post("/api/face_swap/v1/fetch", json={"task_id": task_id}, headers=legacy.headers()).json()
    assert done["code"] == 200 and done["data"]["status"] == "success" and done["data"]["error_messages"] == []
    swapped = decoded(base64.b64decode(done["data"]["image"], validate=True))
    assert swapped.size == portrait().size
    completed = legacy.unified(task_id)
    assert (
        completed["status"] == "completed"
        and completed["meta"]["usage"]["consume"] == unified["meta"]["usage"]["frozen"]
    )
    stored = legacy.http.get(completed["output"]["image_url"])
    assert stored.content == base64.b64decode(done["data"]["image"])  # the inline image is the stored output


def test_face_swap_result_type_url_answers_the_output_url(legacy: Legacy) -> None:
    body = {**swap_pair(), "result_type": "url"}
    task_id = legacy.http.post("/api/face_swap/v1/async", json=body, headers=legacy.headers()).json()["data"]["task_id"]
    legacy.run_worker()
    done = legacy.http.post("/api/face_swap/v1/fetch", json={"task_id": task_id}, headers=legacy.headers()).json()
    assert done["data"]["status"] == "success"
    assert done["data"]["image"] == legacy.unified(task_id)["output"]["image_url"]
    assert decoded(legacy.http.get(done["data"]["image"]).content).size == portrait().size


def test_multi_face_swap_creates_its_unified_entry(legacy: Legacy) -> None:
    multi = {**swap_pair(), "swap_faces_index": "0", "target_faces_index": "0", "webhook_endpoint": "https://e.x/h"}
    task_id = legacy.http.post("/api/face_swap/v1/async", json=multi, headers=legacy.headers()).json()["data"][
        "task_id"
    ]
    unified = legacy.unified(task_id)
    assert unified["task_type"] == "multi-face-swap" and unified["input"]["target_faces_index"] == "0"
    assert unified["config"]["webhook_config"] == {"endpoint": "https://e.x/h", "secret": ""}
    legacy.run_worker()
    done = legacy.http.post("/api/face_swap/v1/fetch", json={"task_id": task_id}, headers=legacy.headers()).json()
    assert (
        done["data"]["status"] == "success" and decoded(base64.b64decode(done["data"]["image"])).size == portrait().size
    )


def test_video_face_swap_runs_end_to_end_and_answers_the_video_url(legacy: Legacy, tmp_path: Path) -> None:
    clip = make_from_image(tmp_path, portrait())
    body = {
        "swap_image": image_ref(striped()),
        "target_video": "data:video/mp4;base64," + base64.b64encode(clip).decode(),
    }
    created = legacy.http.post("/api/face_swap/v1/async", json=body, headers=legacy.headers())
    assert created.status_code == 200, created.text
    task_id = created.json()["data"]["task_id"]
    unified = legacy.unified(task_id)
    assert (unified["model"], unified["task_type"]) == ("Qubico/video-toolkit", "face-swap")
    assert "result_type" not in unified["input"]  # a video is always answered by URL
    legacy.run_worker()
    done = legacy.http.post("/api/face_swap/v1/fetch", json={"task_id": task_id}, headers=legacy.headers()).json()
    video_url = legacy.unified(task_id)["output"]["video_url"]
    assert done["data"] == {
        "task_id": task_id,
        "status": "success",
        "image": "",
        "video": video_url,
        "error_messages": [],
    }
    assert legacy.http.get(video_url).content[4:8] == b"ftyp"


def test_face_swap_failure_and_cancellation_read_as_failed(legacy: Legacy) -> None:
    plain = Image.new("RGB", (120, 120), (40, 90, 160))
    body = {"target_image": image_ref(plain), "swap_image": image_ref(striped())}
    task_id = legacy.http.post("/api/face_swap/v1/async", json=body, headers=legacy.headers()).json()["data"]["task_id"]
    legacy.run_worker()
    failed = legacy.http.post("/api/face_swap/v1/fetch", json={"task_id": task_id}, headers=legacy.headers()).json()
    assert failed["data"]["status"] == "failed" and failed["data"]["image"] == ""
    assert any("face" in message for message in failed["data"]["error_messages"])

    task_id = legacy.http.post("/api/face_swap/v1/async", json=swap_pair(), headers=legacy.headers()).json()["data"][
        "task_id"
    ]
    assert legacy.http.delete(f"/api/v1/task/{task_id}", headers=legacy.headers()).status_code == 200
    cancelled = legacy.http.post("/api/face_swap/v1/fetch", json={"task_id": task_id}, headers=legacy.headers()).json()
    assert cancelled["data"]["status"] == "failed" and "the task was cancelled" in cancelled["data"]["error_messages"]


def test_face_swap_bad_bodies_name_the_field_and_move_no_credit(legacy: Legacy) -> None:
    cases = [
        ({"swap_image": image_ref(striped())}, "target_image"),
        ({**swap_pair(), "result_type": "png"}, "result_type"),
        ({"target_image": "not an image", "swap_image": image_ref(striped())}, "target_image"),
        ({**swap_pair(), "swap_faces_index": "0,1", "target_faces_index": "0"}, "swap_faces_index"),
        ({**swap_pair(), "target_video": "https://example.com/a.mp4"}, "target_image"),
        ({"target_image": image_ref(portrait())}, "swap_image"),
    ]
    for body, field in cases:
        envelope = legacy.refusal("/api/face_swap/v1/async", body)
        assert envelope["code"] == 400 and envelope["data"] is None and field in envelope["message"], envelope
        assert "input." not in envelope["message"]
    poor = legacy.http.post("/api/face_swap/v1/async", json=swap_pair(), headers=legacy.headers(legacy.poor_key))
    assert poor.status_code == 402 and poor.json()["code"] == 402
    unauthorised = legacy.http.post("/api/face_swap/v1/async", json=swap_pair(), headers={"X-API-KEY": "wrong"})
    assert unauthorised.status_code == 401


def test_face_swap_fetch_finds_only_the_accounts_own_face_swaps(legacy: Legacy) -> None:
    task_id = legacy.http.post("/api/face_swap/v1/async", json=swap_pair(), headers=legacy.headers()).json()["data"][
        "task_id"
    ]
    foreign = legacy.http.post(
        "/api/face_swap/v1/fetch", json={"task_id": task_id}, headers=legacy.headers(legacy.other_key)
    )
    assert foreign.status_code == 404 and foreign.json()["code"] == 404
    missing = legacy.http.post("/api/face_swap/v1/fetch", json={}, headers=legacy.headers())
    assert missing.status_code == 400 and "task_id" in missing.json()["message"]
    failing = {
        "model": "Qubico/image-toolkit",
        "task_type": "background-remove",
        "input": {"image": image_ref(striped())},
    }
    other_family = legacy.http.post("/api/v1/task", json=failing, headers=legacy.headers()).json()["data"]["task_id"]
    answer = legacy.http.post("/api/face_swap/v1/fetch", json={"task_id": other_family}, headers=legacy.headers())
    assert answer.status_code == 404
