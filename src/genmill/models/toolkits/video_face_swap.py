"""`Qubico/video-toolkit` `face-swap` (the image face swap on every frame), and the video limits the toolkit's
`upscale` (`video_upscale`) and `background-remove` (`video_background`) share with it.

The ffmpeg plumbing (probing, staging, frame mapping, encoding) is `genmill.backends.video_io`. The catalog checks
what the request itself shows (an MP4, at most 10 MB inline). What only the decoded stream shows is checked before
any pixel work: the size of the fetched file, the resolution (at most 720p, i.e. 1280x720 either way round) and the
frame count (10-240 for upscale, at most 600 for face swap and background removal). Each refusal names the input
field, e.g. `video: 250 frames, the limit is 240`, and is an `InputRejected` (error code 10001); ffmpeg failing on a
video it could read stays a `BackendError` (10000).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

from genmill.backends.base import Availability, Backend, RunContext, ServedBy
from genmill.backends.toolkit import load_image, mediapipe_availability
from genmill.backends.video_io import X264_ARGS, VideoInfo, ffmpeg_availability, map_frames, probe, staged_video
from genmill.domain.catalog import CatalogEntry, TaskInput
from genmill.errors import InputRejected
from genmill.models.toolkits.faces import (
    FACE_MESH_FILES,
    FACE_SWAP_SERVED_BY,
    Face,
    FaceFinder,
    face_index_pairs,
    swap_face,
)
from genmill.models.toolkits.video_catalog import FACE_SWAP_MAX_FRAMES, MODEL, UPSCALE_MAX_HEIGHT

MAX_SHORT_SIDE = UPSCALE_MAX_HEIGHT
MAX_LONG_SIDE = 1280
"""720p: the short side at most 720 and the long side at most 1280, so portrait phone videos pass too."""

BACKGROUND_REMOVE_MAX_FRAMES = FACE_SWAP_MAX_FRAMES
"""Our choice: the catalog sets no frame cap for background removal, which costs about as much per frame as a
face swap, so it gets the same cap."""


def check_video(info: VideoInfo, field: str, *, max_frames: int, min_frames: int = 1) -> None:
    """Refuse what the catalog's limits forbid but only the decoded stream shows."""
    if info.frames > max_frames:
        raise InputRejected(f"{field}: {info.frames} frames, the limit is {max_frames}")
    if info.frames < min_frames:
        raise InputRejected(f"{field}: {info.frames} frames, at least {min_frames} are needed")
    short, long = sorted((info.width, info.height))
    if short > MAX_SHORT_SIDE or long > MAX_LONG_SIDE:
        raise InputRejected(
            f"{field}: {info.width}x{info.height}, the limit is 720p ({MAX_LONG_SIDE}x{MAX_SHORT_SIDE} "
            "either way round)"
        )


class VideoFaceSwapBackend(Backend):
    """`face-swap`: the image face swap (MediaPipe Face Mesh, warp and Poisson blend) applied to every frame.

    Faces in `swap_image` are found once; in the video they are found again in every frame, since people move.
    Indexes count faces left to right in each frame, as in the image face swap. A frame in which a requested
    target face is missing (turned away, out of shot) is kept as it is rather than failing the whole video.
    """

    name = "mediapipe-video-face-swap"
    entries = ((MODEL, "face-swap"),)
    requirements = ("imageio-ffmpeg", "mediapipe")

    def __init__(self) -> None:
        self._finder = FaceFinder()

    def served_by(self, entry: CatalogEntry) -> ServedBy:
        return FACE_SWAP_SERVED_BY

    def availability(self) -> Availability:
        found = ffmpeg_availability()
        return found if not found.ok else mediapipe_availability(FACE_MESH_FILES, "Face Mesh")

    def load(self) -> None:
        self._finder.load()

    def run(self, entry: CatalogEntry, inputs: TaskInput, ctx: RunContext) -> dict[str, Any]:
        self.load()
        swap_indexes, target_indexes = face_index_pairs(inputs)
        source = np.asarray(load_image(ctx, inputs, "swap_image").convert("RGB"), dtype=np.uint8)
        swaps = self._finder.find(source)
        if not swaps:
            raise InputRejected("swap_image: no face was found; the face should be turned towards the camera")
        missing = sorted({i for i in swap_indexes if i >= len(swaps)})
        if missing:
            raise InputRejected(f"swap_faces_index: face {missing[0]} was asked for but swap_image has {len(swaps)}")
        pairs = list(zip(swap_indexes, target_indexes, strict=True))
        with staged_video(ctx, inputs, "target_video") as video:
            info = probe(video, "target_video")
            ctx.log(f"target_video: {info.describe()}")
            check_video(info, "target_video", max_frames=FACE_SWAP_MAX_FRAMES)
            counts = {"swapped": 0, "kept": 0}

            def swap_frame(frame: NDArray[np.uint8]) -> NDArray[np.uint8]:
                targets: list[Face] = self._finder.find(frame)
                result = frame
                usable = [(s, t) for s, t in pairs if t < len(targets)]
                for swap_index, target_index in usable:
                    result = swap_face(source, swaps[swap_index], result, targets[target_index])
                counts["swapped" if usable else "kept"] += 1
                return result

            target = video.with_name("output.mp4")
            map_frames(video, info, target, ctx, swap_frame, encode=[*X264_ARGS, "-c:a", "copy"], field="target_video")
            if counts["swapped"] == 0:
                raise InputRejected("target_video: no face was found in any frame")
            url = ctx.save_output(target.read_bytes(), ext="mp4", content_type="video/mp4")
        ctx.progress(1.0)
        ctx.log(f"done: faces swapped in {counts['swapped']} frames, {counts['kept']} frames without a face kept")
        # `frames` is what the task is billed for (per frame, frozen at the 600-frame cap).
        return {"video_url": url, "frames": counts["swapped"] + counts["kept"]}
