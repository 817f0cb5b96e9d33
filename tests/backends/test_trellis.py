"""TRELLIS: what genmill adds around Microsoft's code, run on a CPU.

Microsoft's TRELLIS itself needs CUDA extensions (no CPU path), so these tests cover genmill's parts: the DINOv2
conditioning loaded through transformers from a local folder (a tiny random model built from a config and saved
with save_pretrained), the reasons `genmill models` gives, and the backend's input checks and outputs, with a
stand-in for Microsoft's pipeline object that records what it is asked.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from tests.backends.memory import image_ref

from genmill.backends.registry import builtin_backends
from genmill.catalog import build_catalog
from genmill.domain.catalog import TaskInput
from genmill.errors import InputRejected
from genmill.models.trellis import backend as trellis
from genmill.testing import MemoryRunContext


def tiny_dinov2(folder: Path) -> Any:
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    config = transformers.Dinov2WithRegistersConfig(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, patch_size=14,
        image_size=518, num_register_tokens=4,
    )  # fmt: skip
    transformers.Dinov2WithRegistersModel(config).save_pretrained(folder)
    return torch


def test_dinov2_conditioning_gives_trellis_the_prenorm_tokens(tmp_path: Path) -> None:
    torch = tiny_dinov2(tmp_path / "dinov2")
    model = trellis.load_dinov2(tmp_path / "dinov2")
    pixels = trellis.image_normalize(torch.rand(1, 3, 518, 518))
    with torch.no_grad():
        tokens = model(pixels, is_training=True)["x_prenorm"]
        full = model.model(pixel_values=pixels)
    # TRELLIS's layout: class token, 4 registers, then 37x37 patches of 14 px at 518x518.
    assert tuple(tokens.shape) == (1, 1 + 4 + 37 * 37, 32)
    # Before the final norm: the model's own norm of these tokens is its last_hidden_state.
    assert torch.allclose(model.model.layernorm(tokens), full.last_hidden_state, atol=1e-5)


def test_normalisation_is_imagenets() -> None:
    torch = pytest.importorskip("torch")
    grey = torch.full((1, 3, 2, 2), 0.5)
    out = trellis.image_normalize(grey)[0, :, 0, 0]
    expected = (0.5 - torch.tensor([0.485, 0.456, 0.406])) / torch.tensor([0.229, 0.224, 0.225])
    assert torch.allclose(out, expected)


def checkpoint(folder: Path, variant: trellis.Variant) -> None:
    (folder / variant.cond_folder).mkdir(parents=True)
    (folder / variant.cond_folder / "config.json").write_text("{}")
    (folder / "pipeline.json").write_text(json.dumps({"name": variant.pipeline_class, "args": {}}))


def test_without_microsofts_code_or_a_gpu_the_reason_names_what_is_missing(tmp_path: Path) -> None:
    variant = trellis.VARIANTS["image-to-3d"]
    backend = trellis.TrellisBackend(variant, tmp_path)
    assert "no TRELLIS checkpoint" in backend.availability().reason
    checkpoint(tmp_path / variant.folder, variant)
    reason = backend.availability()
    assert not reason.ok
    if trellis.code_problem().startswith("the trellis package is not installed"):
        assert "github.com/microsoft/TRELLIS" in reason.reason
    else:  # the code is there: then a missing GPU or extension is named with the module that needs it
        assert "trellis.modules.sparse" in reason.reason or "CUDA" in reason.reason


def test_the_backend_is_listed_only_where_its_folder_is(tmp_path: Path) -> None:
    assert not [b for b in builtin_backends(tmp_path) if b.name.startswith("trellis")]
    (tmp_path / "trellis-text-xlarge").mkdir()
    listed = [b for b in builtin_backends(tmp_path) if b.name.startswith("trellis")]
    assert [b.entries for b in listed] == [(("Qubico/trellis", "text-to-3d"),)]


class RecordingPipeline:
    """Answers like Microsoft's pipeline object and records the arguments of `run`."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, dict[str, Any]]] = []

    def preprocess_image(self, image: Image.Image) -> Image.Image:
        return image.convert("RGB").resize((518, 518))

    def run(self, prompt: Any, **kwargs: Any) -> dict[str, Any]:
        self.calls.append((prompt, kwargs))
        return {"gaussian": ["g"], "mesh": ["m"]}


@pytest.fixture
def image_backend(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[trellis.TrellisBackend, RecordingPipeline]:
    backend = trellis.TrellisBackend(trellis.VARIANTS["image-to-3d"], tmp_path)
    pipeline = RecordingPipeline()
    backend._pipeline = pipeline
    monkeypatch.setattr(trellis, "turntable", lambda result: np.zeros((4, 16, 32, 3), np.uint8))
    monkeypatch.setattr(trellis, "export_glb", lambda result: b"glTF" + bytes(16))
    return backend, pipeline


def entry(task_type: str) -> Any:
    return build_catalog().get("Qubico/trellis", task_type)


def cutout() -> Image.Image:
    image = Image.new("RGBA", (64, 48), (0, 0, 0, 0))
    image.paste((200, 40, 40, 255), (16, 8, 48, 40))
    return image


def test_image_to_3d_passes_the_stage_settings_and_returns_piapis_outputs(
    image_backend: tuple[trellis.TrellisBackend, RecordingPipeline],
) -> None:
    pytest.importorskip("imageio_ffmpeg")
    backend, pipeline = image_backend
    ctx = MemoryRunContext()
    inputs = TaskInput(
        image=image_ref(cutout()), seed=7, ss_sampling_steps=20, slat_sampling_steps=9,
        ss_guidance_strength=6.0, slat_guidance_strength=2.5,
    )  # fmt: skip
    output = backend.run(entry("image-to-3d"), inputs, ctx)
    assert set(output) == {"model_file", "combined_video", "no_background_image"}
    assert ctx.output(output["model_file"]).startswith(b"glTF")
    assert ctx.output(output["combined_video"])[4:8] == b"ftyp"
    assert Image.open(__import__("io").BytesIO(ctx.output(output["no_background_image"]))).size == (518, 518)
    ((_, kwargs),) = pipeline.calls
    assert kwargs["seed"] == 7 and kwargs["preprocess_image"] is False
    assert kwargs["sparse_structure_sampler_params"] == {"steps": 20, "cfg_strength": 6.0}
    assert kwargs["slat_sampler_params"] == {"steps": 9, "cfg_strength": 2.5}


def test_an_opaque_image_without_the_cut_out_model_is_refused_before_running(
    image_backend: tuple[trellis.TrellisBackend, RecordingPipeline],
) -> None:
    backend, pipeline = image_backend
    assert backend.served_by(entry("image-to-3d")).limits  # said before anyone pays
    opaque = image_ref(Image.new("RGB", (64, 64), (10, 200, 10)))
    with pytest.raises(InputRejected, match=r"^image: must have a transparent background"):
        backend.run(entry("image-to-3d"), TaskInput(image=opaque), MemoryRunContext())
    assert not pipeline.calls


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"image": image_ref(Image.new("RGBA", (1025, 8)))}, "^image: 1025x8 is larger than 1024x1024"),
        ({"image": "bm90IGFuIGltYWdl"}, "^image: not a decodable image"),
        ({"ss_sampling_steps": 0}, "^ss_sampling_steps: must be an integer from 1 to 50"),
        ({"slat_guidance_strength": 11}, "^slat_guidance_strength: must be a number from 0 to 10"),
        ({"seed": -1}, "^seed: must be an integer from 0"),
    ],
)
def test_bad_inputs_are_rejected_naming_the_field(
    image_backend: tuple[trellis.TrellisBackend, RecordingPipeline], fields: dict[str, Any], message: str
) -> None:
    backend, pipeline = image_backend
    inputs = TaskInput(**{"image": image_ref(cutout()), **fields})
    with pytest.raises(InputRejected, match=message):
        backend.run(entry("image-to-3d"), inputs, MemoryRunContext())
    assert not pipeline.calls
