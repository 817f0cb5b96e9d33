"""`face_enhance` at create, through a real Runtime and TaskService: refused with no credit moved where this
deployment has no face restorer, accepted (and said in `served_by`) where its weights are in the models folder."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from tests.backends.memory import image_ref
from tests.backends.test_face_restore import tiny_restorer
from tests.backends.test_faces import portrait
from tests.integration.test_stand_ins import UPSCALE, create, credits, make_api, models_by_key  # noqa: F401 - fixture

from genmill.models.toolkits.face_restore import restorer_problem
from genmill.models.toolkits.upscale import RealEsrganUpscaleBackend


def upscaler(models_dir: Path) -> RealEsrganUpscaleBackend:
    backend = RealEsrganUpscaleBackend(models_dir=models_dir)
    if not backend.availability().ok:
        pytest.skip(backend.availability().reason)
    return backend


def test_face_enhance_is_refused_at_create_without_the_restorer(make_api: Any, tmp_path: Path) -> None:  # noqa: F811 - fixture
    client, runtime, key, account_id = make_api([upscaler(tmp_path / "models")])
    before = credits(runtime, account_id)
    refused = create(client, key, UPSCALE, {"image": image_ref(portrait(64, 75)), "face_enhance": True})
    assert refused.status_code == 400
    assert "input.face_enhance: no face restorer is installed on this server" in refused.json()["message"]
    assert credits(runtime, account_id) == before
    models, _ = models_by_key(client)
    limits = models["Qubico/image-toolkit/upscale"]["served_by"]["limits"]
    assert limits == ["face_enhance needs the face-restore weights"]
    assert create(client, key, UPSCALE, {"image": image_ref(portrait(64, 75))}).status_code == 200


def test_face_enhance_is_accepted_where_the_restorer_is_installed(make_api: Any, tmp_path: Path) -> None:  # noqa: F811 - fixture
    models_dir = tiny_restorer(tmp_path / "models")
    if restorer_problem(models_dir):
        pytest.skip(restorer_problem(models_dir))
    client, runtime, key, account_id = make_api([upscaler(models_dir)])
    created = create(client, key, UPSCALE, {"image": image_ref(portrait(64, 75)), "face_enhance": True})
    assert created.status_code == 200, created.text
    assert credits(runtime, account_id)[1] > 0  # frozen for the task
    models, _ = models_by_key(client)
    served_by = models["Qubico/image-toolkit/upscale"]["served_by"]
    assert "GFPGAN v1.4" in served_by["model"] and served_by["limits"] == []
