"""Inline media inputs are stored as uploads at create: the task's input names a /files/ URL, so polls and webhooks
stay small, the output is what the same image sent as an upload's URL gives, and a refused create stores nothing."""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import sqlalchemy as sa
from PIL import Image
from tests.integration.conftest import Api

from genmill.domain.catalog import UPLOAD_RETENTION
from genmill.store.tables import blobs

SMALL = 16 * 1024
"""Every answer and payload that shows the task stays under this, whatever the size of its inline input."""


def noise_png(side: int = 600) -> bytes:
    """A PNG of random pixels, which does not compress: about 1 MB at 600x600."""
    pixels = np.random.default_rng(side).integers(0, 256, (side, side, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def upscale(image: str, **config: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"model": "Qubico/image-toolkit", "task_type": "upscale", "input": {"image": image}}
    return {**body, "config": config} if config else body


def uploads(api: Api) -> list[dict[str, Any]]:
    with api.runtime.store.engine.connect() as conn:
        rows = conn.execute(sa.select(blobs).where(blobs.c.kind == "upload")).all()
    return [dict(row._mapping) for row in rows]


def stored_files(tmp_path: Path) -> list[Path]:
    return [p for p in tmp_path.rglob("*") if p.is_file() and "uploads" in p.parts]


def output_bytes(api: Api, task_id: str) -> bytes:
    task = api.client.get(f"/api/v1/task/{task_id}", headers=api.h()).json()["data"]
    assert task["status"] == "completed", task["error"]
    return api.client.get(task["output"]["image_url"].removeprefix("http://testserver")).content


def test_a_1_mb_base64_image_is_stored_and_the_task_names_its_url(api: Api) -> None:
    png = noise_png()
    assert len(png) > 1_000_000
    inline = "data:image/png;base64," + base64.b64encode(png).decode()
    hook = {"webhook_config": {"endpoint": "http://127.0.0.1:9/hook", "secret": ""}}
    r = api.client.post("/api/v1/task", headers=api.h(), json=upscale(inline, **hook))
    assert r.status_code == 200, r.text
    assert len(r.content) < SMALL
    task = r.json()["data"]
    url = task["input"]["image"]
    prefix = f"http://testserver/files/uploads/{api.account_id}/"
    assert url.startswith(prefix) and url.endswith("-image.png") and task["input"]["scale"] == 2

    file = api.client.get(url.removeprefix("http://testserver"))
    assert file.status_code == 200 and file.content == png and file.headers["content-type"] == "image/png"
    [upload] = uploads(api)
    assert upload["account_id"] == api.account_id and upload["task_id"] is None and upload["size"] == len(png)
    assert upload["expires_at"] - upload["created_at"] == UPLOAD_RETENTION

    poll = api.client.get(f"/api/v1/task/{task['task_id']}", headers=api.h())
    assert len(poll.content) < SMALL and poll.json()["data"]["input"]["image"] == url
    history = api.client.get("/api/open/tasks/histories", headers=api.h())
    assert len(history.content) < SMALL
    [delivery] = api.runtime.store.webhooks.claim_due("test-dispatcher", limit=10)
    assert len(json.dumps(delivery.snapshot)) < SMALL and delivery.snapshot["input"]["image"] == url
    events = api.runtime.store.events.events_after(task["task_id"], 0)
    assert events and all(len(json.dumps(e.snapshot)) < SMALL for e in events)

    assert api.run_worker()
    done = api.client.get(f"/api/v1/task/{task['task_id']}", headers=api.h())
    assert len(done.content) < SMALL
    result = Image.open(io.BytesIO(output_bytes(api, task["task_id"])))
    assert result.size == (1200, 1200)


def test_the_output_is_the_same_as_with_an_uploaded_files_url(api: Api) -> None:
    png = noise_png(64)
    raw = base64.b64encode(png).decode()
    inline_task = api.client.post("/api/v1/task", headers=api.h(), json=upscale(raw)).json()["data"]
    assert inline_task["input"]["image"].startswith("http://testserver/files/uploads/")
    upload = api.client.post(
        "/api/ephemeral_resource", headers=api.h(), json={"file_name": "in.png", "file_data": raw}
    ).json()["data"]["url"]
    url_task = api.client.post("/api/v1/task", headers=api.h(), json=upscale(upload)).json()["data"]
    assert url_task["input"]["image"] == upload
    assert api.run_worker() and api.run_worker()
    assert output_bytes(api, inline_task["task_id"]) == output_bytes(api, url_task["task_id"])


def test_a_refused_create_stores_no_file(api: Api, tmp_path: Path) -> None:
    inline = "data:image/png;base64," + base64.b64encode(noise_png(32)).decode()
    broken = "data:image/png;base64," + base64.b64encode(noise_png(32)).decode()[:-3] + "!!!"
    r = api.client.post("/api/v1/task", headers=api.h(), json=upscale(broken))
    assert r.status_code == 400 and "input.image" in r.json()["message"]

    poor = api.runtime.store.accounts.create_account("poor", credits=5)
    poor_key, _ = api.runtime.store.accounts.create_key(poor.account_id)
    r = api.client.post("/api/v1/task", headers=api.h(poor_key), json=upscale(inline))
    assert r.status_code == 402

    r = api.client.post(
        "/api/v1/task", headers=api.h(), json={**upscale(inline), "input": {"image": inline, "scale": 1}}
    )
    assert r.status_code == 400 and "input.scale" in r.json()["message"]
    assert uploads(api) == [] and stored_files(tmp_path) == []


def test_an_idempotent_replay_stores_the_input_once(api: Api, tmp_path: Path) -> None:
    inline = "data:image/png;base64," + base64.b64encode(noise_png(32)).decode()
    headers = {**api.h(), "Idempotency-Key": "one-upscale"}
    first = api.client.post("/api/v1/task", headers=headers, json=upscale(inline))
    again = api.client.post("/api/v1/task", headers=headers, json=upscale(inline))
    assert again.headers.get("Idempotent-Replayed") == "true"
    assert again.json()["data"]["task_id"] == first.json()["data"]["task_id"]
    assert again.json()["data"]["input"]["image"] == first.json()["data"]["input"]["image"]
    assert len(uploads(api)) == 1 and len(stored_files(tmp_path)) == 1


def test_a_url_input_is_left_as_it_is(api: Api) -> None:
    url = "http://127.0.0.1:9/picture.png"
    task = api.client.post("/api/v1/task", headers=api.h(), json=upscale(url)).json()["data"]
    assert task["input"]["image"] == url and uploads(api) == []
