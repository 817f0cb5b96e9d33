"""The Kling stand-in behind the real API and worker, on tiny random Wan models: a task is created and priced as
PiAPI prices it, runs, and answers in Kling's output shape with its files served; what Wan cannot honour is a
400 at create naming the field, with no credits moved; without GENMILL_STAND_INS nothing is served."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

os.environ.setdefault("HF_HUB_OFFLINE", "1")
pytest.importorskip("diffusers")
pytest.importorskip("ftfy")

from tests.backends import video_tiny
from tests.backends.test_video_services import SEGMENT

from genmill.app import Runtime, create_app
from genmill.domain.catalog import usd
from genmill.models.video.pipeline import VideoShared
from genmill.models.video.services import SERVICES, WanServiceBackend
from genmill.settings import Settings

pytestmark = [pytest.mark.backends]


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("genmill-models")
    video_tiny.build_wan(root)
    return root


Api = tuple[TestClient, Runtime, str, str]


@pytest.fixture
def api(models_dir: Path, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Api]:
    stand_ins = getattr(request, "param", "kling-wan")
    kling = WanServiceBackend(SERVICES[0], models_dir, shared=VideoShared(device="cpu"), geometry=SEGMENT)
    config = Settings(data_dir=tmp_path, public_url="http://testserver", workers=1, stand_ins=stand_ins)
    runtime = Runtime(config, backends=[kling])
    client = TestClient(create_app(config, runtime=runtime, run_workers=False))
    client.__enter__()
    account = runtime.store.accounts.create_account("one", credits=10_000_000)
    key, _ = runtime.store.accounts.create_key(account.account_id)
    yield client, runtime, key, account.account_id
    client.__exit__(None, None, None)
    runtime.store.close()


def create(client: TestClient, key: str, fields: dict[str, Any], model: str = "kling") -> Any:
    body = {"model": model, "task_type": "video_generation", "input": fields}
    return client.post("/api/v1/task", headers={"X-API-Key": key}, json=body)


def available(runtime: Runtime, account_id: str) -> int:
    return runtime.store.accounts.get(account_id).balances.available


def test_a_kling_task_runs_on_wan_and_answers_in_kling_s_shape(api: Api) -> None:
    client, runtime, key, account_id = api
    created = create(client, key, {"prompt": "a red fox", "mode": "pro", "duration": 10})
    assert created.status_code == 200, created.text
    data = created.json()["data"]
    assert data["input"]["version"] == "1.6" and data["meta"]["usage"]["frozen"] == usd(0.92)
    assert runtime.workers[0].run_once()
    task = client.get(f"/api/v1/task/{data['task_id']}", headers={"X-API-Key": key}).json()["data"]
    assert task["status"] == "completed", task["error"]
    assert task["meta"]["usage"]["consume"] == usd(0.92) and available(runtime, account_id) == 10_000_000 - usd(0.92)
    served_by = task["detail"]["served_by"]
    assert served_by["stand_in"] is True and served_by["limits"][0].startswith("stand-in for Kling")
    (work,) = task["output"]["works"]
    assert (work["video"]["w"], work["video"]["h"], work["video"]["duration"]) == (32, 16, 10250)  # 41 at 4 fps
    for resource in (work["video"]["resource"], work["cover"]["resource"]):
        fetched = client.get(resource.removeprefix("http://testserver"))
        assert fetched.status_code == 200 and fetched.headers["content-type"] in ("video/mp4", "image/png")


def test_what_wan_cannot_honour_is_a_400_at_create_with_no_credits_moved(api: Api) -> None:
    client, runtime, key, account_id = api
    refused = create(client, key, {"prompt": "a fox", "version": "2.6", "enable_audio": True})
    assert refused.status_code == 400
    assert "enable_audio: the Wan stand-in for Kling makes silent video" in refused.json()["message"]
    assert available(runtime, account_id) == 10_000_000


@pytest.mark.parametrize("api", ["none"], indirect=True)
def test_nothing_is_served_unless_the_operator_enables_the_stand_in(api: Api) -> None:
    client, runtime, key, account_id = api
    refused = create(client, key, {"prompt": "a fox"}, model="kling-turbo")
    assert refused.status_code == 400 and "GENMILL_STAND_INS=kling-wan" in refused.json()["message"]
    assert available(runtime, account_id) == 10_000_000
