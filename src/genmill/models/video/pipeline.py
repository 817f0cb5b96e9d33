"""What the diffusers video backends (`wan`, `hunyuan`) share: output geometry, weight folders and their
availability, loading, step progress, LoRAs, and encoding the frames to MP4.

Each backend instance serves one model with one weight folder under the models folder, like the Flux backends,
so `genmill models` says exactly which entries have weights here. A subclass only turns a task's inputs into a
`Job` (the pipeline's keyword arguments, the frame count and rate); running the pipeline, reporting steps,
stopping on cancellation and saving `{"video_url": ...}` happen here, the same way for every video model.
torch and diffusers are imported inside functions only, so the registry can list these backends without them.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from PIL import Image

from genmill.backends.base import Availability, Backend, Prefetched, Resident, RunContext
from genmill.backends.diffusers_loading import (
    INSTALL_HINT,
    REQUIRED_PACKAGES,
    Placement,
    load_pipeline,
    plan_pipeline,
    read_model_index,
)
from genmill.backends.loras import LoraChoice, LoraState
from genmill.backends.memory_modes import is_out_of_memory
from genmill.backends.toolkit import StepCancelled, StepReporter, cancelled_error, pick_seed
from genmill.backends.video_io import encode_mp4, ffmpeg_availability
from genmill.domain.catalog import CatalogEntry, TaskInput
from genmill.domain.placement import MemoryPlan
from genmill.errors import BackendError

log = logging.getLogger("genmill.backends.video")

VIDEO_PACKAGES = (*REQUIRED_PACKAGES, "ftfy")
"""The diffusers backends' packages (as for Flux), and ftfy: the Wan-family pipelines clean every prompt with it."""


@dataclass(frozen=True)
class Geometry:
    """The clips a weight set makes: (width, height) by resolution and aspect ratio, frame count and rate.

    A setting of the backend rather than a constant, so that a deployment (or a test with toy weights) can ask
    for other sizes without touching the task code. Sizes must suit the model (multiples of 16 for every
    pipeline here) and be even, which H.264 in yuv420p needs.
    """

    sizes: Mapping[str, Mapping[str, tuple[int, int]]]
    frames: int
    fps: int
    steps: int

    def size(self, resolution: str, aspect_ratio: str) -> tuple[int, int]:
        by_aspect = self.sizes.get(resolution) or next(iter(self.sizes.values()))
        if aspect_ratio not in by_aspect:
            raise BackendError(f"aspect_ratio: {aspect_ratio!r} is not offered here ({', '.join(by_aspect)})")
        return by_aspect[aspect_ratio]

    def nearest(self, width: int, height: int) -> tuple[int, int]:
        """The size of the first (default) resolution whose aspect ratio is closest to an input image's, for inputs
        without an aspect_ratio."""
        options = list(next(iter(self.sizes.values())).values())
        return min(options, key=lambda s: abs(np.log((s[0] / s[1]) / (width / height))))


@dataclass(frozen=True)
class Weights:
    """One weight folder and the pipeline class that must be in it."""

    folder: str
    description: str
    """What to put there, e.g. "a diffusers-format Wan2.1-T2V-14B folder (Wan-AI/Wan2.1-T2V-14B-Diffusers)"."""
    pipeline_class: str


@dataclass
class Job:
    """One pipeline call: its keyword arguments and what the clip must be."""

    kwargs: dict[str, Any]
    frames: int
    fps: int
    steps_total: int
    loras: list[LoraChoice] | None = None
    """None: the pipeline serves no LoRAs in this task (any loaded adapter is switched off)."""
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Clip:
    """Generated frames (frames x height x width x 3, uint8 RGB), their rate, and the seed that made them."""

    frames: NDArray[np.uint8]
    fps: int
    seed: int


class VideoShared:
    """State every video backend of one worker shares: one lock (one accelerator runs one denoising loop at a
    time), the placement (device, dtypes, memory plans), and pipelines loaded once per folder even when two
    backends generate from it (AI Hug and Wan I2V), freed when the last backend using one lets go."""

    def __init__(self, device: str | None = None, *, placement: Placement | None = None) -> None:
        """`placement` says where and how models load; `device` alone ("cpu", "cuda:N") is a shorthand for a
        placement with default memory plans. Neither: the first GPU when there is one."""
        self.lock = threading.RLock()
        self.placement = placement or Placement(device or "auto")
        self.pipes: dict[tuple[str, Path], Any] = {}
        self.holders: dict[tuple[str, Path], set[int]] = {}
        self.loras: dict[int, LoraState] = {}

    def pipeline(
        self, class_name: str, path: Path, holder: object, plan: MemoryPlan, fp32_parts: tuple[str, ...] = ()
    ) -> Any:
        """The pipeline of `path`, loaded on first use. Callers hold `lock`."""
        key = (class_name, path)
        if key not in self.pipes:
            self.pipes[key] = load_pipeline(class_name, path, self.placement, plan, fp32_parts=fp32_parts)
        self.holders.setdefault(key, set()).add(id(holder))
        return self.pipes[key]

    def release(self, class_name: str, path: Path, holder: object) -> None:
        """Forget a backend's use of a pipeline; the last one to let go drops it (the model cache then empties
        the device's allocator)."""
        key = (class_name, path)
        holders = self.holders.get(key, set())
        holders.discard(id(holder))
        if not holders and key in self.pipes:
            pipe = self.pipes.pop(key)
            self.loras.pop(id(getattr(pipe, "transformer", None)), None)

    def lora_state(self, pipe: Any) -> LoraState:
        return self.loras.setdefault(id(pipe.transformer), LoraState())


class VideoSteps(StepReporter):
    """The shared step reporter counting calls instead of trusting the pipeline's step index, because FramePack
    restarts its loop for every section of the clip: progress covers `total` steps over all sections."""

    def __init__(self, ctx: RunContext, seed: int) -> None:
        super().__init__(ctx, seed)
        self.total = 1
        self.done = 0

    def __call__(self, pipe: Any, step: int, timestep: Any, tensors: dict[str, Any]) -> dict[str, Any]:
        self.done += 1
        total = max(self.total, self.done)
        note = f"step {self.done}/{total}, seed {self.seed}"
        self.ctx.progress(self.start + (self.end - self.start) * self.done / total, note=note)
        if self.done == total or self.done % max(1, total // 10) == 0:
            self.ctx.log(f"step {self.done}/{total}")
        if self.ctx.cancelled():
            raise StepCancelled
        return {}


def video_frames(result: Any) -> NDArray[np.uint8]:
    """The first clip of a pipeline result (output_type "np": frames x height x width x 3 floats in [0, 1])."""
    frames = np.asarray(result.frames[0], dtype=np.float32)
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise BackendError("the pipeline returned no video frames", raw_message=f"shape {frames.shape}")
    return np.asarray((np.clip(frames, 0.0, 1.0) * 255).round(), dtype=np.uint8)


class VideoBackend(Backend):
    """One video model with one weight folder; subclasses implement `job` (and may check more in `check`)."""

    label = "video"
    """Words for error messages: "the Wan pipeline could not run these inputs"."""
    media_fields: tuple[str, ...] = ()
    """Input fields holding images, fetched before the shared lock is taken."""
    fp32_parts: tuple[str, ...] = ()
    """Components loaded in float32 whatever the weights' dtype (the Wan VAE and image encoder)."""

    def __init__(
        self,
        model: str,
        task_types: tuple[str, ...],
        weights: Weights,
        models_dir: Path,
        geometry: Geometry,
        *,
        shared: VideoShared | None = None,
        loras_folder: str | None = None,
        name: str,
    ) -> None:
        self.model = model
        self.entries = tuple((model, task_type) for task_type in task_types)
        self.weights = weights
        self.models_dir = models_dir
        self.path = models_dir / weights.folder
        self.loras_dir = models_dir / loras_folder if loras_folder else None
        self.geometry = geometry
        self.shared = shared or VideoShared()
        self.name = name
        self.requirements = VIDEO_PACKAGES
        self._pipe: Any = None
        self._residents: list[Resident] = []
        self.plan: MemoryPlan | None = None

    # --- availability and loading -----------------------------------------------------------------------------

    def availability(self) -> Availability:
        missing = [name for name in VIDEO_PACKAGES if importlib.util.find_spec(name) is None]
        if missing:
            return Availability(False, f"{', '.join(missing)} not installed: {INSTALL_HINT}")
        ffmpeg = ffmpeg_availability()
        if not ffmpeg.ok:
            return ffmpeg
        if not (self.path / "model_index.json").is_file():
            return Availability(
                False, f"weights for {self.model} not found at {self.path}; put {self.weights.description} there"
            )
        found, incomplete = read_model_index(self.path)
        if found != self.weights.pipeline_class:
            return Availability(False, f"{self.path} holds a {found}, not a {self.weights.pipeline_class}")
        if incomplete:
            return Availability(False, f"{self.path} is incomplete: its {', '.join(incomplete)} folder(s) are missing")
        reason = self.check()
        if reason:
            return Availability(False, reason)
        memory = plan_pipeline(
            self.shared.placement, (self.name, self.weights.folder), self.path, self.weights.pipeline_class, video=True
        )
        self.device, self.plan, self._residents = memory.device, memory.plan, list(memory.residents)
        self.working_bytes, self.memory_bytes = memory.working_bytes, memory.device_bytes
        return Availability(True)

    def residents(self) -> list[Resident]:
        return list(self._residents)

    def memory_note(self) -> str:
        return self.shared.placement.describe(self.plan)

    def check(self) -> str:
        """A reason the folder cannot serve this backend's task types, or "" (read from configs, never loaded)."""
        return ""

    def transformer_config(self) -> dict[str, Any]:
        try:
            config = json.loads((self.path / "transformer" / "config.json").read_text())
        except (OSError, ValueError):
            return {}
        return config if isinstance(config, dict) else {}

    def load(self) -> None:
        if self.plan is None and not self.availability().ok:  # loaded without asking first (tools, tests)
            raise BackendError(self.availability().reason)
        assert self.plan is not None
        with self.shared.lock:
            if self._pipe is None:
                self._pipe = self.shared.pipeline(
                    self.weights.pipeline_class, self.path, self, self.plan, self.fp32_parts
                )
                self.prepare(self._pipe)

    def prepare(self, pipe: Any) -> None:
        """Adjust a freshly loaded pipeline (e.g. VAE tiling on a GPU); nothing by default."""

    def unload(self) -> None:
        with self.shared.lock:
            if self._pipe is not None:
                self._pipe = None
                self.shared.release(self.weights.pipeline_class, self.path, self)

    # --- running ----------------------------------------------------------------------------------------------

    def job(self, entry: CatalogEntry, inputs: TaskInput, ctx: RunContext, pipe: Any) -> Job:
        """The pipeline call for one task; raises BackendError naming the field for inputs it cannot serve."""
        raise NotImplementedError

    def run(self, entry: CatalogEntry, inputs: TaskInput, ctx: RunContext) -> dict[str, Any]:
        clip = self.render(entry, inputs, ctx)
        data = encode_mp4(clip.frames, clip.fps, ctx)
        url = ctx.save_output(data, ext="mp4", content_type="video/mp4")
        ctx.progress(1.0, note=f"done, seed {clip.seed}")
        return {"video_url": url}

    def render(
        self, entry: CatalogEntry, inputs: TaskInput, ctx: RunContext, *, span: tuple[float, float] = (0.05, 0.95)
    ) -> Clip:
        """The task's frames, not yet encoded: what `run` saves, and what services that chain clips (an extended
        video, a clip longer than one pass) build on. Progress covers `span` of the task."""
        if entry.key not in self.entries:
            raise BackendError(f"task_type: {self.name} does not run {entry.model} {entry.task_type}")
        import torch

        seed = pick_seed(inputs)
        reporter = VideoSteps(ctx, seed)
        reporter.start, reporter.end = span
        reporter.check()
        ctx = Prefetched(ctx, ((name, getattr(inputs, name, None)) for name in self.media_fields))
        self.load()
        with self.shared.lock:
            reporter.check()
            pipe = self._pipe
            job = self.job(entry, inputs, ctx, pipe)
            width, height = job.kwargs["width"], job.kwargs["height"]
            ctx.log(
                f"{self.model} {entry.task_type}: {width}x{height}, {job.frames} frames at {job.fps} fps, seed {seed}"
            )
            for note in job.notes:
                ctx.log(note)
            self._loras(pipe, job, ctx)
            reporter.total = job.steps_total
            kwargs = {**job.kwargs, "generator": torch.Generator("cpu").manual_seed(seed)}
            kwargs.update(callback_on_step_end=reporter, output_type="np")
            started = time.perf_counter()
            try:
                frames = video_frames(pipe(**kwargs))
            except StepCancelled:
                raise cancelled_error() from None
            except BackendError:
                raise
            except (ValueError, RuntimeError, TypeError) as exc:  # diffusers' input checks, torch's shape errors
                if is_out_of_memory(exc):
                    raise  # the worker frees memory and retries; not the inputs' fault
                raise BackendError(
                    f"the {self.label} pipeline could not run these inputs", raw_message=f"{exc}"
                ) from exc
            ctx.log(f"generated {len(frames)} frames in {time.perf_counter() - started:.1f}s")
        if len(frames) > job.frames:
            # FramePack generates whole sections; keep evenly spaced frames, so both ends and the length stay.
            frames = frames[np.linspace(0, len(frames) - 1, job.frames).round().astype(int)]
        elif len(frames) < job.frames:
            ctx.log(f"the pipeline made {len(frames)} of {job.frames} frames")
        reporter.check()
        return Clip(frames, job.fps, seed)

    def _loras(self, pipe: Any, job: Job, ctx: RunContext) -> None:
        state = self.shared.lora_state(pipe)
        if job.loras is None:
            state.off()
        else:
            state.apply(pipe, job.loras, ctx)


def cover(image: Image.Image, width: int, height: int) -> Image.Image:
    """The image scaled to cover `width`x`height` and centre-cropped to it, so a conditioning frame keeps its
    proportions (the pipelines would stretch it)."""
    scale = max(width / image.width, height / image.height)
    scaled = image.resize(
        (max(width, round(image.width * scale)), max(height, round(image.height * scale))), Image.Resampling.LANCZOS
    )
    left, top = (scaled.width - width) // 2, (scaled.height - height) // 2
    return scaled.crop((left, top, left + width, top + height))
