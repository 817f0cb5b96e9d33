"""Kling, Hailuo and Luma in Wan's terms, and back: what a service task asks of the Wan stand-in (`WanRequest`),
what each stand-in does not honour (its `limits`), and each service's own PiAPI output shape.

Pure data and functions over the catalog's input models; `genmill.models.video.services` runs them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from genmill.domain.catalog import CatalogEntry, TaskInput
from genmill.models.video import hailuo_catalog, kling_catalog, luma_catalog
from genmill.models.video.hailuo_catalog import HailuoVideo
from genmill.models.video.kling_catalog import KlingTurboVideo, KlingVideo
from genmill.models.video.luma_catalog import LumaExtend, LumaVideo

MOTION_PROMPT = "the scene comes to life with natural, smooth motion"
"""Wan needs a prompt; image-to-video tasks that give none (Kling, Hailuo i2v) animate the image with this."""
EXTEND_SECONDS = 5
"""Kling extends by about 4.5 s; Wan's segment is the nearest it makes (our choice)."""
HAILUO_SECONDS = 5
"""Hailuo's clips are about 6 s; the stand-in makes one Wan segment (~5 s), and says so."""


@dataclass(frozen=True)
class WanRequest:
    """One service task as Wan runs it: a prompt, a length, and the images that start or end the clip.

    `first` and `last` are (field name as the client spelled it, reference) or None; `aspect` is the asked
    "W:H" (text-to-video only: an image decides its own clip's shape).
    """

    prompt: str
    negative_prompt: str
    seconds: float
    aspect: str
    first: tuple[str, str] | None = None
    last: tuple[str, str] | None = None
    extend: bool = False


def _frame(field: str, ref: str) -> tuple[str, str] | None:
    return (field, ref) if ref else None


def wan_request(entry: CatalogEntry, inputs: TaskInput) -> WanRequest:
    """The Wan request for a service task (raises TypeError for an input model this module does not know)."""
    if isinstance(inputs, KlingVideo):
        shots = "; ".join(shot.prompt for shot in inputs.multi_shots)
        return WanRequest(
            shots or inputs.prompt,
            inputs.negative_prompt,
            inputs.seconds(),
            inputs.aspect_ratio,
            _frame("image_url", inputs.image_url),
            _frame("image_tail_url", inputs.image_tail_url),
        )
    if isinstance(inputs, KlingTurboVideo):
        first, last = _frame("image_url", inputs.image_url), _frame("image_tail_url", inputs.image_tail_url)
        return WanRequest(inputs.prompt, inputs.negative_prompt, inputs.duration, inputs.aspect_ratio, first, last)
    if isinstance(inputs, kling_catalog.KlingExtend):
        return WanRequest(inputs.prompt, inputs.negative_prompt, EXTEND_SECONDS, "16:9", extend=True)
    if isinstance(inputs, HailuoVideo):
        return WanRequest(inputs.prompt, "", HAILUO_SECONDS, "16:9", _frame("image_url", inputs.image_url))
    if isinstance(inputs, LumaVideo):
        key_frames = inputs.key_frames
        frame0 = key_frames.frame0 if key_frames else None
        frame1 = key_frames.frame1 if key_frames else None
        first_field = "key_frames.frame0.url" if frame0 is not None else "start_image"
        last_field = "key_frames.frame1.url" if frame1 is not None else "end_image"
        first = None if isinstance(inputs, LumaExtend) else _frame(first_field, inputs.first_image())
        return WanRequest(
            inputs.prompt,
            "",
            inputs.duration,
            inputs.aspect_ratio,
            first,
            _frame(last_field, inputs.last_image()),
            extend=isinstance(inputs, LumaExtend),
        )
    raise TypeError(f"{entry.model} {entry.task_type}: no Wan stand-in for {type(inputs).__name__}")


def refusal(entry: CatalogEntry, inputs: TaskInput, *, has_last_frame_model: bool) -> str:
    """Why the Wan stand-in cannot honour these inputs ("" when it can), naming the field: asked-for sound,
    reference images and face-keeping it cannot make, or an end frame without the first-last-frame weights."""
    if isinstance(inputs, KlingVideo):
        if inputs.enable_audio:
            return "enable_audio: the Wan stand-in for Kling makes silent video; send enable_audio false"
        if inputs.elements:
            return "elements: the Wan stand-in for Kling takes no reference images (Kling Elements)"
    if isinstance(inputs, HailuoVideo) and inputs.model == hailuo_catalog.SUBJECT_MODEL:
        return "model: s2v-01 keeps a face from image_url; the Wan stand-in for Hailuo has no subject-reference model"
    request = wan_request(entry, inputs)
    if request.last is not None and request.first is None and not request.extend:
        return f"{request.last[0]}: the Wan stand-in ends on an image only when a start image is given too"
    if request.last is not None and not has_last_frame_model:
        return (
            f"{request.last[0]}: an end frame needs Wan's first-last-frame model (wan2.1-flf2v-14b/), which is not "
            "installed here"
        )
    return ""


SERVICE_NAMES = {
    kling_catalog.MODEL: "Kling",
    kling_catalog.TURBO_MODEL: "Kling 2.5 Turbo",
    hailuo_catalog.MODEL: "Hailuo",
    luma_catalog.MODEL: "Luma Dream Machine",
}
IGNORED = {
    kling_catalog.MODEL: "mode and version do not change the model that runs; camera_control and cfg_scale are "
    "ignored; multi_shots' prompts are joined into one prompt; enable_audio and elements are refused",
    kling_catalog.TURBO_MODEL: "mode does not change the model that runs; cfg_scale is ignored",
    hailuo_catalog.MODEL: "model only chooses text or image to video (s2v-01 is refused); expand_prompt is "
    "ignored and director camera commands stay plain prompt text",
    luma_catalog.MODEL: "model_name does not change the model that runs; loop and expand_prompt are ignored",
}


def limits(entry: CatalogEntry, segment: str, *, has_last_frame_model: bool) -> tuple[str, ...]:
    """What the stand-in does not honour for `entry`; `segment` describes one Wan pass ("832x480 or 480x832,
    85 frames at 16 fps")."""
    service = SERVICE_NAMES[entry.model]
    said = [
        f"stand-in for {service}: Wan makes {segment} per segment; longer durations chain segments, each starting "
        "from the last frame of the one before",
        "aspect ratios other than 16:9 and 9:16 are made at the nearer of the two; an image's own shape decides "
        "an image-to-video clip's",
        IGNORED[entry.model],
    ]
    if entry.task_type == "extend_video":
        said.append(
            "extend continues from the origin video's last frame with Wan image-to-video and returns the whole "
            "video: the origin (resampled to Wan's frame rate) followed by the continuation; origins of more than "
            "1000 frames are refused"
        )
    elif entry.model != hailuo_catalog.MODEL and not has_last_frame_model:
        said.append("an end frame (image_tail_url, end_image, key_frames.frame1) is refused: no wan2.1-flf2v-14b/")
    if entry.model == hailuo_catalog.MODEL:
        said.append("clips are one Wan segment (about 5 s), not Hailuo's 6 s")
    return tuple(said)


@dataclass(frozen=True)
class Rendered:
    """A finished stand-in clip and its stills, as the output shapes need them."""

    video_url: str
    cover_url: str
    last_frame_url: str
    width: int
    height: int
    seconds: float
    prompt: str


def kling_output(entry: CatalogEntry, inputs: TaskInput, clip: Rendered) -> dict[str, Any]:
    """Kling's PiAPI output: `works[{video, cover}]` with status 99 (done); there is no watermark here, so both
    resources are the same file. Durations are milliseconds, as Kling reports them; `video_url` is kept beside
    them for clients of the newer shape."""
    if entry.task_type == "extend_video":
        kind = "m2v_extend_video"
    else:
        kind = "m2v_img2video" if getattr(inputs, "image_url", "") else "m2v_txt2video"
    millis = round(clip.seconds * 1000)
    video = {"resource": clip.video_url, "resource_without_watermark": clip.video_url, "w": clip.width}
    video |= {"h": clip.height, "duration": millis}
    cover = {"resource": clip.cover_url, "resource_without_watermark": clip.cover_url, "w": clip.width}
    cover |= {"h": clip.height, "duration": 0}
    work = {"status": 99, "type": kind, "cover": cover, "video": video}
    return {"type": kind, "status": 99, "works": [work], "video_url": clip.video_url}


def luma_output(clip: Rendered) -> dict[str, Any]:
    """Luma's PiAPI output: `video`, `video_raw`, `thumbnail` and `last_frame`, each `{url, width, height}`."""

    def media(url: str) -> dict[str, Any]:
        return {"url": url, "width": clip.width, "height": clip.height}

    created = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    return {
        "prompt": clip.prompt,
        "internal_state": "completed",
        "created_at": created,
        "video": media(clip.video_url),
        "video_raw": media(clip.video_url),
        "thumbnail": media(clip.cover_url),
        "last_frame": media(clip.last_frame_url),
    }


HAILUO_DONE = 2
"""Hailuo's status of a finished video (PiAPI passes Hailuo's own status number through; 2 is "done", our
reading of Hailuo's web API)."""


def hailuo_output(inputs: HailuoVideo, clip: Rendered) -> dict[str, Any]:
    """Hailuo's PiAPI output: the video, its cover and download URL, size and what was asked."""
    return {
        "percent": 100,
        "cover_url": clip.cover_url,
        "video_url": clip.video_url,
        "download_url": clip.video_url,
        "desc": clip.prompt,
        "prompt_img_url": inputs.image_url,
        "status": HAILUO_DONE,
        "user_origin_prompt": not inputs.expand_prompt,
        "width": clip.width,
        "height": clip.height,
        "model_id": inputs.model,
        "message": "",
    }


def service_output(entry: CatalogEntry, inputs: TaskInput, clip: Rendered) -> dict[str, Any]:
    if entry.model in (kling_catalog.MODEL, kling_catalog.TURBO_MODEL):
        return kling_output(entry, inputs, clip)
    if isinstance(inputs, HailuoVideo):
        return hailuo_output(inputs, clip)
    return luma_output(clip)


def origin_video_url(output: dict[str, Any]) -> str:
    """The video an earlier Kling or Luma task made, in either service's shape (or a plain `video_url`)."""
    for work in output.get("works") or []:
        video = work.get("video") or {}
        url = video.get("resource_without_watermark") or video.get("resource")
        if url:
            return str(url)
    for key in ("video", "video_raw"):
        media = output.get(key)
        if isinstance(media, dict) and media.get("url"):
            return str(media["url"])
        if isinstance(media, str) and media:
            return media
    return str(output.get("video_url") or "")
