"""Every model and task type of PiAPI's catalog beyond Qubico, created with its documented body.

`PIAPI_CATALOG` is the list in the repository's PiAPI catalog notes (Midjourney, Kling, Hailuo, Luma, Udio, Suno).
On a deployment that serves none of them, each create is refused as not served (a 400 that names the entry as
"in the catalog", never "unknown model") with nothing stored and no credit moved. On a deployment where a worker
serves them (a test backend that stands for the upstream provider or a stand-in), each documented body is accepted
and frozen at the entry's own price; an operation on an earlier task first gets a completed origin of a kind the
entry accepts.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from genmill.app import Runtime, create_app
from genmill.backends.base import Availability, Backend, RunContext
from genmill.catalog import build_catalog
from genmill.domain.catalog import CatalogEntry, TaskInput
from genmill.models.audio import suno_catalog, udio_catalog
from genmill.models.flux import midjourney_catalog
from genmill.models.video import hailuo_catalog, kling_catalog, luma_catalog
from genmill.settings import Settings

CREDITS = 10**10
ORIGIN = "<origin_task_id>"

PIAPI_CATALOG: tuple[tuple[str, str], ...] = (
    *(
        ("midjourney", task_type)
        for task_type in (
            "imagine",
            "upscale",
            "variation",
            "reroll",
            "describe",
            "seed",
            "blend",
            "inpaint",
            "outpaint",
            "pan",
        )
    ),
    *(("kling", t) for t in ("video_generation", "extend_video", "lip_sync", "effects", "ai_try_on")),
    ("kling-turbo", "video_generation"),
    ("hailuo", "video_generation"),
    ("luma", "video_generation"),
    ("luma", "extend_video"),
    ("music-u", "generate_music"),
    ("music-u", "generate_lyrics"),
    ("music-s", "generate_music"),
    ("music-s", "generate_music_custom"),
)
"""(model, task_type) of every entry the PiAPI catalog notes list, in their order."""

EXAMPLES: dict[str, dict[str, dict[str, Any]]] = {
    "midjourney": midjourney_catalog.EXAMPLE_INPUTS,
    "kling": kling_catalog.EXAMPLE_INPUTS,
    "kling-turbo": kling_catalog.TURBO_EXAMPLE_INPUTS,
    "hailuo": hailuo_catalog.EXAMPLE_INPUTS,
    "luma": luma_catalog.EXAMPLE_INPUTS,
    "music-u": udio_catalog.EXAMPLE_INPUTS,
    "music-s": suno_catalog.EXAMPLE_INPUTS,
}


def documented_body(model: str, task_type: str) -> dict[str, Any]:
    return dict(EXAMPLES[model][task_type])


class ServesThePiapiCatalog(Backend):
    """Runs every listed entry, answering a small output: what matters here is the create, not the model."""

    name = "test-piapi-catalog"
    entries = PIAPI_CATALOG

    def availability(self) -> Availability:
        return Availability(True)

    def load(self) -> None:
        pass

    def run(self, entry: CatalogEntry, inputs: TaskInput, ctx: RunContext) -> dict[str, Any]:
        return {"image_url": "", "message": f"{entry.model} {entry.task_type}"}


class Deployment:
    def __init__(self, client: TestClient, runtime: Runtime, key: str, account_id: str) -> None:
        self.client, self.runtime, self.key, self.account_id = client, runtime, key, account_id

    def create(self, model: str, task_type: str, body: dict[str, Any]) -> Any:
        payload = {"model": model, "task_type": task_type, "input": body}
        return self.client.post("/api/v1/task", headers={"X-API-Key": self.key}, json=payload)

    def credits(self) -> dict[str, int]:
        info = self.client.get("/account/info", headers={"X-API-Key": self.key}).json()["data"]
        return dict(info["credit_pack_info"])

    def task_count(self) -> int:
        return self.runtime.store.tasks.history(
            self.account_id, page=1, page_size=1, model=None, start=None, end=None, status=None
        ).total


def _deployment(tmp_path: Path, backends: list[Backend]) -> Iterator[Deployment]:
    settings = Settings(data_dir=tmp_path, public_url="http://testserver", workers=1)
    runtime = Runtime(settings, backends=backends)
    account = runtime.store.accounts.create_account("piapi-client", credits=CREDITS)
    key, _ = runtime.store.accounts.create_key(account.account_id, "k")
    with TestClient(create_app(settings, runtime=runtime, run_workers=False)) as client:
        yield Deployment(client, runtime, key, account.account_id)
    runtime.store.close()


@pytest.fixture
def unserved(tmp_path: Path) -> Iterator[Deployment]:
    yield from _deployment(tmp_path, [])


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Deployment]:
    yield from _deployment(tmp_path, [ServesThePiapiCatalog()])


def test_the_list_is_the_catalogs_and_every_entry_has_a_documented_body() -> None:
    catalog = build_catalog()
    for model, task_type in PIAPI_CATALOG:
        assert (model, task_type) in catalog, f"{model}/{task_type} is not in the catalog"
        entry = catalog.get(model, task_type)
        assert entry is not None
        body = documented_body(model, task_type)
        if entry.derived_from is not None and entry.derived_from.field in body:
            assert body[entry.derived_from.field] in (ORIGIN, "")  # "": an optional origin left out


@pytest.mark.parametrize(("model", "task_type"), PIAPI_CATALOG, ids=lambda key: str(key))
def test_unserved_entries_are_refused_as_not_served_never_unknown(
    unserved: Deployment, model: str, task_type: str
) -> None:
    before = unserved.credits()
    answer = unserved.create(model, task_type, documented_body(model, task_type))
    assert answer.status_code == 400, answer.text
    message = answer.json()["message"]
    assert f"{model}/{task_type} is in the catalog but no worker of this deployment can run it" in message
    assert "unknown" not in message
    assert unserved.credits() == before
    assert unserved.task_count() == 0


def _completed_origin(deployment: Deployment, entry: CatalogEntry) -> str:
    """A completed task of the first kind the entry accepts as its origin, made from that kind's documented body
    (itself on a completed origin of its own when that kind works on an earlier task: a Midjourney pan works on an
    upscale, which works on an imagine)."""
    assert entry.derived_from is not None
    model = entry.derived_from.models[0]
    task_types = entry.derived_from.task_types or tuple(EXAMPLES[model])
    task_type = next(t for t in task_types if t in EXAMPLES[model])
    body = documented_body(model, task_type)
    origin_entry = build_catalog().get(model, task_type)
    assert origin_entry is not None
    if origin_entry.derived_from is not None and body.get(origin_entry.derived_from.field) == ORIGIN:
        body[origin_entry.derived_from.field] = _completed_origin(deployment, origin_entry)
    answer = deployment.create(model, task_type, body)
    assert answer.status_code == 200, answer.text
    assert deployment.runtime.workers[0].run_once()
    task_id = str(answer.json()["data"]["task_id"])
    assert deployment.runtime.store.tasks.get_any(task_id).status.value == "completed"
    return task_id


@pytest.mark.parametrize(("model", "task_type"), PIAPI_CATALOG, ids=lambda key: str(key))
def test_served_entries_accept_the_documented_body_at_their_price(
    served: Deployment, model: str, task_type: str
) -> None:
    catalog = build_catalog()
    entry = catalog.get(model, task_type)
    assert entry is not None
    body = documented_body(model, task_type)
    if entry.derived_from is not None and body.get(entry.derived_from.field) == ORIGIN:
        body[entry.derived_from.field] = _completed_origin(served, entry)
    if model == "luma" and task_type == "extend_video":
        frame0 = body.get("key_frames", {}).get("frame0", {})
        if frame0.get("id") == ORIGIN:
            frame0["id"] = body.get("origin_task_id") or _completed_origin(served, entry)
    before = served.credits()
    answer = served.create(model, task_type, body)
    assert answer.status_code == 200, answer.text
    task = answer.json()["data"]
    price = entry.price_of(entry.input_model.model_validate(body))
    assert price > 0, f"{model}/{task_type} is free"
    assert served.credits()["frozen_credits"] - before["frozen_credits"] == price
    assert task["status"] == "pending"
    assert task["meta"]["usage"]["type"] == entry.usage_type_of(entry.input_model.model_validate(body))


@pytest.mark.parametrize(("version", "usage_type"), [("3.0", "point"), ("1.6", "quota")])
def test_kling_reports_point_usage_for_version_3_only(served: Deployment, version: str, usage_type: str) -> None:
    """PiAPI reports Kling 3.0 tasks as "point" usage and older versions as "quota"; the task keeps what it was
    created with, in every place it is shown."""
    answer = served.create("kling", "video_generation", {"prompt": "a fox", "version": version, "duration": 5})
    assert answer.status_code == 200, answer.text
    task_id = answer.json()["data"]["task_id"]
    assert answer.json()["data"]["meta"]["usage"]["type"] == usage_type
    again = served.client.get(f"/api/v1/task/{task_id}", headers={"X-API-Key": served.key})
    assert again.json()["data"]["meta"]["usage"]["type"] == usage_type
