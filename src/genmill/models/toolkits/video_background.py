"""`Qubico/video-toolkit` `background-remove`: the subject of every frame cut out, written as a WebM with alpha.

The matte is the one image background removal uses (`salient.ForegroundMatte`, U²-Net-p, a
salient-object model), so any subject is kept: a cup, a cat, a car, a person. Frame by frame, a frame without a
subject becomes fully transparent; a clip in which no frame has one fails with `InputRejected` (10001) rather than
coming back empty. ViTMatte's edge refinement is left to still images: it would cost seconds per frame on a CPU.
Where the U²-Net-p package (`genmill[cpu]`) is missing but mediapipe is installed, MediaPipe's selfie
segmentation runs instead and `served_by` says "people only".

Transparency rather than a solid colour: it is what "removed" means for the image toolkit too (an RGBA PNG), and
a transparent video composites over anything in a browser or an editor, while a colour would have to be keyed
out again. VP9 in WebM is the alpha-capable format browsers play; the audio is re-encoded to Opus because WebM
cannot hold AAC. `invert_output` keeps the background and removes the subject.
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np
from numpy.typing import NDArray
from PIL import Image

from genmill.backends.base import Availability, Backend, Resident, RunContext, ServedBy
from genmill.backends.toolkit import field_value, mediapipe_availability
from genmill.backends.video_io import ffmpeg_availability, map_frames, probe, staged_video
from genmill.domain.catalog import CatalogEntry, TaskInput
from genmill.errors import InputRejected
from genmill.models.toolkits.salient import ForegroundMatte, Matte
from genmill.models.toolkits.video_catalog import MODEL
from genmill.models.toolkits.video_face_swap import BACKGROUND_REMOVE_MAX_FRAMES, check_video

SELFIE_FILES = (
    ("selfie_segmentation", "selfie_segmentation_cpu.binarypb"),
    ("selfie_segmentation", "selfie_segmentation.tflite"),
)
PEOPLE_ONLY = "people only: a clip without a person fails (install genmill[cpu] for any subject)"

VP9_WITH_ALPHA = ["-c:v", "libvpx-vp9", "-pix_fmt", "yuva420p", "-b:v", "0", "-crf", "30", "-deadline", "good"]
VP9_WITH_ALPHA += ["-cpu-used", "4", "-row-mt", "1", "-auto-alt-ref", "0", "-c:a", "libopus", "-b:a", "96k"]


class VideoBackgroundRemoveBackend(Backend):
    """`background-remove`: U²-Net-p per frame (MediaPipe selfie segmentation where it is missing)."""

    name = "video-background-remove"
    entries = ((MODEL, "background-remove"),)
    requirements = ("imageio-ffmpeg",)

    def __init__(self, *, matte: ForegroundMatte | None = None, edge: tuple[float, float] = (0.15, 0.85)) -> None:
        """`matte` cuts out each frame's subject (default: U²-Net-p alone); `edge` is the selfie fallback's
        confidence band mapped smoothly onto alpha 0..1, as in the image background remover."""
        self.matte = matte or ForegroundMatte()
        self.edge = edge
        self._segmenter: Any = None
        self._lock = threading.Lock()

    @property
    def any_subject(self) -> bool:
        """Whether U²-Net-p can run here (otherwise the people-only selfie model does)."""
        return self.matte.availability().ok

    def served_by(self, entry: CatalogEntry) -> ServedBy:
        if self.any_subject:
            return ServedBy(f"{self.matte.describe()}, every frame")
        return ServedBy("MediaPipe selfie segmentation, every frame", limits=(PEOPLE_ONLY,))

    def availability(self) -> Availability:
        found = ffmpeg_availability()
        if not found.ok or self.any_subject:
            return found
        return mediapipe_availability(SELFIE_FILES, "selfie-segmentation")

    def residents(self) -> list[Resident]:
        return self.matte.residents() if self.any_subject else []

    def load(self) -> None:
        with self._lock:
            if self.any_subject:
                self.matte.load()
            elif self._segmenter is None:
                from mediapipe.python.solutions.selfie_segmentation import SelfieSegmentation

                self._segmenter = SelfieSegmentation(model_selection=0)

    def unload(self) -> None:
        with self._lock:
            self.matte.unload()
            self._segmenter = None

    def _subject(self, frame: NDArray[np.uint8]) -> Matte | None:
        """The frame's alpha, or None when it has no subject (U²-Net-p's own rule, as for still images)."""
        try:
            return self.matte.alpha(Image.fromarray(frame), field="video")
        except InputRejected:
            return None

    def _person(self, frame: NDArray[np.uint8]) -> Matte | None:
        """The frame's alpha from the selfie model, or None when no person covers a thousandth of it."""
        mask = self._segmenter.process(frame).segmentation_mask
        if mask is None:
            return None
        low, high = self.edge
        t = np.clip((np.asarray(mask, dtype=np.float32) - low) / (high - low), 0.0, 1.0)
        alpha = (t * t * (3.0 - 2.0 * t)).astype(np.float32)
        return alpha if float((alpha > 0.5).mean()) >= 0.001 else None

    def run(self, entry: CatalogEntry, inputs: TaskInput, ctx: RunContext) -> dict[str, Any]:
        self.load()
        invert = bool(field_value(inputs, "invert_output", False))
        any_subject = self.any_subject
        matte_of = self._subject if any_subject else self._person
        found = {"frames": 0}

        def cut_out(frame: NDArray[np.uint8]) -> NDArray[np.uint8]:
            alpha = matte_of(frame)
            if alpha is None:
                alpha = np.zeros(frame.shape[:2], dtype=np.float32)
            else:
                found["frames"] += 1
            if invert:
                alpha = 1.0 - alpha
            channel = np.round(alpha * 255).astype(np.uint8)[..., None]
            return np.concatenate([frame, channel], axis=2)

        with staged_video(ctx, inputs, "video") as video:
            info = probe(video, "video")
            ctx.log(f"video: {info.describe()}")
            check_video(info, "video", max_frames=BACKGROUND_REMOVE_MAX_FRAMES)
            ctx.log(f"cutting out every frame with {self.served_by(entry).model}")
            target = video.with_name("output.webm")
            with self._lock:  # one MediaPipe graph takes one stream of packets; U²-Net-p's session is shared
                map_frames(video, info, target, ctx, cut_out, encode=VP9_WITH_ALPHA, field="video", out_pix_fmt="rgba")
            if found["frames"] == 0:
                what = "subject" if any_subject else "person"
                raise InputRejected(
                    f"video: no {what} was found in any frame; there is nothing to separate from a background"
                )
            url = ctx.save_output(target.read_bytes(), ext="webm", content_type="video/webm")
        ctx.progress(1.0)
        ctx.log(f"done: {info.width}x{info.height} WebM (VP9 with alpha), a subject in {found['frames']} frames")
        return {"video_url": url}
