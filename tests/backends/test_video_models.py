"""The diffusers video backends (Wan, SkyReels, AI Hug, HunyuanVideo, FramePack) on tiny random models.

Every weight folder is built from configs (`video_tiny`), saved with `save_pretrained` in the production layout,
and loaded by the backends' own `from_pretrained` path, offline. Every served task type runs end to end through
`run` with an in-memory context, at a toy geometry; the outputs are real H.264 MP4s, decoded again here to check
their frame count and size. The clips are noise; the real weights' quality is not tested. Skipped where the
`diffusers` extra is not installed.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image, ImageDraw

os.environ.setdefault("HF_HUB_OFFLINE", "1")
pytest.importorskip("diffusers")
pytest.importorskip("peft")
pytest.importorskip("ftfy")

from tests.backends import video_tiny
from tests.backends.memory import after_steps, image_ref

from genmill.backends.registry import model_backends
from genmill.backends.video_io import probe
from genmill.catalog import build_catalog
from genmill.errors import BackendError
from genmill.models.video.hunyuan import HunyuanBackend
from genmill.models.video.pipeline import Geometry, VideoBackend, VideoShared
from genmill.models.video.wan import CAMERA_REASON, VARIANTS, WanBackend
from genmill.models.video.wanx_catalog import MODEL as WANX
from genmill.testing import MemoryRunContext

pytestmark = [pytest.mark.backends]

CATALOG = build_catalog()
SIZES = {"16:9": (32, 16), "9:16": (16, 32), "1:1": (16, 16)}
TINY = Geometry({"480p": SIZES, "720p": {"16:9": (48, 32), "9:16": (32, 48)}}, frames=5, fps=8, steps=2)
FRAMEPACK_TINY = Geometry({"640": {"16:9": (64, 32), "9:16": (32, 64), "1:1": (64, 64)}}, frames=0, fps=1, steps=2)
"""FramePack's clean-latent embedders pool latents 4x, so its toy frames are a little larger; 1 fps keeps a 10 s
clip at 10 frames (two sections of a 2-latent window)."""
VIDEO_FAMILIES = {"wanx", "skyreels", "framepack", "hunyuan", "hug-video"}


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("genmill-models")
    started = time.perf_counter()
    for build in (
        video_tiny.build_wan,
        video_tiny.build_hunyuan,
        video_tiny.build_hunyuan_i2v,
        video_tiny.build_framepack,
    ):
        build(root)
    print(f"\ntiny video models built in {time.perf_counter() - started:.2f}s")
    return root


@pytest.fixture(scope="module")
def backends(models_dir: Path) -> Iterator[dict[str, VideoBackend]]:
    shared = VideoShared(device="cpu")
    found: dict[str, VideoBackend] = {v: WanBackend(v, models_dir, geometry=TINY, shared=shared) for v in VARIANTS}
    for variant in ("hunyuan-t2v", "hunyuan-i2v-concat", "hunyuan-i2v-replace"):
        found[variant] = HunyuanBackend(variant, models_dir, geometry=TINY, shared=shared)
    found["framepack"] = HunyuanBackend(
        "framepack", models_dir, geometry=FRAMEPACK_TINY, shared=shared, latent_window_size=2
    )
    for backend in found.values():
        availability = backend.availability()
        assert availability.ok, availability.reason
        assert backend.device == "cpu" and backend.memory_bytes > 0
    yield found


def picture(width: int = 40, height: int = 30, colour: tuple[int, int, int] = (40, 90, 160)) -> str:
    image = Image.new("RGB", (width, height), colour)
    ImageDraw.Draw(image).ellipse((8, 6, 30, 28), fill=(230, 200, 40))
    return image_ref(image)


def run(
    backend: VideoBackend, task_type: str, *, ctx: MemoryRunContext | None = None, **fields: Any
) -> tuple[bytes, MemoryRunContext]:
    """Validate `fields` with the catalog's own input model, run the task, and return the MP4's bytes."""
    entry = CATALOG.get(backend.model, task_type)
    assert entry is not None
    inputs = entry.input_model.model_validate(fields)
    ctx = ctx or MemoryRunContext()
    output = backend.run(entry, inputs, ctx)
    assert set(output) == {"video_url"}
    saved = ctx.outputs[output["video_url"]]
    data, content_type = saved.data, saved.content_type
    assert content_type == "video/mp4" and output["video_url"].endswith(".mp4")
    return data, ctx


def decoded(data: bytes, tmp_path: Path) -> tuple[int, int, int, str]:
    path = tmp_path / f"clip-{len(list(tmp_path.iterdir()))}.mp4"
    path.write_bytes(data)
    info = probe(path, "output")
    return info.width, info.height, info.frames, info.codec


PROMPT = "a red fox on green grass"
CASES: list[tuple[str, str, dict[str, Any], tuple[int, int, int]]] = [
    ("wan21-t2v-1.3b", "txt2video-1.3b", {"prompt": PROMPT}, (32, 16, 5)),
    ("wan21-t2v-14b", "txt2video-14b", {"prompt": PROMPT, "aspect_ratio": "9:16"}, (16, 32, 5)),
    (
        "wan21-t2v-14b",
        "txt2video-14b-lora",
        {"prompt": PROMPT, "lora_settings": [{"lora_type": "tiny-style"}]},
        (32, 16, 5),
    ),
    ("wan21-i2v-14b", "img2video-14b", {"prompt": PROMPT, "image": picture()}, (32, 16, 5)),
    (
        "wan21-i2v-14b",
        "img2video-14b-lora",
        {"prompt": PROMPT, "image": picture(), "lora_settings": [{"lora_type": "tiny-style", "lora_strength": 0.5}]},
        (32, 16, 5),
    ),
    (
        "wan21-flf2v-14b",
        "img2video-14b-keyframe",
        {"prompt": PROMPT, "first_frame": picture(), "last_frame": picture(colour=(200, 30, 30))},
        (32, 16, 5),
    ),
    ("wan22-t2v-a14b", "wan22-txt2video-14b", {"prompt": PROMPT}, (48, 32, 5)),
    ("wan22-t2v-a14b", "wan22-txt2video-14b", {"prompt": PROMPT, "video_resolution": "480p"}, (32, 16, 5)),
    (
        "wan22-i2v-a14b",
        "wan22-img2video-14b",
        {"prompt": PROMPT, "image": picture(), "aspect_ratio": "9:16"},
        (32, 48, 5),
    ),
    ("skyreels-v2-i2v", "img2video", {"prompt": PROMPT, "image": picture(), "aspect_ratio": "1:1"}, (16, 16, 5)),
    ("hug-wan21-i2v", "image_to_video", {"image_url": picture(20, 40)}, (16, 32, 5)),
    ("hunyuan-t2v", "txt2video", {"prompt": PROMPT, "aspect_ratio": "1:1"}, (16, 16, 5)),
    ("hunyuan-t2v", "fast-txt2video", {"prompt": PROMPT, "negative_prompt": "blue sky"}, (32, 16, 5)),
    ("hunyuan-t2v", "txt2video-lora", {"prompt": PROMPT, "lora_settings": [{"lora_type": "tiny-style"}]}, (32, 16, 5)),
    ("hunyuan-i2v-concat", "img2video-concat", {"prompt": PROMPT, "image": picture()}, (32, 16, 5)),
    (
        "hunyuan-i2v-replace",
        "img2video-replace",
        {"prompt": PROMPT, "image": picture(), "aspect_ratio": "9:16"},
        (16, 32, 5),
    ),
    ("framepack", "img2video", {"prompt": PROMPT, "start_image": picture(64, 32), "duration": 10}, (64, 32, 10)),
    (
        "framepack",
        "img2video",
        {"prompt": PROMPT, "start_image": picture(30, 40), "end_image": picture(colour=(9, 9, 9)), "duration": 12},
        (64, 64, 12),
    ),
]


# --- availability ------------------------------------------------------------------------------------------------


def test_each_present_folder_becomes_a_backend(models_dir: Path, backends: dict[str, VideoBackend]) -> None:
    found = model_backends(models_dir)
    stand_ins = {"kling-wan", "hailuo-wan", "luma-wan"}  # tests/backends/test_video_services.py
    upstream_only = {"kling-effects", "kling-ai_try_on", "kling-lip_sync"}
    assert {b.name for b in found} == {*backends, "wan21-control-camera", *stand_ins, *upstream_only}
    served = {key for b in found if b.availability().ok and b.name not in stand_ins for key in b.entries}
    video = {entry.key for entry in CATALOG if entry.family in VIDEO_FAMILIES}
    assert served == video - {(WANX, "img2video-14b-control-camera")}
    assert {(backends[name].model, task_type) for name, task_type, _, _ in CASES} == served
    assert model_backends(models_dir / "nothing-here") == []


def test_availability_names_what_is_wrong(tmp_path: Path, models_dir: Path) -> None:
    reason = WanBackend("wan21-t2v-14b", tmp_path).availability().reason
    assert str(tmp_path / "wan2.1-t2v-14b") in reason and "Wan2.1-T2V-14B" in reason
    # An image-to-video folder where the replace kind is expected, and a plain I2V folder for the keyframe model.
    (tmp_path / "hunyuanvideo-i2v-replace").symlink_to(models_dir / "hunyuanvideo-i2v-concat")
    reason = HunyuanBackend("hunyuan-i2v-replace", tmp_path).availability().reason
    assert "image_condition_type 'latent_concat', not 'token_replace'" in reason
    (tmp_path / "wan2.1-flf2v-14b").symlink_to(models_dir / "wan2.1-i2v-14b")
    assert "first-last-frame" in WanBackend("wan21-flf2v-14b", tmp_path).availability().reason
    (tmp_path / "framepack").symlink_to(models_dir / "hunyuanvideo")
    assert "not a HunyuanVideoFramepackPipeline" in HunyuanBackend("framepack", tmp_path).availability().reason


def test_genmill_models_says_why_camera_control_is_not_served(
    models_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from genmill.cli import cmd_models

    (tmp_path / "genmill-models").mkdir()
    (tmp_path / "genmill-models" / "wan2.1-t2v-1.3b").symlink_to(models_dir / "wan2.1-t2v-1.3b")
    monkeypatch.chdir(tmp_path)
    assert cmd_models(None) == 0  # type: ignore[arg-type]
    lines = capsys.readouterr().out.splitlines()
    (camera,) = [line for line in lines if "img2video-14b-control-camera" in line]
    assert camera.startswith("missing") and CAMERA_REASON in camera
    (small,) = [line for line in lines if "txt2video-1.3b" in line]
    assert small.startswith("available")


# --- every task type ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("variant", "task_type", "fields", "expected"), CASES, ids=lambda v: v if isinstance(v, str) else ""
)
def test_every_task_type_makes_a_real_mp4(
    backends: dict[str, VideoBackend],
    tmp_path: Path,
    variant: str,
    task_type: str,
    fields: dict[str, Any],
    expected: tuple[int, int, int],
) -> None:
    data, ctx = run(backends[variant], task_type, **fields, seed=3)
    width, height, frames, codec = decoded(data, tmp_path)
    assert (width, height, frames) == expected and codec == "h264"
    assert ctx.fractions == sorted(ctx.fractions) and ctx.fractions[-1] == 1.0
    assert any(note.startswith("step 1/") for note in ctx.notes)


# --- seeds, LoRAs, approximations, cancellation --------------------------------------------------------------------


def test_same_seed_same_video_other_seed_differs(backends: dict[str, VideoBackend]) -> None:
    first, ctx = run(backends["wan21-t2v-1.3b"], "txt2video-1.3b", prompt=PROMPT, seed=7)
    again, _ = run(backends["wan21-t2v-1.3b"], "txt2video-1.3b", prompt=PROMPT, seed=7)
    other, _ = run(backends["wan21-t2v-1.3b"], "txt2video-1.3b", prompt=PROMPT, seed=8)
    assert first == again and first != other
    assert ctx.notes[-1] == "done, seed 7"
    drawn, ctx2 = run(backends["wan21-t2v-1.3b"], "txt2video-1.3b", prompt=PROMPT)
    seed = int(ctx2.notes[-1].rsplit(" ", 1)[1])
    assert run(backends["wan21-t2v-1.3b"], "txt2video-1.3b", prompt=PROMPT, seed=seed)[0] == drawn


@pytest.mark.parametrize(("variant", "plain"), [("wan21-t2v-14b", "txt2video-14b"), ("hunyuan-t2v", "txt2video")])
def test_lora_changes_the_video_and_never_leaks(backends: dict[str, VideoBackend], variant: str, plain: str) -> None:
    backend = backends[variant]
    lora = {"lora_type": "tiny-style", "lora_strength": 1.0}
    base, _ = run(backend, plain, prompt=PROMPT, seed=5)
    styled, ctx = run(backend, f"{plain}-lora", prompt=PROMPT, seed=5, lora_settings=[lora])
    muted, _ = run(backend, f"{plain}-lora", prompt=PROMPT, seed=5, lora_settings=[{**lora, "lora_strength": 0.0}])
    after, _ = run(backend, plain, prompt=PROMPT, seed=5)
    assert styled != base and muted == base and after == base
    assert any("tiny-style x1" in line for line in ctx.logs)
    with pytest.raises(BackendError, match=r"lora_settings\[0\]\.lora_type: no LoRA named 'nope'.*tiny-style"):
        run(backend, f"{plain}-lora", prompt=PROMPT, lora_settings=[{"lora_type": "nope"}])


def test_approximations_say_so(backends: dict[str, VideoBackend]) -> None:
    _, hug = run(backends["hug-wan21-i2v"], "image_to_video", image_url=picture(), seed=1)
    assert any("no open hug model" in line and "fixed hug prompt" in line for line in hug.logs)
    _, fast = run(backends["hunyuan-t2v"], "fast-txt2video", prompt=PROMPT, seed=1)
    assert any(line.startswith("fast: 1 denoising steps instead of 2") for line in fast.logs)
    assert [n for n in fast.notes if n.startswith("step ")] == ["step 1/1, seed 1"]
    _, pack = run(backends["framepack"], "img2video", prompt=PROMPT, start_image=picture(), duration=10, seed=1)
    assert [n for n in pack.notes if n.startswith("step ")][-1] == "step 4/4, seed 1"  # 2 sections x 2 steps


def test_cancellation_stops_between_steps(backends: dict[str, VideoBackend]) -> None:
    ctx = MemoryRunContext(cancel_when=after_steps(1))
    with pytest.raises(BackendError, match="cancelled"):
        run(backends["wan22-t2v-a14b"], "wan22-txt2video-14b", ctx=ctx, prompt=PROMPT, seed=1)
    assert [note for note in ctx.notes if note.startswith("step ")] == ["step 1/2, seed 1"]
    assert ctx.outputs == {}


def test_bad_inputs_fail_naming_the_field(backends: dict[str, VideoBackend]) -> None:
    entry = CATALOG.get(WANX, "img2video-14b")
    assert entry is not None
    with pytest.raises(BackendError, match="task_type"):
        backends["wan21-t2v-1.3b"].run(
            entry, entry.input_model.model_validate({"prompt": "x", "image": picture()}), MemoryRunContext()
        )
    with pytest.raises(BackendError, match="image: not a decodable image"):
        run(backends["wan21-i2v-14b"], "img2video-14b", prompt=PROMPT, image="aGVsbG8gd29ybGQ=")


@pytest.mark.parametrize(
    ("variant", "task_type", "guidance", "true_cfg"),
    [("hunyuan-i2v-replace", "img2video-replace", 6.0, None), ("hunyuan-i2v-concat", "img2video-concat", 1.0, 1.0)],
)
def test_hunyuan_i2v_guidance_follows_the_condition_type(
    backends: dict[str, VideoBackend], variant: str, task_type: str, guidance: float, true_cfg: float | None
) -> None:
    """diffusers' example runs the token_replace checkpoint at guidance 6.0 and the latent_concat one at 1.0 with
    true CFG 1.0; the pipeline must receive exactly those."""
    backend = backends[variant]
    entry = CATALOG.get(backend.model, task_type)
    assert entry is not None
    backend.load()
    inputs = entry.input_model.model_validate({"prompt": PROMPT, "image": picture()})
    job = backend.job(entry, inputs, MemoryRunContext(), backend._pipe)
    assert job.kwargs["guidance_scale"] == guidance
    assert job.kwargs.get("true_cfg_scale") == true_cfg
    assert f"guidance {guidance:g}" in " ".join(job.notes)
    negative = entry.input_model.model_validate({"prompt": PROMPT, "image": picture(), "negative_prompt": "blue"})
    assert backend.job(entry, negative, MemoryRunContext(), backend._pipe).kwargs["true_cfg_scale"] == 1.5


def test_wan_first_last_frame_model_runs_at_its_native_720p(tmp_path: Path) -> None:
    """Wan2.1-FLF2V-14B-720P is a 720p model: 1280x720 (or 720x1280), 81 frames at 16 fps, not Wan 2.1's 480p."""
    backend = WanBackend("wan21-flf2v-14b", tmp_path)
    assert backend.geometry.sizes == {"720p": {"16:9": (1280, 720), "9:16": (720, 1280)}}
    assert (backend.geometry.frames, backend.geometry.fps) == (81, 16)
    entry = CATALOG.get(WANX, "img2video-14b-keyframe")
    assert entry is not None
    for aspect, size in (("16:9", (1280, 720)), ("9:16", (720, 1280))):
        fields = {"prompt": PROMPT, "first_frame": picture(), "last_frame": picture(), "aspect_ratio": aspect}
        job = backend.job(entry, entry.input_model.model_validate(fields), MemoryRunContext(), None)
        assert (job.kwargs["width"], job.kwargs["height"]) == size
        assert job.kwargs["image"].size == job.kwargs["last_image"].size == size
        assert (job.kwargs["num_frames"], job.frames, job.fps) == (81, 81, 16)
