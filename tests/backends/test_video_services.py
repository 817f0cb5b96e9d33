"""The Wan stand-ins for Kling, Hailuo and Luma on tiny random Wan models (`video_tiny`), offline.

Every task runs through the backend's `run` with an in-memory context, through the real diffusers pipelines, and
its MP4 is decoded again. The clips are noise, so what is measured is what the stand-in controls: each service's
output shape, frame counts and sizes, the image each Wan pass is conditioned on (PSNR against the given image,
or against the frame a chained segment or an extension continues from), and an extended video's first part
against its origin.
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from numpy.typing import NDArray
from PIL import Image, ImageDraw

os.environ.setdefault("HF_HUB_OFFLINE", "1")
pytest.importorskip("diffusers")
pytest.importorskip("ftfy")

from tests.backends import video_tiny
from tests.backends.memory import after_steps, image_ref

from genmill.backends.registry import why_not_served
from genmill.backends.video_io import decode_frames
from genmill.catalog import build_catalog
from genmill.domain.catalog import CatalogEntry, TaskInput
from genmill.domain.records import InputFile, OriginTask
from genmill.errors import BackendError, InputRejected
from genmill.models.video import services
from genmill.models.video.pipeline import Clip, Geometry, Job, VideoShared, cover
from genmill.models.video.service_shapes import MOTION_PROMPT
from genmill.models.video.services import SERVICES, WanServiceBackend, service_backends
from genmill.models.video.wan import WanBackend
from genmill.testing import MemoryRunContext
from genmill.worker.backendset import BackendSet, StandIns

pytestmark = [pytest.mark.backends]

CATALOG = build_catalog()
SEGMENT = Geometry({"480p": {"16:9": (32, 16), "9:16": (16, 32)}}, frames=21, fps=4, steps=2)
"""One toy Wan pass: 21 frames at 4 fps, 5 s, so a 5 s task is one pass and a 10 s one two, as at full size."""
PROMPT = "a red fox on green grass"
WAN_FOLDERS = ("wan2.1-t2v-14b", "wan2.1-i2v-14b", "wan2.1-flf2v-14b")


def picture(width: int = 40, height: int = 30, colour: tuple[int, int, int] = (40, 90, 160)) -> Image.Image:
    image = Image.new("RGB", (width, height), colour)
    ImageDraw.Draw(image).ellipse((8, 6, 30, 28), fill=(230, 200, 40))
    return image


def psnr(a: NDArray[np.uint8], b: NDArray[np.uint8]) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


def matches(decoded: NDArray[np.uint8], raw: NDArray[np.uint8]) -> float:
    """The mean PSNR of a decoded clip against the frames that were encoded. The toy clips are smooth noise, which
    H.264 keeps at these tiny sizes only to about 25 dB (measured: 25.0 dB; the same frames in reverse order
    20.2 dB, unrelated noise 10.1 dB), so 23 dB says "these frames, in this order"."""
    assert decoded.shape == raw.shape
    return float(np.mean([psnr(a, b) for a, b in zip(decoded, raw, strict=True)]))


def pixels(image: Image.Image) -> NDArray[np.uint8]:
    return np.asarray(image.convert("RGB"), dtype=np.uint8)


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("genmill-models")
    video_tiny.build_wan(root)
    return root


@pytest.fixture(scope="module")
def backends(models_dir: Path) -> dict[str, WanServiceBackend]:
    shared = VideoShared(device="cpu")
    found = {s.name: WanServiceBackend(s, models_dir, shared=shared, geometry=SEGMENT) for s in SERVICES}
    for backend in found.values():
        availability = backend.availability()
        assert availability.ok, availability.reason
    return found


Pass = tuple[str, dict[str, Any]]


@pytest.fixture
def passes(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Pass]]:
    """Every Wan pass the stand-ins make: the wanx task type and the pipeline's keyword arguments."""
    seen: list[Pass] = []
    original = WanBackend.job

    def recording(self: WanBackend, entry: CatalogEntry, inputs: TaskInput, ctx: Any, pipe: Any) -> Job:
        job = original(self, entry, inputs, ctx, pipe)
        seen.append((entry.task_type, job.kwargs))
        return job

    monkeypatch.setattr(WanBackend, "job", recording)
    yield seen


@pytest.fixture
def made(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[NDArray[np.uint8]]]:
    """The frames of every Wan pass, as the pipeline made them (before H.264)."""
    seen: list[NDArray[np.uint8]] = []
    original = WanBackend.render

    def recording(self: WanBackend, *args: Any, **kwargs: Any) -> Clip:
        clip = original(self, *args, **kwargs)
        seen.append(clip.frames)
        return clip

    monkeypatch.setattr(WanBackend, "render", recording)
    yield seen


def run(
    backend: WanServiceBackend, model: str, task_type: str, /, *, ctx: MemoryRunContext | None = None, **fields: Any
) -> tuple[dict[str, Any], MemoryRunContext]:
    entry = CATALOG.get(model, task_type)
    assert entry is not None
    ctx = ctx or MemoryRunContext()
    fields.setdefault("seed", 7)  # an extra field every service keeps; the stand-ins honour it, so runs repeat
    return backend.run(entry, entry.input_model.model_validate(fields), ctx), ctx


def frames(ctx: MemoryRunContext, url: str) -> NDArray[np.uint8]:
    decoded, fps = decode_frames(ctx.output(url), field="output")
    assert fps == SEGMENT.fps
    return decoded


def still(ctx: MemoryRunContext, url: str) -> NDArray[np.uint8]:
    assert ctx.outputs[url].content_type == "image/png"
    return pixels(Image.open(io.BytesIO(ctx.output(url))))


# --- output shapes ---------------------------------------------------------------------------------------------


def test_kling_text_to_video_has_kling_s_works_shape(
    backends: dict[str, WanServiceBackend], made: list[NDArray[np.uint8]]
) -> None:
    output, ctx = run(backends["kling-wan"], "kling", "video_generation", prompt=PROMPT)
    assert output["status"] == 99 and output["type"] == "m2v_txt2video"
    (work,) = output["works"]
    video, cover = work["video"], work["cover"]
    assert set(video) == set(cover) == {"resource", "resource_without_watermark", "w", "h", "duration"}
    assert video["resource"] == video["resource_without_watermark"] == output["video_url"]
    assert (video["w"], video["h"], video["duration"]) == (32, 16, 5250)  # 21 frames at 4 fps
    clip = frames(ctx, video["resource"])
    assert clip.shape == (21, 16, 32, 3)
    (raw,) = made
    assert matches(clip, raw) > 23
    assert psnr(still(ctx, cover["resource"]), raw[0]) == float("inf")  # the cover is the first frame


def test_a_ten_second_kling_clip_chains_two_wan_passes(
    backends: dict[str, WanServiceBackend], passes: list[Pass], made: list[NDArray[np.uint8]]
) -> None:
    output, ctx = run(
        backends["kling-wan"], "kling", "video_generation", prompt=PROMPT, duration=10, aspect_ratio="9:16"
    )
    clip = frames(ctx, output["video_url"])
    assert clip.shape == (41, 32, 16, 3)  # 21 + 20: the second pass's first frame repeats the first's last
    assert output["works"][0]["video"]["duration"] == round(41 / 4 * 1000)
    assert [task_type for task_type, _ in passes] == ["txt2video-14b", "img2video-14b"]
    first, second = made
    assert psnr(pixels(passes[1][1]["image"]), first[-1]) == float("inf")  # starts where the first pass ended
    assert matches(clip, np.concatenate([first, second[1:]])) > 23


def test_luma_output_has_video_thumbnail_and_last_frame(
    backends: dict[str, WanServiceBackend], made: list[NDArray[np.uint8]]
) -> None:
    output, ctx = run(backends["luma-wan"], "luma", "video_generation", prompt=PROMPT, aspect_ratio="9:16")
    for key in ("video", "video_raw", "thumbnail", "last_frame"):
        assert (output[key]["width"], output[key]["height"]) == (16, 32)
    assert output["internal_state"] == "completed" and output["prompt"] == PROMPT
    clip = frames(ctx, output["video"]["url"])
    assert clip.shape == (21, 32, 16, 3)
    (raw,) = made
    assert matches(clip, raw) > 23
    assert psnr(still(ctx, output["thumbnail"]["url"]), raw[0]) == float("inf")
    assert psnr(still(ctx, output["last_frame"]["url"]), raw[-1]) == float("inf")


def test_hailuo_output_has_hailuo_s_fields(backends: dict[str, WanServiceBackend]) -> None:
    image = image_ref(picture())
    output, ctx = run(backends["hailuo-wan"], "hailuo", "video_generation", model="i2v-01", image_url=image)
    assert (output["status"], output["percent"], output["model_id"]) == (2, 100, "i2v-01")
    assert output["video_url"] == output["download_url"] and output["prompt_img_url"] == image
    assert (output["width"], output["height"]) == (32, 16)
    assert output["desc"] == MOTION_PROMPT  # no prompt given: Wan animates with the neutral one
    assert frames(ctx, output["video_url"]).shape == (21, 16, 32, 3)


# --- conditioning: images, end frames, extensions ------------------------------------------------------------


@pytest.mark.parametrize(
    ("service", "model", "fields"),
    [
        ("kling-wan", "kling", {"prompt": PROMPT, "image_url": "IMAGE"}),
        ("kling-wan", "kling-turbo", {"prompt": PROMPT, "image_url": "IMAGE"}),
        ("hailuo-wan", "hailuo", {"model": "i2v-01-live", "image_url": "IMAGE"}),
        ("luma-wan", "luma", {"prompt": PROMPT, "start_image": "IMAGE"}),
        ("luma-wan", "luma", {"prompt": PROMPT, "key_frames": {"frame0": {"type": "image", "url": "IMAGE"}}}),
    ],
)
def test_image_to_video_starts_from_the_given_image(
    backends: dict[str, WanServiceBackend],
    passes: list[Pass],
    service: str,
    model: str,
    fields: dict[str, Any],
) -> None:
    given = picture(60, 30)  # 2:1, nearest 16:9: covered to 32x16
    filled: dict[str, Any] = {k: (image_ref(given) if v == "IMAGE" else v) for k, v in fields.items()}
    if "key_frames" in fields:
        filled["key_frames"] = {"frame0": {"type": "image", "url": image_ref(given)}}
    run(backends[service], model, "video_generation", **filled)
    ((task_type, kwargs),) = passes
    assert task_type == "img2video-14b" and (kwargs["width"], kwargs["height"]) == (32, 16)
    expected = pixels(given.resize((32, 16), Image.Resampling.LANCZOS))
    assert psnr(pixels(kwargs["image"]), expected) > 35


def test_an_end_frame_runs_wan_first_last_frame(backends: dict[str, WanServiceBackend], passes: list[Pass]) -> None:
    first, last = picture(40, 30), picture(40, 30, colour=(200, 30, 30))
    output, _ = run(
        backends["kling-wan"],
        "kling",
        "video_generation",
        prompt=PROMPT,
        image_url=image_ref(first),
        image_tail_url=image_ref(last),
    )
    ((task_type, kwargs),) = passes
    assert task_type == "img2video-14b-keyframe"
    assert psnr(pixels(kwargs["last_image"]), pixels(cover(last, 32, 16))) > 35
    assert psnr(pixels(kwargs["image"]), pixels(cover(first, 32, 16))) > 35
    assert output["type"] == "m2v_img2video"


def origin_of(model: str, output: dict[str, Any], ctx: MemoryRunContext, url: str) -> MemoryRunContext:
    """A context for a derived task whose origin is the task that produced `output` in `ctx`."""
    origin = OriginTask("origin-1", model, "video_generation", {"prompt": PROMPT}, output, None, datetime.now(UTC))
    return MemoryRunContext(origin=origin, files={url: InputFile(ctx.output(url), "video/mp4")})


@pytest.mark.parametrize("model", ["kling", "luma"])
def test_extend_continues_from_where_the_origin_ended(
    backends: dict[str, WanServiceBackend], passes: list[Pass], model: str
) -> None:
    backend = backends[f"{model}-wan"]
    first, first_ctx = run(backend, model, "video_generation", prompt=PROMPT)
    url = first["video_url"] if model == "kling" else first["video"]["url"]
    origin = frames(first_ctx, url)
    fields: dict[str, Any] = {"origin_task_id": "origin-1"}
    if model == "luma":
        fields = {"prompt": "the fox runs", "key_frames": {"frame0": {"type": "generation", "id": "origin-1"}}}
    extended, ctx = run(backend, model, "extend_video", ctx=origin_of(model, first, first_ctx, url), **fields)
    url = extended["video_url"] if model == "kling" else extended["video"]["url"]
    clip = frames(ctx, url)
    assert clip.shape == (41, 16, 32, 3)  # the origin's 21 frames, then 20 new ones
    assert matches(clip[:21], origin) > 23  # the origin, frame by frame
    task_type, kwargs = passes[-1]
    assert task_type == "img2video-14b"
    assert psnr(pixels(kwargs["image"]), origin[-1]) > 40  # conditioned on the origin's last frame, as decoded
    prompt = PROMPT if model == "kling" else "the fox runs"  # Kling's extend without a prompt keeps the origin's
    assert kwargs["prompt"] == prompt


# --- refusals and serving ------------------------------------------------------------------------------------


def rejection(backend: WanServiceBackend, model: str, task_type: str, /, **fields: Any) -> str:
    entry = CATALOG.get(model, task_type)
    assert entry is not None
    with pytest.raises(InputRejected) as info:
        backend.check_request(entry, entry.input_model.model_validate(fields))
    return str(info.value)


def test_what_wan_cannot_honour_is_refused_naming_the_field(
    backends: dict[str, WanServiceBackend], models_dir: Path, tmp_path: Path
) -> None:
    kling, image = backends["kling-wan"], image_ref(picture())
    assert rejection(kling, "kling", "video_generation", prompt="a", version="2.6", enable_audio=True).startswith(
        "enable_audio:"
    )
    elements = [{"image_url": image}]
    assert rejection(kling, "kling", "video_generation", prompt="a", elements=elements).startswith("elements:")
    assert rejection(
        backends["hailuo-wan"], "hailuo", "video_generation", model="s2v-01", prompt="a", image_url=image
    ).startswith("model: s2v-01")
    assert rejection(backends["luma-wan"], "luma", "video_generation", prompt="a", end_image=image).startswith(
        "end_image:"
    )
    for folder in WAN_FOLDERS[:2]:  # text- and image-to-video only: no first-last-frame model
        (tmp_path / folder).symlink_to(models_dir / folder)
    without = WanServiceBackend(SERVICES[0], tmp_path, geometry=SEGMENT)
    assert without.availability().ok
    reason = rejection(without, "kling", "video_generation", prompt="a", image_url=image, image_tail_url=image)
    assert reason.startswith("image_tail_url:") and "wan2.1-flf2v-14b" in reason
    entry = CATALOG.get("kling", "video_generation")
    assert entry is not None
    assert any("refused" in line for line in without.served_by(entry).limits)


def test_served_only_where_the_stand_in_is_enabled(backends: dict[str, WanServiceBackend]) -> None:
    kling = backends["kling-wan"]
    refused = BackendSet([kling], CATALOG)
    assert not refused.can_run("kling", "video_generation")
    assert "GENMILL_STAND_INS=kling-wan" in refused.why_not("kling", "video_generation")
    allowed = BackendSet([kling], CATALOG, stand_ins=StandIns.parse("kling-wan"))
    assert allowed.can_run("kling", "video_generation") and allowed.can_run("kling-turbo", "video_generation")
    served = allowed.served_by("kling", "extend_video")
    assert served is not None and served.stand_in and served.model.startswith("Wan (wan2.1-t2v-14b")
    assert any(line.startswith("stand-in for Kling:") for line in served.limits)
    assert any("camera_control" in line for line in served.limits)


def test_registry_lists_the_stand_ins_and_the_upstream_only_entries(models_dir: Path, tmp_path: Path) -> None:
    listed = service_backends(models_dir)
    assert [b.name for b in listed[:3]] == ["kling-wan", "hailuo-wan", "luma-wan"]
    unserved = {entry: b.availability().reason for b in listed[3:] for entry in b.entries}
    assert set(unserved) == {("kling", "effects"), ("kling", "ai_try_on"), ("kling", "lip_sync")}
    assert all("upstream" in reason and "not served locally" in reason for reason in unserved.values())
    assert service_backends(tmp_path) == []
    assert "GENMILL_UPSTREAM_MODELS" in why_not_served("kling", "lip_sync", tmp_path)
    assert "GENMILL_STAND_INS=luma-wan" in why_not_served("luma", "extend_video", tmp_path)


def test_a_luma_extend_may_end_on_an_image_and_kling_3_chains_three_passes(
    backends: dict[str, WanServiceBackend], passes: list[Pass]
) -> None:
    luma = backends["luma-wan"]
    first, first_ctx = run(luma, "luma", "video_generation", prompt=PROMPT)
    ctx = origin_of("luma", first, first_ctx, first["video"]["url"])
    end = picture(40, 30, colour=(200, 30, 30))
    frames_to = {"frame0": {"type": "generation", "id": "origin-1"}, "frame1": {"type": "image", "url": image_ref(end)}}
    run(luma, "luma", "extend_video", ctx=ctx, prompt="the fox runs", key_frames=frames_to)
    task_type, kwargs = passes[-1]
    assert task_type == "img2video-14b-keyframe"
    assert psnr(pixels(kwargs["last_image"]), pixels(cover(end, 32, 16))) > 35
    passes.clear()
    shots = [
        {"duration": 5, "prompt": "a fox"},
        {"duration": 5, "prompt": "it runs"},
        {"duration": 5, "prompt": "stop"},
    ]
    output, ctx = run(backends["kling-wan"], "kling", "video_generation", version="3.0", multi_shots=shots)
    assert [t for t, _ in passes] == ["txt2video-14b", "img2video-14b", "img2video-14b"]
    assert passes[0][1]["prompt"] == "a fox; it runs; stop"
    assert frames(ctx, output["video_url"]).shape[0] == 61  # 21 + 20 + 20


def test_cancellation_stops_the_stand_in_between_steps(backends: dict[str, WanServiceBackend]) -> None:
    ctx = MemoryRunContext(cancel_when=after_steps(1))
    with pytest.raises(BackendError, match="cancelled"):
        run(backends["kling-wan"], "kling", "video_generation", ctx=ctx, prompt=PROMPT, duration=10)
    assert not ctx.outputs


def test_an_undecodable_image_or_an_overlong_origin_is_refused_naming_the_field(
    backends: dict[str, WanServiceBackend], monkeypatch: pytest.MonkeyPatch
) -> None:
    kling = backends["kling-wan"]
    with pytest.raises(InputRejected, match=r"^image_url: not a decodable image"):
        run(kling, "kling", "video_generation", prompt=PROMPT, image_url="data:image/png;base64,bm90IGFuIGltYWdl")
    first, first_ctx = run(kling, "kling", "video_generation", prompt=PROMPT)
    monkeypatch.setattr(services, "MAX_ORIGIN_FRAMES", 10)
    ctx = origin_of("kling", first, first_ctx, first["video_url"])
    with pytest.raises(InputRejected, match=r"^origin_task_id: the video has 21 frames, more than 10"):
        run(kling, "kling", "extend_video", ctx=ctx, origin_task_id="origin-1")
