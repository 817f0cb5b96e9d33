"""The dashboard in a real headless Chromium against a real genmill on 127.0.0.1: sign in, run an upscale from
the playground with an uploaded photo and watch it live, play a TTS output."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image
from tests.browser.dashboard import LiveServer, shot, sign_in

pytestmark = pytest.mark.browser

UPSCALE_LABEL = "Qubico/image-toolkit · upscale"


@pytest.fixture
def photo(tmp_path: Path) -> Path:
    """Chelsea the cat (451x300), a real photo from scikit-image's sample data."""
    sample_images = pytest.importorskip("skimage.data")
    path = tmp_path / "chelsea.png"
    Image.fromarray(sample_images.chelsea()).save(path)
    return path


def api(server: LiveServer, method: str, path: str, headers: dict[str, str] | None = None, **kwargs: Any) -> Any:
    headers = {"X-API-Key": server.key, **(headers or {})}
    response = httpx.request(method, f"{server.url}{path}", headers=headers, timeout=60, **kwargs)
    assert response.status_code == 200, response.text
    return response.json()["data"]


def test_sign_in_upscale_an_uploaded_photo_and_watch_it_reach_the_gallery(
    page: Any, server: LiveServer, photo: Path, artifacts: Path
) -> None:
    sign_in(page, server.url, server.key)
    shot(page, artifacts, "01-tasks-after-sign-in")
    page.click("nav a[href='#/playground']")
    page.select_option("#entry-select", label=UPSCALE_LABEL)
    page.set_input_files("#upload-image", str(photo))
    page.wait_for_selector("#upload-status-image[data-uploaded=true]")
    uploaded = page.input_value("#field-image")
    assert "/files/" in uploaded
    page.fill("#field-scale", "2")
    page.wait_for_selector("#price[data-credits]")
    quoted = api(
        server,
        "POST",
        "/api/v1/price",
        json={"model": "Qubico/image-toolkit", "task_type": "upscale", "input": {"image": uploaded, "scale": 2}},
    )
    assert page.get_attribute("#price", "data-credits") == str(quoted["price_credits"])
    shot(page, artifacts, "02-playground-upscale")

    server.upscaler.gate.clear()  # hold the task in processing: the page must show it live
    try:
        page.click("#run-task")
        page.wait_for_selector("#task-detail [data-status=processing]")
        assert page.is_visible("#task-detail progress.task-progress")
        shot(page, artifacts, "03-task-processing")
    finally:
        server.upscaler.gate.set()
    # The same page, never reloaded, follows the task's event stream to its end.
    page.wait_for_selector("#task-detail [data-status=completed]")
    image = page.wait_for_selector("#task-detail img.output-image")
    page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=image)
    assert image.evaluate("img => [img.naturalWidth, img.naturalHeight]") == [451 * 2, 300 * 2]
    assert "resizing 451x300 by 2" in page.inner_text("#task-logs")
    task_id = page.url.rsplit("/", 1)[-1]
    task = api(server, "GET", f"/api/v1/task/{task_id}")
    assert page.inner_text("#task-cost") == f"{task['meta']['usage']['consume']:,} credits"
    assert task["meta"]["usage"]["consume"] == quoted["price_credits"]
    shot(page, artifacts, "04-task-completed")

    page.click("a[href='#/tasks']")
    card = page.wait_for_selector(f"[data-task-id='{task_id}']")
    listed = card.wait_for_selector("img.output-image")
    page.wait_for_function("img => img.complete && img.naturalWidth === 902", arg=listed)
    shot(page, artifacts, "05-gallery")


def test_the_task_list_filters_by_status(page: Any, server: LiveServer, photo: Path, artifacts: Path) -> None:
    done = api(
        server,
        "POST",
        "/api/v1/task",
        headers={"Prefer": "wait=30"},
        json={"model": "Qubico/image-toolkit", "task_type": "upscale", "input": {"image": server.url + "/nowhere.png"}},
    )
    assert done["status"] == "failed", done
    sign_in(page, server.url, server.key)
    page.select_option("#filter-status", "failed")
    page.click("#task-filters button[type=submit]")
    page.wait_for_selector(f"[data-task-id='{done['task_id']}']")
    # The list may be drawn again by a live update: read it once it is drawn, in the page, in one step.
    statuses = page.wait_for_function(
        """() => {
            const cards = [...document.querySelectorAll('#task-list .task-card')];
            return cards.length ? cards.map(c => c.dataset.status) : null;
        }"""
    ).json_value()
    assert statuses and set(statuses) == {"failed"}
    shot(page, artifacts, "06-filtered-failed")


def test_a_tts_output_plays_in_the_audio_player(page: Any, server: LiveServer, artifacts: Path) -> None:
    if not any(s.name == "piper-tts" and s.available for s in server.runtime.backends.statuses):
        pytest.skip("Piper TTS is not installed (the cpu extra)")
    task = api(
        server,
        "POST",
        "/api/v1/task",
        headers={"Prefer": "wait=60"},
        json={
            "model": "Qubico/tts",
            "task_type": "zero-shot",
            "input": {"gen_text": "Hello from the genmill dashboard."},
        },
    )
    assert task["status"] == "completed", task
    sign_in(page, server.url, server.key)
    page.goto(f"{server.url}/dashboard/#/task/{task['task_id']}")
    audio = page.wait_for_selector("#task-detail audio.output-audio")
    page.wait_for_function("a => a.readyState >= 1 && a.duration > 0", arg=audio)
    assert audio.evaluate("a => a.play().then(() => 'playing', e => e.name)") == "playing"
    page.wait_for_function("a => a.currentTime > 0", arg=audio)
    assert audio.evaluate("a => a.duration") > 1.0
    shot(page, artifacts, "07-tts-audio")


def test_a_glb_output_is_shown_in_the_3d_viewer(page: Any, server: LiveServer, artifacts: Path) -> None:
    task = api(
        server,
        "POST",
        "/api/v1/task",
        headers={"Prefer": "wait=30"},
        json={"model": "Qubico/trellis", "task_type": "text-to-3d", "input": {"prompt": "a tetrahedron"}},
    )
    assert task["status"] == "completed", task
    sign_in(page, server.url, server.key)
    page.goto(f"{server.url}/dashboard/#/task/{task['task_id']}")
    viewer = page.wait_for_selector("#task-detail model-viewer.output-model")
    page.wait_for_function("v => v.loaded === true", arg=viewer)  # the vendored viewer fetched and parsed the GLB
    assert viewer.get_attribute("src") == task["output"]["model_file"]
    shot(page, artifacts, "08-glb-viewer")


def test_the_credits_page_shows_the_balance_and_a_usage_chart(page: Any, server: LiveServer, artifacts: Path) -> None:
    task = api(
        server,
        "POST",
        "/api/v1/task",
        headers={"Prefer": "wait=30"},
        json={"model": "Qubico/trellis", "task_type": "text-to-3d", "input": {"prompt": "for the chart"}},
    )
    assert task["status"] == "completed", task
    sign_in(page, server.url, server.key)
    page.click("nav a[href='#/credits']")
    page.wait_for_selector("#usage-chart")
    pack = api(server, "GET", "/account/info")["credit_pack_info"]
    assert page.inner_text("#credits-available") == f"{pack['available_credits']:,} credits"
    assert page.inner_text("#credits-used") == f"{pack['used_credits']:,} credits"
    drawn = page.eval_on_selector_all("#usage-chart rect.bar", "bars => bars.map(b => Number(b.dataset.value))")
    assert sum(drawn) == pack["used_credits"]  # every completed task's consumed credits, in one bar or another
    shot(page, artifacts, "09-credits")
