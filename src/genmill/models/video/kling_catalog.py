"""Kling (Kuaishou) as PiAPI resells it: model `kling` (and `kling-turbo`, the Kling 2.5 Turbo tier).

Field names, ranges, enumerations and list prices follow PiAPI's Kling pages; docs/video-services.md lists the
sources and every choice made where they are silent. Prices are USD per 5-second clip (a 10-second clip costs
twice as much); Kling 3.0 is priced per second of output by resolution (std 720p, pro 1080p) and audio.
Non-watermarked Kling videos are kept 3 days (PiAPI's Output Storage page).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Self

from pydantic import Field, model_validator

from genmill.domain.catalog import VIDEO_RETENTION, CatalogEntry, DerivedFrom, usd
from genmill.models.schema import (
    MediaRef,
    OptionalMediaRef,
    Setting,
    TaskInput,
    VideoAspectRatio,
    ceil_div,
    flat,
    per_unit,
)

MODEL = "kling"
TURBO_MODEL = "kling-turbo"
FAMILY = "kling"
"""PiAPI's key for Kling in active_tasks and the history filter (kling-turbo tasks count under it too)."""

KlingVersion = Literal["1.0", "1.5", "1.6", "2.0", "2.1", "2.1-master", "2.5", "2.6", "3.0"]
KlingMode = Literal["std", "pro"]
DEFAULT_VERSION: KlingVersion = "1.6"
"""PiAPI shows no default version; 1.6 is the newest one its Create Task page enumerates (our choice)."""

USD_PER_5S: dict[str, dict[str, float]] = {
    "1.0": {"std": 0.26, "pro": 0.46},
    "1.5": {"std": 0.26, "pro": 0.46},
    "1.6": {"std": 0.26, "pro": 0.46},
    "2.0": {"std": 0.96, "pro": 0.96},
    "2.1": {"std": 0.26, "pro": 0.46},
    "2.1-master": {"std": 0.96, "pro": 0.96},
    "2.5": {"std": 0.20, "pro": 0.33},
    "2.6": {"std": 0.20, "pro": 0.33},
}
"""List price of a 5 s clip by version and mode. 1.6 ($0.26/$0.46), 2.1 Master ($0.96), 2.5 and 2.6 ($0.20/$0.33)
are PiAPI's; 1.0, 1.5 and 2.1 at the 1.6 price and 2.0 (Master only) at the 2.1 Master price are our choice."""
AUDIO_USD_PER_5S_26 = {"std": 0.40, "pro": 0.66}
"""Kling 2.6 with native audio: pro $0.66 per 5 s is PiAPI's; std at twice its silent price is our choice."""
USD_PER_SECOND_30 = {("std", False): 0.10, ("std", True): 0.15, ("pro", False): 0.15, ("pro", True): 0.20}
"""Kling 3.0 per second: 720p (std) or 1080p (pro), without or with native audio."""
TURBO_USD_PER_5S = 0.28
"""kling-turbo (2.5-turbo) pro: $0.28 for 5 s, $0.56 for 10 s; PiAPI lists no std price, so std costs the same."""
EXTEND_USD = 0.26
"""extend_video (about 4.5 s more): PiAPI lists no price; one 5 s Kling 1.6 std clip (our choice)."""
LIP_SYNC_USD_PER_5S = 0.10
LIP_SYNC_MAX_SECONDS = 10
"""Kling lip-syncs videos of at most 10 s; the price frozen at creation covers that, the output settles it."""
EFFECTS_USD = {"std": 0.26, "pro": 0.46}
TRY_ON_USD_PER_IMAGE = 0.07
AUDIO_VERSIONS = ("2.6", "3.0")

Prompt = Annotated[str, Field(max_length=2500, description="What happens in the video (at most 2500 characters).")]
NegativePrompt = Annotated[str, Field(max_length=2500, description="What to keep out (at most 2500 characters).")]
CfgScale = Annotated[float, Field(ge=0.0, le=1.0, description="Prompt adherence, 0 (free) to 1 (strict).")]
ImageRef = Annotated[
    str, Field(description="Image URL or base64; at most 10 MB, each side greater than 300 px ('' when unused).")
]
Axis = Annotated[float, Field(ge=-10.0, le=10.0)]


class CameraConfig(Setting):
    horizontal: Axis = 0.0
    vertical: Axis = 0.0
    pan: Axis = 0.0
    tilt: Axis = 0.0
    roll: Axis = 0.0
    zoom: Axis = 0.0


class CameraControl(Setting):
    type: Literal["simple", "down_back", "forward_up", "right_turn_forward", "left_turn_forward"] = Field(
        "simple", description='"simple" moves along `config`; the others are fixed master shots.'
    )
    config: CameraConfig = Field(default_factory=CameraConfig, description="For type simple: one non-zero axis.")

    @model_validator(mode="after")
    def _one_axis(self) -> Self:
        moved = [name for name, value in self.config.model_dump().items() if isinstance(value, float) and value]
        if self.type == "simple" and len(moved) != 1:
            raise ValueError("camera_control.config: type simple moves along exactly one non-zero axis")
        return self


class Shot(Setting):
    duration: int = Field(..., ge=1, le=15, description="Seconds of this shot.")
    prompt: Prompt


class Element(Setting):
    image_url: MediaRef = Field(..., description="A reference image (Kling Elements, version 1.6).")


class KlingVideo(TaskInput):
    prompt: Prompt = ""
    negative_prompt: NegativePrompt = ""
    cfg_scale: CfgScale = 0.5
    duration: int = Field(5, description="5 or 10 seconds; Kling 3.0 takes 3 to 15.")
    aspect_ratio: VideoAspectRatio = Field("16:9", description="16:9, 9:16 or 1:1 (text-to-video).")
    camera_control: CameraControl | None = Field(None, description="Camera movement (text-to-video).")
    mode: KlingMode = Field("std", description="std (720p) or pro (1080p).")
    version: KlingVersion = Field(DEFAULT_VERSION, description="Kling model version.")
    image_url: OptionalMediaRef = Field("", description="First frame: makes this an image-to-video task.")
    image_tail_url: OptionalMediaRef = Field("", description="Last frame; needs image_url.")
    elements: list[Element] = Field(default_factory=list, max_length=4, description="Up to 4 reference images.")
    enable_audio: bool = Field(False, description="Native audio (versions 2.6 and 3.0).")
    prefer_multi_shots: bool = Field(False, description="Kling 3.0: let the model cut between shots.")
    multi_shots: list[Shot] = Field(default_factory=list, description="Kling 3.0: the shots, replacing prompt.")

    @model_validator(mode="after")
    def _rules(self) -> Self:
        if self.image_tail_url and not self.image_url:
            raise ValueError("image_tail_url: needs image_url (the first frame)")
        if self.elements and self.image_url:
            raise ValueError("elements: cannot be combined with image_url")
        if self.version == "3.0":
            if not 3 <= self.duration <= 15:
                raise ValueError("duration: Kling 3.0 makes 3 to 15 seconds")
            if self.multi_shots and not 3 <= sum(shot.duration for shot in self.multi_shots) <= 15:
                raise ValueError("multi_shots: the shots must add up to 3 to 15 seconds")
        else:
            if self.duration not in (5, 10):
                raise ValueError("duration: must be 5 or 10")
            if self.multi_shots or self.prefer_multi_shots:
                raise ValueError("multi_shots: only Kling 3.0 (version 3.0) makes multi-shot videos")
        if self.enable_audio and self.version not in AUDIO_VERSIONS:
            raise ValueError("enable_audio: only versions 2.6 and 3.0 generate audio")
        if not (self.prompt.strip() or self.image_url or self.multi_shots or self.elements):
            raise ValueError("prompt: required for text-to-video (no image_url)")
        return self

    def seconds(self) -> int:
        """The clip's length: the shots' sum when multi_shots replace the prompt, else `duration`."""
        return sum(shot.duration for shot in self.multi_shots) if self.multi_shots else self.duration


class KlingImageToVideo(KlingVideo):
    """`image2video`: `video_generation` with the first frame required."""

    image_url: MediaRef = Field(..., description="First frame (URL or base64).")


class KlingTurboVideo(TaskInput):
    prompt: Prompt = ""
    negative_prompt: NegativePrompt = ""
    cfg_scale: CfgScale = 0.5
    duration: Literal[5, 10] = Field(5, description="5 or 10 seconds.")
    aspect_ratio: VideoAspectRatio = Field("16:9", description="16:9, 9:16 or 1:1 (text-to-video).")
    mode: KlingMode = Field("pro", description="std or pro (priced the same).")
    version: Literal["2.5-turbo"] = Field("2.5-turbo", description="Kling 2.5 Turbo.")
    image_url: OptionalMediaRef = Field("", description="First frame: makes this an image-to-video task.")
    image_tail_url: OptionalMediaRef = Field("", description="Last frame; needs image_url.")

    @model_validator(mode="after")
    def _rules(self) -> Self:
        if self.image_tail_url and not self.image_url:
            raise ValueError("image_tail_url: needs image_url (the first frame)")
        if not (self.prompt.strip() or self.image_url):
            raise ValueError("prompt: required for text-to-video (no image_url)")
        return self


class KlingExtend(TaskInput):
    origin_task_id: str = Field(..., min_length=1, description="The Kling video task to extend (about 4.5 s).")
    prompt: Prompt = ""
    negative_prompt: NegativePrompt = ""
    cfg_scale: CfgScale = 0.5


class KlingLipSync(TaskInput):
    origin_task_id: str = Field(..., min_length=1, description="The Kling video task whose speaker is dubbed.")
    tts_text: str = Field("", max_length=120, description="Text to speak; ignored when local_dubbing_url is set.")
    tts_speed: float = Field(1.0, ge=0.8, le=2.0, description="Speech speed for tts_text.")
    tts_timbre: str = Field("", description="Voice for tts_text, from Kling's voice list.")
    local_dubbing_url: OptionalMediaRef = Field(
        "", description="Your own audio (mp3, wav, flac or ogg; under 20 MB and 60 s); replaces the TTS fields."
    )

    @model_validator(mode="after")
    def _speech(self) -> Self:
        if not (self.tts_text.strip() or self.local_dubbing_url):
            raise ValueError("tts_text: give the text to speak, or local_dubbing_url with your own audio")
        return self


class KlingEffects(TaskInput):
    image_url: MediaRef = Field(..., description="The image the effect animates.")
    effect: Literal["squish", "expansion"] = Field(..., description="squish or expansion.")
    mode: KlingMode = Field("std", description="std or pro.")


class KlingTryOn(TaskInput):
    model_input: MediaRef = Field(..., description="Photo of the person who tries the clothes on.")
    dress_input: OptionalMediaRef = Field("", description="A one-piece garment; or upper_input/lower_input.")
    upper_input: OptionalMediaRef = Field("", description="An upper-body garment.")
    lower_input: OptionalMediaRef = Field("", description="A lower-body garment.")
    batch_size: int = Field(1, ge=1, le=4, description="Images to generate, 1 to 4.")

    @model_validator(mode="after")
    def _garments(self) -> Self:
        if self.dress_input and (self.upper_input or self.lower_input):
            raise ValueError("dress_input: give a dress, or upper_input/lower_input, not both")
        if not (self.dress_input or self.upper_input or self.lower_input):
            raise ValueError("dress_input: give a garment (dress_input, or upper_input and/or lower_input)")
        return self


def video_usage_type(inputs: KlingVideo) -> str:
    """PiAPI reports Kling 3.0 tasks as "point" usage and older versions as "quota"."""
    return "point" if inputs.version == "3.0" else "quota"


def video_price(inputs: KlingVideo) -> int:
    """PiAPI's list price of a Kling clip (see the module's tables)."""
    if inputs.version == "3.0":
        return per_unit(USD_PER_SECOND_30[(inputs.mode, inputs.enable_audio)], inputs.seconds())
    if inputs.version == "2.6" and inputs.enable_audio:
        return usd(AUDIO_USD_PER_5S_26[inputs.mode]) * inputs.duration // 5
    return usd(USD_PER_5S[inputs.version][inputs.mode]) * inputs.duration // 5


def turbo_price(inputs: KlingTurboVideo) -> int:
    return usd(TURBO_USD_PER_5S) * inputs.duration // 5


def lip_sync_usage(_inputs: Any, output: dict[str, Any]) -> int:
    """$0.10 per started 5 s of the dubbed video (its `works[0].video.duration`, in milliseconds)."""
    works = output.get("works") or [{}]
    millis = int((works[0].get("video") or {}).get("duration") or LIP_SYNC_MAX_SECONDS * 1000)
    return usd(LIP_SYNC_USD_PER_5S) * max(1, ceil_div(millis, 5000))


def effects_price(inputs: KlingEffects) -> int:
    return usd(EFFECTS_USD[inputs.mode])


def try_on_price(inputs: KlingTryOn) -> int:
    return usd(TRY_ON_USD_PER_IMAGE) * inputs.batch_size


VIDEO_ORIGINS = DerivedFrom(
    models=(MODEL, TURBO_MODEL), task_types=("video_generation", "text2video", "image2video", "extend_video")
)
"""extend_video and lip_sync work on a Kling video (generated or already extended)."""


def _entry(model: str, task_type: str, input_model: type[TaskInput], price: Any, **extra: Any) -> CatalogEntry:
    return CatalogEntry(
        model=model,
        task_type=task_type,
        input_model=input_model,
        price=price,
        family=FAMILY,
        retention=VIDEO_RETENTION,
        **extra,
    )


ENTRIES: list[CatalogEntry] = [
    *(
        _entry(
            MODEL, task_type, input_model, video_price, description=description, usage_type_by_input=video_usage_type
        )
        for task_type, input_model, description in (
            ("video_generation", KlingVideo, "Kling text or image to video."),
            # The task types public PiAPI clients send (piapi-skills' `piapi-cli kling`): the same Kling call under
            # the names text2video and image2video, same fields and prices (docs/video-services.md).
            ("text2video", KlingVideo, "Kling text to video (video_generation)."),
            ("image2video", KlingImageToVideo, "Kling image to video (video_generation)."),
        )
    ),
    _entry(
        MODEL,
        "extend_video",
        KlingExtend,
        flat(EXTEND_USD),
        description="Continue a Kling video by about 4.5 seconds.",
        derived_from=VIDEO_ORIGINS,
    ),
    _entry(
        MODEL,
        "lip_sync",
        KlingLipSync,
        flat(LIP_SYNC_USD_PER_5S * LIP_SYNC_MAX_SECONDS / 5),
        description="Dub a Kling video's speaker with text-to-speech or your audio.",
        derived_from=VIDEO_ORIGINS,
        usage_price=lip_sync_usage,
    ),
    _entry(MODEL, "effects", KlingEffects, effects_price, description="Kling effect (squish, expansion) on a photo."),
    _entry(MODEL, "ai_try_on", KlingTryOn, try_on_price, description="Kling virtual try-on (images)."),
    _entry(
        TURBO_MODEL,
        "video_generation",
        KlingTurboVideo,
        turbo_price,
        description="Kling 2.5 Turbo text or image to video.",
        usage_type="llm",
    ),
]

EXAMPLE_INPUTS: dict[str, dict[str, Any]] = {
    "video_generation": {
        "prompt": "Close-up, static camera, a woman in swim suit near the sea is introducing herself.",
        "negative_prompt": "",
        "cfg_scale": 0.5,
        "duration": 5,
        "aspect_ratio": "16:9",
        "camera_control": {
            "type": "simple",
            "config": {"horizontal": 0, "vertical": 0, "pan": -10, "tilt": 0, "roll": 0, "zoom": 0},
        },
        "mode": "std",
        "version": "1.6",
    },
    "text2video": {"prompt": "A red fox runs through fresh snow at dawn.", "duration": 5, "mode": "std"},
    "image2video": {"prompt": "The fox turns its head.", "image_url": "https://example.com/fox.png", "duration": 5},
    "extend_video": {"origin_task_id": "<origin_task_id>"},
    "lip_sync": {
        "origin_task_id": "<origin_task_id>",
        "tts_text": "Hello, this is a lip sync example.",
        "tts_timbre": "Rock",
        "tts_speed": 1,
        "local_dubbing_url": "",
    },
    "effects": {"image_url": "https://example.com/cat.png", "effect": "squish"},
    "ai_try_on": {
        "model_input": "https://example.com/person.png",
        "dress_input": "https://example.com/dress.png",
        "batch_size": 1,
    },
}
TURBO_EXAMPLE_INPUTS: dict[str, dict[str, Any]] = {
    "video_generation": {
        "prompt": "Close-up, static camera, a woman in swim suit near the sea is introducing herself.",
        "negative_prompt": "",
        "image_url": "",
        "duration": 5,
        "aspect_ratio": "16:9",
        "mode": "pro",
        "version": "2.5-turbo",
    }
}
