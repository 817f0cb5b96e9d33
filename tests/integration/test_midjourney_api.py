"""Midjourney through the HTTP API on the FLUX.1/BLIP stand-in (tiny random models): every task type created with
its documented body, run by the worker, priced as PiAPI prices it; follow-ups run on what their origin made; and
nothing is accepted, nor any credit moved, until the operator enables the stand-in."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

os.environ.setdefault("HF_HUB_OFFLINE", "1")
pytest.importorskip("diffusers")
pytest.importorskip("peft")

from tests.backends.test_flux import build_models, image_ref, picture
from tests.backends.test_midjourney import save_tiny_blip

from genmill.app import Runtime, create_app
from genmill.catalog import build_catalog
from genmill.domain.states import TaskStatus
from genmill.models.flux.captions import CAPTION_FOLDER
from genmill.models.flux.midjourney import midjourney_backends
from genmill.models.flux.midjourney_catalog import EXAMPLE_INPUTS, ORIGIN
from genmill.models.flux.midjourney_tasks import Settings as DrawSettings
from genmill.models.flux.shared import FluxShared
from genmill.settings import Settings

pytestmark = [
    pytest.mark.backends,
    pytest.mark.filterwarnings("ignore:`FluxPosEmbed` is deprecated:FutureWarning"),
]

CREDITS = 100_000_000
CATALOG = build_catalog()


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("mj-api-models")
    build_models(root)
    save_tiny_blip(root / CAPTION_FOLDER)
    return root


@dataclass
class Api:
    client: TestClient
    runtime: Runtime
    key: str
    account_id: str

    def post(self, task_type: str, body: dict[str, Any]) -> Any:
        payload = {"model": "midjourney", "task_type": task_type, "input": body}
        return self.client.post("/api/v1/task", headers={"X-API-Key": self.key}, json=payload)

    def run(self, task_type: str, body: dict[str, Any]) -> dict[str, Any]:
        """Create the task, let the worker run it, and return the completed task."""
        answer = self.post(task_type, body)
        assert answer.status_code == 200, answer.text
        task_id = answer.json()["data"]["task_id"]
        assert self.runtime.workers[0].run_once()
        task = self.client.get(f"/api/v1/task/{task_id}", headers={"X-API-Key": self.key}).json()["data"]
        assert task["status"] == "completed", task
        assert self.runtime.store.tasks.get_any(task_id).status is TaskStatus.COMPLETED
        return dict(task)

    def available(self) -> int:
        return self.runtime.store.accounts.get(self.account_id).balances.available


def make_api(tmp_path: Path, models_dir: Path, stand_ins: str) -> tuple[TestClient, Api]:
    settings = Settings(data_dir=tmp_path / "data", public_url="http://testserver", workers=1, stand_ins=stand_ins)
    backends = midjourney_backends(models_dir, shared=FluxShared(device="cpu"), settings=DrawSettings(side=64, steps=2))
    runtime = Runtime(settings, backends=backends)
    account = runtime.store.accounts.create_account("one", credits=CREDITS)
    key, _ = runtime.store.accounts.create_key(account.account_id)
    client = TestClient(create_app(settings, runtime=runtime, run_workers=False))
    return client, Api(client, runtime, key, account.account_id)


@pytest.fixture
def api(tmp_path: Path, models_dir: Path) -> Iterator[Api]:
    client, made = make_api(tmp_path, models_dir, "midjourney")
    with client:
        yield made
    made.runtime.store.close()


def body(task_type: str, origin_id: str = "") -> dict[str, Any]:
    """The documented example body, with the origin's task_id and with inline images instead of remote URLs."""
    example = {k: (origin_id if v == ORIGIN else v) for k, v in EXAMPLE_INPUTS[task_type].items()}
    if task_type == "describe":
        example["image_url"] = image_ref(picture(60, 40))
    if task_type == "blend":
        example["image_urls"] = [image_ref(picture()), image_ref(picture(40, 40))]
    return example


def price(task_type: str, fields: dict[str, Any]) -> int:
    entry = CATALOG.get("midjourney", task_type)
    assert entry is not None
    return entry.price_of(entry.input_model.model_validate(fields))


def test_every_task_type_runs_with_its_documented_body(api: Api) -> None:
    listed = api.client.get("/api/v1/models").json()["data"]["models"]
    served = {m["task_type"]: m["served_by"] for m in listed if m["model"] == "midjourney"}
    assert len(served) == 10 and all(s["stand_in"] and "stand-in for Midjourney" in s["model"] for s in served.values())
    before = api.available()
    spent = 0
    imagine = api.run("imagine", body("imagine"))
    output = imagine["output"]
    assert len(output["image_urls"]) == 4 and output["image_url"] and output["actions"][0] == "reroll"
    assert imagine["input"]["process_mode"] == "fast" and imagine["meta"]["usage"]["consume"] == price(
        "imagine", body("imagine")
    )
    spent += price("imagine", body("imagine"))
    grid_id = imagine["task_id"]
    for task_type in ("upscale", "variation", "reroll", "seed"):
        task = api.run(task_type, body(task_type, grid_id))
        spent += price(task_type, body(task_type, grid_id))
        if task_type == "seed":
            assert task["output"]["seed"] == output["seed"]
        if task_type == "upscale":
            upscale_id = task["task_id"]
            assert task["output"]["image_url"] and "pan_left" in task["output"]["actions"]
    for task_type in ("inpaint", "outpaint", "pan"):
        fields = body(task_type, upscale_id)
        if task_type == "inpaint":
            fields["mask"] = image_ref(picture(48, 40).convert("L").point(lambda v: 255 if v > 100 else 0))
        task = api.run(task_type, fields)
        assert len(task["output"]["image_urls"]) == 4
        spent += price(task_type, fields)
    for task_type in ("blend", "describe"):
        task = api.run(task_type, body(task_type))
        spent += price(task_type, body(task_type))
    assert task["output"]["description"].count("--ar 3:2") == 4
    assert api.available() == before - spent


def test_a_follow_up_refuses_an_origin_of_the_wrong_kind_at_create(api: Api) -> None:
    imagine = api.run("imagine", body("imagine"))
    before = api.available()
    answer = api.post("pan", body("pan", imagine["task_id"]))
    assert answer.status_code == 400 and "input.origin_task_id" in answer.json()["message"], answer.text
    assert api.available() == before


def test_nothing_is_accepted_until_the_operator_enables_the_stand_in(tmp_path: Path, models_dir: Path) -> None:
    client, made = make_api(tmp_path, models_dir, "none")
    with client:
        before = made.available()
        answer = made.post("imagine", body("imagine"))
        assert answer.status_code == 400, answer.text
        assert "GENMILL_STAND_INS" in answer.text and made.available() == before
        listed = client.get("/api/v1/models").json()["data"]["models"]
        mj = [m for m in listed if m["model"] == "midjourney"]
        assert len(mj) == 10 and {m["family"] for m in mj} == {"mj"}
        assert all(not m["available"] and "stand-in not enabled" in m["reason"] for m in mj)
    made.runtime.store.close()
