"""Details of PiAPI's wire that public clients rely on: model keys, account names, usage types, cancel answers."""

from __future__ import annotations

import base64
import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from tests.integration.conftest import Api
from tests.support import PillowUpscale, png_bytes

from genmill.app import Runtime, create_app
from genmill.catalog import build_catalog
from genmill.domain.catalog import Catalog
from genmill.domain.model_keys import PIAPI_MODEL_KEYS, model_key
from genmill.domain.records import NewTask
from genmill.settings import Settings

FAMILY_OF_KEY = {
    "diffrhythm": "diffrhythm",
    "flux": "flux",
    "gpts": "gpts",
    "hailuo": "hailuo",
    "hug_video": "hug-video",
    "hunyuan": "hunyuan",
    "image_toolkit": "image-toolkit",
    "kling": "kling",
    "llm": "llm",
    "luma": "luma",
    "mj": "mj",
    "mmaudio": "mmaudio",
    "music-s": "music-s",
    "music-u": "music-u",
    "sd": "sd",
    "skyreels": "skyreels",
    "trellis": "trellis",
    "tts": "tts",
    "video_toolkit": "video-toolkit",
    "wan": "wanx",
}
"""Every PiAPI key, with the family name a task of it has in genmill's catalog (or will, for the resold services)."""


def upscale_body() -> dict[str, Any]:
    data = "data:image/png;base64," + base64.b64encode(png_bytes(12, 8)).decode()
    return {"model": "Qubico/image-toolkit", "task_type": "upscale", "input": {"image": data, "scale": 2}}


def insert_task(api: Api, family: str, *, model: str = "") -> str:
    """A pending task of `family`, written through the store as the engine would (its model is a stand-in name)."""
    new = NewTask(
        account_id=api.account_id,
        model=model or f"Test/{family}",
        task_type="any",
        family=family,
        input={},
        config={"service_mode": "", "webhook_config": {"endpoint": "", "secret": ""}},
        price=1,
        service_mode="",
        retention_seconds=60,
    )
    return api.runtime.store.tasks.create(new)[0].task_id


def test_the_key_list_is_piapis() -> None:
    assert set(FAMILY_OF_KEY) == PIAPI_MODEL_KEYS
    for key, family in FAMILY_OF_KEY.items():
        assert model_key(family) == key
    assert model_key("framepack") == "framepack"  # a family PiAPI has no key for keeps its name


def test_every_catalog_family_has_a_key_or_its_own_name() -> None:
    for entry in build_catalog():
        key = model_key(entry.family)
        assert key in PIAPI_MODEL_KEYS or key == entry.family
    assert model_key("ace-step") == "ace-step" and model_key("image-toolkit") == "image_toolkit"


def test_active_tasks_group_by_piapi_keys_and_history_filters_by_them(api: Api) -> None:
    ids = {key: insert_task(api, family) for key, family in FAMILY_OF_KEY.items()}
    active = api.client.get("/account/active_tasks", headers=api.h()).json()["data"]
    assert set(active) == PIAPI_MODEL_KEYS
    for key, task_id in ids.items():
        group = active[key]
        assert [t["task_id"] for t in group["active_tasks"]] == [task_id]
        history = api.client.get(f"/api/open/tasks/histories?model={key}", headers=api.h()).json()["data"]
        assert history["total"] == 1 and history["data"][0]["task_id"] == task_id, key


def test_history_still_accepts_family_and_model_names(api: Api) -> None:
    task_id = api.client.post("/api/v1/task", headers=api.h(), json=upscale_body()).json()["data"]["task_id"]
    for name in ("image-toolkit", "image_toolkit", "Qubico/image-toolkit"):
        history = api.client.get(f"/api/open/tasks/histories?model={name}", headers=api.h()).json()["data"]
        assert [t["task_id"] for t in history["data"]] == [task_id], name
    assert api.client.get("/api/open/tasks/histories?model=video_toolkit", headers=api.h()).json()["data"]["total"] == 0


def test_cancel_many_takes_a_piapi_key(api: Api) -> None:
    wan = insert_task(api, "wanx", model="Qubico/wanx")
    kling = insert_task(api, "kling", model="kling")
    r = api.client.delete("/api/v1/tasks?created_before=9999999999&model=wan", headers=api.h())
    assert r.status_code == 200 and r.json()["data"] == {"cancelled_task_ids": [wan], "count": 1}
    r = api.client.delete("/api/v1/tasks?created_before=9999999999&model=kling", headers=api.h())
    assert r.json()["data"]["cancelled_task_ids"] == [kling]


def test_account_info_answers_both_spellings(api: Api) -> None:
    data = api.client.get("/account/info", headers=api.h()).json()["data"]
    assert data["account_id"] == data["id"] == api.account_id
    assert data["account_name"] == data["name"] == "one"


def test_cancel_answers_carry_the_cancelled_task(api: Api) -> None:
    created = api.client.post("/api/v1/task", headers=api.h(), json=upscale_body()).json()["data"]
    for method, path in (("DELETE", "/api/v1/task/{}"), ("POST", "/api/v1/task/{}/cancel")):
        task_id = api.client.post("/api/v1/task", headers=api.h(), json=upscale_body()).json()["data"]["task_id"]
        body = api.client.request(method, path.format(task_id), headers=api.h()).json()
        assert body["code"] == 200 and body["message"] == f"task {task_id} canceled"
        assert body["data"]["task_id"] == task_id and body["data"]["status"] == "cancelled"
        assert body["data"]["meta"]["usage"] == {"type": "quota", "frozen": 0, "consume": 0}
    assert created["meta"]["usage"]["type"] == "quota"


@pytest.fixture
def point_api(tmp_path: Path) -> Iterator[Api]:
    """The test app with the image upscale entry billed as PiAPI's "point" usage type (as Luma is)."""
    catalog = Catalog(
        dataclasses.replace(entry, usage_type="point") if entry.key == ("Qubico/image-toolkit", "upscale") else entry
        for entry in build_catalog()
    )
    settings = Settings(data_dir=tmp_path, public_url="http://testserver", workers=1, allow_private_urls=True)
    upscaler = PillowUpscale()
    runtime = Runtime(settings, backends=[upscaler], catalog=catalog)
    app = create_app(settings, runtime=runtime, run_workers=False)
    account = runtime.store.accounts.create_account("one", credits=10_000_000)
    key, _ = runtime.store.accounts.create_key(account.account_id, "k1")
    with TestClient(app) as client:
        yield Api(client, runtime, key, key, account.account_id, upscaler)
    runtime.store.close()


def test_usage_type_comes_from_the_entry_everywhere_a_task_is_shown(point_api: Api) -> None:
    api = point_api
    hook = {"webhook_config": {"endpoint": "http://127.0.0.1:9/hook", "secret": ""}}
    created = api.client.post("/api/v1/task", headers=api.h(), json={**upscale_body(), "config": hook}).json()
    task_id = created["data"]["task_id"]
    assert created["data"]["meta"]["usage"]["type"] == "point"
    assert api.run_worker()
    task = api.client.get(f"/api/v1/task/{task_id}", headers=api.h()).json()["data"]
    assert task["status"] == "completed" and task["meta"]["usage"]["type"] == "point"
    history = api.client.get("/api/open/tasks/histories", headers=api.h()).json()["data"]["data"]
    assert history[0]["meta"]["usage"]["type"] == "point"
    events = api.runtime.store.events.events_after(task_id, 0)
    assert events and all(e.snapshot["meta"]["usage"]["type"] == "point" for e in events)
    deliveries = api.runtime.store.webhooks.claim_due("test-dispatcher", limit=10)
    assert deliveries and all(d.snapshot["meta"]["usage"]["type"] == "point" for d in deliveries)
