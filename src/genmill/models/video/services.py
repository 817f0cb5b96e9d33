"""Open stand-ins on Wan for PiAPI's resold video services: Kling, Hailuo and Luma Dream Machine.

Served only where the operator enables them (GENMILL_STAND_INS=kling-wan, hailuo-wan, luma-wan or all), and every
task says before anyone pays that Wan runs, not the service named, with what it does not honour.
Kling's effects, virtual try-on and lip sync have no open equivalent here: they are served only through an
upstream provider (GENMILL_UPSTREAM_MODELS).
"""

from __future__ import annotations

import base64
import io
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from PIL import Image

from genmill.backends.base import Availability, Backend, Prefetched, Resident, RunContext, ServedBy, UnservedBackend
from genmill.backends.toolkit import encode_png, pick_seed
from genmill.backends.video_io import decode_frames, encode_mp4
from genmill.domain.catalog import CatalogEntry, TaskInput
from genmill.domain.records import InputFile
from genmill.errors import BackendError, InputRejected
from genmill.models.video import hailuo_catalog, kling_catalog, luma_catalog, service_shapes, wanx_catalog
from genmill.models.video.pipeline import VIDEO_PACKAGES, Clip, Geometry, VideoShared, cover
from genmill.models.video.service_shapes import MOTION_PROMPT, Rendered, WanRequest
from genmill.models.video.wan import VARIANTS, WanBackend

KLING_BACKEND, HAILUO_BACKEND, LUMA_BACKEND = "kling-wan", "hailuo-wan", "luma-wan"

UPSTREAM_REASON = (
    "Kling's {what} is not served locally: there is no open model for it here; forward it to an upstream "
    "provider (GENMILL_UPSTREAM_MODELS=kling with GENMILL_UPSTREAM_URL and GENMILL_UPSTREAM_API_KEY)"
)
UPSTREAM_ONLY: dict[str, str] = {
    f"{kling_catalog.MODEL}/effects": UPSTREAM_REASON.format(what="effects (squish, expansion)"),
    f"{kling_catalog.MODEL}/ai_try_on": UPSTREAM_REASON.format(what="virtual try-on"),
    f"{kling_catalog.MODEL}/lip_sync": UPSTREAM_REASON.format(what="lip sync"),
}
"""Entries nothing local runs, with the reason `genmill models` and a refused task give."""

_WAN_FOLDERS = "wan2.1-t2v-14b/ (or wan2.2-t2v-a14b/ or wan2.1-t2v-1.3b/) and wan2.1-i2v-14b/ (or wan2.2-i2v-a14b/)"
VIDEO_SERVICE_WEIGHTS: dict[str, str] = {
    kling_catalog.MODEL: f"{_WAN_FOLDERS}, wan2.1-flf2v-14b/ for image_tail_url (a stand-in: Wan, with "
    f"GENMILL_STAND_INS={KLING_BACKEND})",
    kling_catalog.TURBO_MODEL: f"{_WAN_FOLDERS} (a stand-in: Wan, with GENMILL_STAND_INS={KLING_BACKEND})",
    hailuo_catalog.MODEL: f"{_WAN_FOLDERS} (a stand-in: Wan, with GENMILL_STAND_INS={HAILUO_BACKEND})",
    luma_catalog.MODEL: f"{_WAN_FOLDERS}, wan2.1-flf2v-14b/ for an end frame (a stand-in: Wan, with "
    f"GENMILL_STAND_INS={LUMA_BACKEND})",
}
"""What to put under the models folder for each service's Wan stand-in (`why_not_served`)."""


@dataclass(frozen=True)
class Service:
    name: str
    """The backend's name, as GENMILL_STAND_INS enables it."""
    entries: tuple[tuple[str, str], ...]


SERVICES = (
    Service(
        KLING_BACKEND,
        (
            (kling_catalog.MODEL, "video_generation"),
            (kling_catalog.MODEL, "text2video"),
            (kling_catalog.MODEL, "image2video"),
            (kling_catalog.MODEL, "extend_video"),
            (kling_catalog.TURBO_MODEL, "video_generation"),
        ),
    ),
    Service(HAILUO_BACKEND, ((hailuo_catalog.MODEL, "video_generation"),)),
    Service(LUMA_BACKEND, ((luma_catalog.MODEL, "video_generation"), (luma_catalog.MODEL, "extend_video"))),
)
T2V_VARIANTS = ("wan21-t2v-14b", "wan22-t2v-a14b", "wan21-t2v-1.3b")
I2V_VARIANTS = ("wan21-i2v-14b", "wan22-i2v-a14b")
FLF2V_VARIANT = "wan21-flf2v-14b"
"""The Wan models a stand-in runs, first present first: Wan 2.1 14B, whose 480p clips are the cheapest 14B ones."""
MAX_ORIGIN_FRAMES = 1000
"""An extended video is decoded whole to continue it and be returned with it: at most this many frames (about a
minute of Kling's 30 fps video, 1.2 GB of 480p frames); longer origins are refused naming origin_task_id."""
WANX_ENTRIES = {entry.task_type: entry for entry in wanx_catalog.ENTRIES}


class WanServiceBackend(Backend):
    """Kling, Hailuo or Luma tasks made by Wan text-to-video, image-to-video and first-last-frame models (the same
    weight folders and loaded pipelines as `Qubico/wanx`), in the service's own output shape."""

    def __init__(
        self,
        service: Service,
        models_dir: Path,
        *,
        shared: VideoShared | None = None,
        geometry: Geometry | None = None,
    ) -> None:
        """`geometry` replaces every Wan model's clip sizes, frames, rate and steps (tests with toy weights)."""
        shared = shared or VideoShared()
        self.name = service.name
        self.entries = service.entries
        self.requirements = VIDEO_PACKAGES

        def first_present(variants: tuple[str, ...]) -> WanBackend:
            found = [v for v in variants if (models_dir / VARIANTS[v].weights.folder).is_dir()] or [variants[0]]
            return WanBackend(found[0], models_dir, geometry=geometry, shared=shared)

        self.t2v, self.i2v = first_present(T2V_VARIANTS), first_present(I2V_VARIANTS)
        self.flf2v = first_present((FLF2V_VARIANT,))
        self.flf2v_ok = (models_dir / VARIANTS[FLF2V_VARIANT].weights.folder).is_dir()
        """Whether end frames can be honoured; the folder's presence until `availability` checks it in full."""

    # --- what runs, and where ----------------------------------------------------------------------------------

    def availability(self) -> Availability:
        for part in (self.t2v, self.i2v):
            availability = part.availability()
            if not availability.ok:
                return availability
        self.flf2v_ok = self.flf2v.availability().ok
        self.device = self.i2v.device
        self.working_bytes = max(part.working_bytes for part in self._parts())
        return Availability(True)

    def _parts(self) -> list[WanBackend]:
        return [self.t2v, self.i2v, *([self.flf2v] if self.flf2v_ok else [])]

    def residents(self) -> list[Resident]:
        return [resident for part in self._parts() for resident in part.residents()]

    def memory_note(self) -> str:
        return self.i2v.memory_note()

    def served_by(self, entry: CatalogEntry) -> ServedBy:
        folders = " / ".join(part.weights.folder for part in self._parts())
        geometry = self.i2v.geometry
        sizes = " or ".join(f"{w}x{h}" for w, h in next(iter(geometry.sizes.values())).values())
        segment = f"{sizes} clips of {geometry.frames} frames at {geometry.fps} fps"
        limits = service_shapes.limits(entry, segment, has_last_frame_model=self.flf2v_ok)
        return ServedBy(f"Wan ({folders})", stand_in=True, limits=limits)

    def check_request(self, entry: CatalogEntry, inputs: TaskInput) -> None:
        reason = service_shapes.refusal(entry, inputs, has_last_frame_model=self.flf2v_ok)
        if reason:
            raise InputRejected(reason)

    def load(self) -> None:
        self.t2v.load()
        self.i2v.load()

    def unload(self) -> None:
        for part in (self.t2v, self.i2v, self.flf2v):
            part.unload()

    # --- running -----------------------------------------------------------------------------------------------

    def run(self, entry: CatalogEntry, inputs: TaskInput, ctx: RunContext) -> dict[str, Any]:
        if entry.key not in self.entries:
            raise BackendError(f"task_type: {self.name} does not run {entry.model} {entry.task_type}")
        self.check_request(entry, inputs)
        request = service_shapes.wan_request(entry, inputs)
        refs = [frame for frame in (request.first, request.last) if frame is not None]
        ctx = Prefetched(ctx, refs)  # also holds the frames one pass hands the next (`handed_on`)
        seed = pick_seed(inputs)
        head: NDArray[np.uint8] | None = None
        prompt = request.prompt.strip()
        first = ("", "")
        if request.extend:
            head, first, prompt = self._origin(ctx, prompt)
        elif request.first is not None:
            first = request.first
        clip = self._segments(ctx, request, prompt or MOTION_PROMPT, first, seed)
        frames = clip.frames if head is None else join(head, clip.frames)
        data = encode_mp4(frames, clip.fps, ctx)
        height, width = frames.shape[1:3]
        rendered = Rendered(
            video_url=ctx.save_output(data, ext="mp4", content_type="video/mp4"),
            cover_url=ctx.save_output(encode_png(Image.fromarray(frames[0])), ext="png", content_type="image/png"),
            last_frame_url=ctx.save_output(
                encode_png(Image.fromarray(frames[-1])), ext="png", content_type="image/png"
            ),
            width=int(width),
            height=int(height),
            seconds=len(frames) / clip.fps,
            prompt=prompt or MOTION_PROMPT,
        )
        ctx.progress(1.0, note=f"done, seed {seed}")
        return service_shapes.service_output(entry, inputs, rendered)

    def _origin(self, ctx: Prefetched, prompt: str) -> tuple[NDArray[np.uint8], tuple[str, str], str]:
        """The origin video's frames, its last frame as the first of the continuation, and the prompt (the
        origin's when the extend task gives none)."""
        origin = ctx.origin()
        url = service_shapes.origin_video_url(origin.output) if origin is not None else ""
        if origin is None or not url:
            raise BackendError("origin_task_id: the origin task's video is not available to this worker")
        data = ctx.read_input(url, field="origin_task_id").data
        frames, fps = decode_frames(data, field="origin_task_id", max_frames=MAX_ORIGIN_FRAMES)
        keep = np.linspace(0, len(frames) - 1, max(1, round(len(frames) * self.i2v.geometry.fps / fps)))
        frames = frames[keep.round().astype(int)]
        ctx.log(f"extending {origin.task_id}: {len(frames)} frames, continuing from its last frame")
        last = ("origin_task_id", handed_on(ctx, frames[-1]))
        return frames, last, prompt or str(origin.input.get("prompt") or "")

    def _segments(self, ctx: Prefetched, request: WanRequest, prompt: str, first: tuple[str, str], seed: int) -> Clip:
        """One Wan pass per segment of the asked length; each later one starts from the last frame before it."""
        geometry = self.i2v.geometry
        per_segment = (geometry.frames - 1) / geometry.fps
        count = max(1, math.ceil(request.seconds / per_segment - 0.01))
        frames: NDArray[np.uint8] | None = None
        fps = geometry.fps
        for index in range(count):
            span = (0.05 + 0.9 * index / count, 0.05 + 0.9 * (index + 1) / count)
            last = request.last if index == count - 1 else None
            start = first if index == 0 else ("", handed_on(ctx, frames[-1])) if frames is not None else first
            clip = self._pass(ctx, prompt, request, start, last, (seed + index) % 2**32, span)
            fps = clip.fps
            frames = clip.frames if frames is None else join(frames, clip.frames)
        assert frames is not None
        return Clip(frames, fps, seed)

    def _pass(
        self,
        ctx: RunContext,
        prompt: str,
        request: WanRequest,
        first: tuple[str, str],
        last: tuple[str, str] | None,
        seed: int,
        span: tuple[float, float],
    ) -> Clip:
        fields: dict[str, Any] = {"prompt": prompt, "negative_prompt": request.negative_prompt, "seed": seed}
        if not first[1]:
            part, wan_type = self.t2v, self.t2v.entries[0][1]
            fields["aspect_ratio"] = nearest_aspect(part.geometry, request.aspect)
        else:
            image = image_size(ctx, first[0] or "image", first[1])
            fields["aspect_ratio"] = nearest_aspect(self.i2v.geometry, f"{image[0]}:{image[1]}")
            if last is not None:
                part, wan_type = self.flf2v, "img2video-14b-keyframe"
                fields.update(first_frame=first[1], last_frame=last[1])
            else:
                part, wan_type = self.i2v, self.i2v.entries[0][1]
                fields["image"] = first[1]
        entry = WANX_ENTRIES[wan_type]
        return part.render(entry, entry.input_model.model_validate(fields), ctx, span=span)


def image_size(ctx: RunContext, field: str, ref: str) -> tuple[int, int]:
    """An image input's width and height, read from its header; refused naming `field` when it is no image."""
    try:
        with Image.open(io.BytesIO(ctx.read_input(ref, field=field).data)) as image:
            return image.size
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        raise InputRejected(f"{field}: not a decodable image", raw_message=f"{type(exc).__name__}: {exc}") from exc


def nearest_aspect(geometry: Geometry, aspect: str) -> str:
    """The offered aspect ratio ("16:9", "9:16") nearest to a "W:H" one."""
    width, height = (float(part) for part in aspect.split(":"))
    offered = next(iter(geometry.sizes.values()))
    return min(offered, key=lambda name: abs(math.log(_ratio(name) / (width / height))))


def _ratio(aspect: str) -> float:
    width, height = aspect.split(":")
    return float(width) / float(height)


def join(before: NDArray[np.uint8], after: NDArray[np.uint8]) -> NDArray[np.uint8]:
    """`after` continued from `before`'s last frame: its first frame (a copy of that frame) is dropped, and
    `before` is scaled to `after`'s size when the two passes made different sizes."""
    height, width = after.shape[1:3]
    if before.shape[1:3] != (height, width):
        before = np.stack([np.asarray(cover(Image.fromarray(f), width, height)) for f in before])
    return np.concatenate([before, after[1:]])


def handed_on(ctx: Prefetched, frame: NDArray[np.uint8]) -> str:
    """A reference to a generated frame that the next Wan pass reads as its first image: a PNG data URI, held in
    the task's prefetched files, because a worker reads only the references its task's input names."""
    data = encode_png(Image.fromarray(frame))
    ref = "data:image/png;base64," + base64.b64encode(data).decode()
    ctx.files[ref] = InputFile(data, "image/png")
    return ref


def service_backends(models_dir: Path, *, shared: VideoShared | None = None) -> list[Backend]:
    """The Kling, Hailuo and Luma stand-ins where Wan text- and image-to-video weights are, with Kling's effects,
    try-on and lip sync listed beside them, unserved, with the reason (as the Wan camera-control entry is)."""
    shared = shared or VideoShared()
    present = {v for v in (*T2V_VARIANTS, *I2V_VARIANTS) if (models_dir / VARIANTS[v].weights.folder).is_dir()}
    if not (present & set(T2V_VARIANTS) and present & set(I2V_VARIANTS)):
        return []  # `why_not_served` names the folders (VIDEO_SERVICE_WEIGHTS) and the upstream-only entries
    backends: list[Backend] = [WanServiceBackend(service, models_dir, shared=shared) for service in SERVICES]
    for key, reason in UPSTREAM_ONLY.items():
        model, task_type = key.split("/")
        backends.append(UnservedBackend(f"{model}-{task_type}", ((model, task_type),), reason))
    return backends
