"""`upscale`'s `face_enhance` with a tiny random ONNX model in place of GFPGAN v1.4.

The model is built here with the names and shapes of the published export (`input` 1x3x512x512 in [-1, 1], `output`
of the same shape and range) and runs on matplotlib's Grace Hopper portrait after Real-ESRGAN. This proves finding,
aligning, restoring and pasting back, and where the restorer may touch the picture, not the quality of a
restoration (random weights cannot restore anything).
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image
from tests.backends.memory import image_ref, ready
from tests.backends.test_faces import portrait

from genmill.catalog import build_catalog
from genmill.domain.catalog import CatalogEntry
from genmill.errors import InputRejected
from genmill.models.toolkits import face_restore
from genmill.models.toolkits.face_restore import FFHQ_512_TEMPLATE, ffhq_alignment
from genmill.models.toolkits.face_swap_net import five_points
from genmill.models.toolkits.upscale import RealEsrganUpscaleBackend
from genmill.testing import MemoryRunContext

pytestmark = pytest.mark.backends

UPSCALE = build_catalog().get("Qubico/image-toolkit", "upscale")


def tiny_restorer(models_dir: Path) -> Path:
    """`face-restore/gfpgan_1.4.onnx` under `models_dir`: a random 1x1 convolution squashed by tanh, with the
    export's input and output names and shapes."""
    onnx = pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    weights = rng.normal(size=(3, 3, 1, 1)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("Conv", ["input", "w"], ["mixed"]), helper.make_node("Tanh", ["mixed"], ["output"])],
        "gfpgan",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 512, 512])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 3, 512, 512])],
        [numpy_helper.from_array(weights, "w")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)
    onnx.checker.check_model(model)
    folder = models_dir / face_restore.FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(folder / face_restore.RESTORER_FILE))
    return models_dir


@pytest.fixture(scope="module")
def upscaler(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RealEsrganUpscaleBackend]:
    models = tiny_restorer(tmp_path_factory.mktemp("models"))
    backend = RealEsrganUpscaleBackend(models_dir=models)
    if face_restore.restorer_problem(models):
        pytest.skip(face_restore.restorer_problem(models))
    for loaded in ready(backend):
        assert isinstance(loaded, RealEsrganUpscaleBackend)
        yield loaded
    backend.unload()


def upscale(backend: RealEsrganUpscaleBackend, image: Image.Image, **fields: object) -> tuple[Image.Image, list[str]]:
    ctx = MemoryRunContext()
    inputs = SimpleNamespace(image=image_ref(image), scale=2, **fields)
    assert UPSCALE is not None
    output = backend.run(UPSCALE, inputs, ctx)  # type: ignore[arg-type]
    return Image.open(io.BytesIO(ctx.output(output["image_url"]))), ctx.logs


def test_the_restorer_changes_the_face_and_nothing_far_from_it(upscaler: RealEsrganUpscaleBackend) -> None:
    source = portrait(160, 188)
    upscaled = source.resize((320, 376), Image.Resampling.LANCZOS)  # what Real-ESRGAN hands on, faster
    ctx = MemoryRunContext()
    restored = upscaler._restore_faces(ctx, source, upscaled)
    assert restored.size == upscaled.size and restored.mode == "RGB"
    changed = np.abs(np.asarray(restored, np.int16) - np.asarray(upscaled, np.int16)).max(axis=2) > 8
    face = upscaler.face_restorer().finder.find(np.asarray(source))[0]
    left, top, right, bottom = (round(2 * v) for v in face.box)
    assert changed[top:bottom, left:right].mean() > 0.5  # the restored crop covers the face
    width, height = right - left, bottom - top  # FFHQ crops hold the whole head: allow a face's size around it
    far = changed.copy()
    far[max(0, top - height) : bottom + height, max(0, left - width) : right + width] = False
    assert not far.any()
    assert ctx.logs[-1].startswith("face 1/1 restored with GFPGAN v1.4")


def test_face_enhance_runs_after_real_esrgan(upscaler: RealEsrganUpscaleBackend) -> None:
    source = portrait(80, 94)
    result, logs = upscale(upscaler, source, face_enhance=True)
    assert result.size == (160, 188)
    passes = [i for i, line in enumerate(logs) if line.startswith("pass ")]
    restored = [i for i, line in enumerate(logs) if line.startswith("face 1/1 restored")]
    assert passes and restored and passes[-1] < restored[0]


def test_an_image_without_a_face_is_still_upscaled_and_says_so(upscaler: RealEsrganUpscaleBackend) -> None:
    sky = Image.new("RGB", (64, 48), (70, 130, 190))
    result, logs = upscale(upscaler, sky, face_enhance=True)
    assert result.size == (128, 96)
    assert any(line.startswith("face_enhance: no face was found") for line in logs)


def test_alignment_puts_the_five_points_on_the_ffhq_template(upscaler: RealEsrganUpscaleBackend) -> None:
    face = upscaler.face_restorer().finder.find(np.asarray(portrait()))[0]
    points = five_points(face)
    matrix = ffhq_alignment(points, 512)
    moved = points @ matrix[:, :2].T + matrix[:, 2]
    assert np.abs(moved - FFHQ_512_TEMPLATE).max() < 25  # a similarity cannot fit five real points exactly


def test_face_enhance_is_refused_where_no_restorer_is_installed_and_served_where_it_is(tmp_path: Path) -> None:
    assert isinstance(UPSCALE, CatalogEntry)
    absent = RealEsrganUpscaleBackend(models_dir=tmp_path)
    with pytest.raises(InputRejected, match=r"^face_enhance: no face restorer is installed on this server: put "):
        absent.check_request(UPSCALE, SimpleNamespace(face_enhance=True))  # type: ignore[arg-type]
    absent.check_request(UPSCALE, SimpleNamespace(face_enhance=False))  # type: ignore[arg-type]
    assert absent.served_by(UPSCALE).limits == ("face_enhance needs the face-restore weights",)
    present = RealEsrganUpscaleBackend(models_dir=tiny_restorer(tmp_path))
    if face_restore.restorer_problem(tmp_path):
        pytest.skip(face_restore.restorer_problem(tmp_path))
    present.check_request(UPSCALE, SimpleNamespace(face_enhance=True))  # type: ignore[arg-type]
    served = present.served_by(UPSCALE)
    assert served.limits == () and "GFPGAN v1.4" in served.model and not served.stand_in
