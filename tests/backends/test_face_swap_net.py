"""The swap-network face swap's plumbing, with tiny random ONNX models in place of inswapper and ArcFace.

The models are built here with the same input and output names and shapes as insightface's inswapper_128
(`target` 1x3x128x128, `source` 1x512, a 512x512 `emap` as the last initializer) and w600k_r50 (1x3x112x112 in,
1x512 out), and run on matplotlib's Grace Hopper portrait. This proves loading, alignment, pasting back and the
output's shape, not the quality of a swap (random weights cannot swap anything).
"""

from __future__ import annotations

import io
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from numpy.typing import NDArray
from PIL import Image
from tests.backends.memory import image_ref, ready
from tests.backends.test_faces import portrait, striped

from genmill.backends.registry import builtin_backends
from genmill.catalog import build_catalog
from genmill.errors import InputRejected
from genmill.models.toolkits import face_swap_net
from genmill.models.toolkits.face_swap_net import InswapperFaceSwapBackend, template
from genmill.testing import MemoryRunContext

pytestmark = pytest.mark.backends


def tiny_models(folder: Path) -> None:
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    folder.mkdir(parents=True)

    def tensor(name: str, array: NDArray[Any]) -> TensorProto:
        return numpy_helper.from_array(array.astype(np.float32), name)

    recogniser = helper.make_graph(
        [
            helper.make_node("GlobalAveragePool", ["input.1"], ["pooled"]),
            helper.make_node("Flatten", ["pooled"], ["flat"]),
            helper.make_node("MatMul", ["flat", "w"], ["683"]),
        ],
        "arcface",
        [helper.make_tensor_value_info("input.1", TensorProto.FLOAT, [1, 3, 112, 112])],
        [helper.make_tensor_value_info("683", TensorProto.FLOAT, [1, 512])],
        [tensor("w", rng.normal(size=(3, 512)))],
    )
    swapper = helper.make_graph(
        [  # the crop, darkened, tinted by the identity: enough to see where the swapped crop lands
            helper.make_node("MatMul", ["source", "tint"], ["shift"]),
            helper.make_node("Reshape", ["shift", "shape"], ["shift4"]),
            helper.make_node("Mul", ["target", "half"], ["dim"]),
            helper.make_node("Add", ["dim", "shift4"], ["sum"]),
            helper.make_node("Sigmoid", ["sum"], ["output"]),
        ],
        "inswapper",
        [
            helper.make_tensor_value_info("target", TensorProto.FLOAT, [1, 3, 128, 128]),
            helper.make_tensor_value_info("source", TensorProto.FLOAT, [1, 512]),
        ],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 3, 128, 128])],
        [
            tensor("tint", rng.normal(size=(512, 3))),
            numpy_helper.from_array(np.array([1, 3, 1, 1], dtype=np.int64), "shape"),
            tensor("half", np.array(0.5)),
            tensor("emap", rng.normal(size=(512, 512))),  # last, like inswapper's own projection
        ],
    )
    for graph, name in ((recogniser, face_swap_net.RECOGNISER), (swapper, face_swap_net.SWAPPER)):
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)
        onnx.checker.check_model(model)
        onnx.save(model, str(folder / name))


@pytest.fixture(scope="module")
def backend(tmp_path_factory: pytest.TempPathFactory) -> object:
    models = tmp_path_factory.mktemp("models")
    tiny_models(models / face_swap_net.FOLDER)
    yield from ready(InswapperFaceSwapBackend(models))


def entry(task_type: str) -> object:
    return build_catalog().get("Qubico/image-toolkit", task_type)


def test_the_network_swaps_inside_the_face_and_leaves_the_rest(backend: InswapperFaceSwapBackend) -> None:
    target = portrait()
    ctx = MemoryRunContext()
    inputs = SimpleNamespace(target_image=image_ref(target), swap_image=image_ref(striped()))
    output = backend.run(entry("face-swap"), inputs, ctx)  # type: ignore[arg-type]
    result = Image.open(io.BytesIO(ctx.output(output["image_url"])))
    assert result.size == target.size and result.mode == "RGB"
    before, after = np.asarray(target, np.int16), np.asarray(result, np.int16)
    changed = np.abs(after - before).max(axis=2) > 8
    face = backend._finder.find(np.asarray(target))[0]
    left, top, right, bottom = (round(v) for v in face.box)
    inside = changed[top:bottom, left:right].mean()
    outside = changed.copy()
    outside[max(0, top - 40) : bottom + 40, max(0, left - 40) : right + 40] = False
    assert inside > 0.5, inside  # the swapped crop covers the face
    assert not outside.any()  # and nothing far from it
    assert any("(inswapper)" in line for line in ctx.logs)


def test_alignment_puts_the_five_points_on_the_template(backend: InswapperFaceSwapBackend) -> None:
    face = backend._finder.find(np.asarray(portrait()))[0]
    points = face_swap_net.five_points(face)
    matrix = face_swap_net.alignment(points, 128)
    moved = points @ matrix[:, :2].T + matrix[:, 2]
    assert np.abs(moved - template(128)).max() < 6  # a similarity cannot fit five real points exactly


def test_a_picture_without_a_face_is_rejected(backend: InswapperFaceSwapBackend) -> None:
    inputs = SimpleNamespace(
        target_image=image_ref(Image.new("RGB", (160, 120), (70, 130, 190))), swap_image=image_ref(portrait())
    )
    with pytest.raises(InputRejected, match=r"^target_image: no face was found"):
        backend.run(entry("face-swap"), inputs, MemoryRunContext())  # type: ignore[arg-type]


def test_without_the_files_the_classical_warp_runs_and_says_what_it_is(tmp_path: Path) -> None:
    network = InswapperFaceSwapBackend(tmp_path)
    reason = network.availability().reason
    assert "inswapper_128.onnx" in reason and "non-commercial" in reason
    names = [b.name for b in builtin_backends(tmp_path)]
    assert names.index("inswapper-face-swap") < names.index("mediapipe-face-swap")
    classical = next(b for b in builtin_backends(tmp_path) if b.name == "mediapipe-face-swap")
    served = classical.served_by(entry("face-swap"))  # type: ignore[arg-type]
    assert served.limits[0].startswith("a landmark warp with Poisson blending, not a face-swap network")
