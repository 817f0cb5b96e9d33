"""Field types, nested settings, size limits and price helpers shared by the families' catalog schemas.

Media inputs (images, videos, audio) are plain strings: an http(s) URL, a `data:` URI, a path on this
server, or bare base64. The catalog only checks their shape; nothing is fetched here.
"""

from __future__ import annotations

import base64
import binascii
import math
import re
from collections.abc import Callable
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from genmill.domain.catalog import TaskInput, usd
from genmill.domain.media_inputs import MEDIA_INPUT

# --------------------------------------------------------------------------------------------------
# Media references
# --------------------------------------------------------------------------------------------------

_BASE64_CHARS = re.compile(r"^[A-Za-z0-9+/=_\-\s]+$")


def check_media_ref(value: str) -> str:
    """A media reference's shape: an http(s) URL with a host, a data: URI with a payload, a server path or
    base64; nothing is fetched or decoded."""
    ref = value.strip()
    if not ref:
        raise ValueError("must be a URL, a data: URI or base64 data, not empty")
    lowered = ref[:16].lower()
    if lowered.startswith(("http://", "https://")):
        if not urlsplit(ref).netloc:
            raise ValueError("URL has no host")
        return ref
    if lowered.startswith("data:"):
        if "," not in ref:
            raise ValueError("data: URI has no payload")
        return ref
    if ref.startswith("/"):
        return ref  # a path on this server (an uploaded file or an earlier output)
    if not _BASE64_CHARS.match(ref[:4096]):
        raise ValueError("must be an http(s) URL, a data: URI or base64 data")
    return ref


MediaRef = Annotated[str, AfterValidator(check_media_ref), MEDIA_INPUT]
"""A required media input: URL, data: URI, server path or base64. `MEDIA_INPUT` marks it as media: inline data
in it is stored as an upload when the task is created, and the stored input holds the file's URL."""


def _check_optional_media_ref(value: str) -> str:
    return value if value == "" else check_media_ref(value)


OptionalMediaRef = Annotated[str, AfterValidator(_check_optional_media_ref), MEDIA_INPUT]
"""An optional media input; the empty string means "not given" (PiAPI echoes unset media as "")."""

MAX_INPUT_SIDE = 2048
"""API.md: image-toolkit inputs are at most 2048x2048; the backends of every family load image inputs within it."""


# --------------------------------------------------------------------------------------------------
# Inline video checks (what can be known from the input alone, without fetching)
# --------------------------------------------------------------------------------------------------

MAX_VIDEO_BYTES = 10 * 1024 * 1024
"""Video toolkit inputs are at most 10 MB."""


def _inline_payload(ref: str) -> tuple[str, str] | None:
    """(media type, base64 payload) of an inline value, or None for URLs and paths."""
    if ref[:8].lower().startswith(("http://", "https://")) or ref.startswith("/"):
        return None
    if ref[:5].lower() == "data:":
        header, _, payload = ref.partition(",")
        media_type = header[5:].split(";", 1)[0].strip().lower()
        if ";base64" not in header.lower():
            raise ValueError("video data: URI must be base64-encoded")
        return media_type, payload
    return "", ref


def _decoded_size(payload: str) -> int:
    compact = "".join(payload.split())
    return len(compact) * 3 // 4 - compact[-2:].count("=")


def _looks_like_mp4(payload: str) -> bool:
    head = "".join(payload[:64].split())[:16]
    try:
        raw = base64.b64decode(head + "=" * (-len(head) % 4), validate=False)
    except (binascii.Error, ValueError):
        return False
    return raw[4:8] == b"ftyp"


def mp4_video_ref(*, max_bytes: int = MAX_VIDEO_BYTES) -> AfterValidator:
    """Validator for a video input that must be an MP4 of at most `max_bytes`.

    URLs and server paths are checked by extension only when they have one; inline data (data: URI or base64)
    is checked for its media type, its decoded size and the MP4 `ftyp` signature.
    """

    def check(value: str) -> str:
        ref = check_media_ref(value)
        inline = _inline_payload(ref)
        if inline is None:
            path = urlsplit(ref).path.lower()
            name = path.rsplit("/", 1)[-1]
            if "." in name and not name.endswith(".mp4"):
                raise ValueError("video must be an MP4 file (.mp4)")
            return ref
        media_type, payload = inline
        if media_type and media_type != "video/mp4":
            raise ValueError(f"video must be video/mp4, not {media_type}")
        if _decoded_size(payload) > max_bytes:
            raise ValueError(f"video is larger than {max_bytes // (1024 * 1024)} MB")
        if not _looks_like_mp4(payload):
            raise ValueError("video data is not an MP4 file")
        return ref

    return AfterValidator(check)


def video_size_limit(*, max_bytes: int = MAX_VIDEO_BYTES) -> AfterValidator:
    """Validator for a video input of any container whose inline data must not exceed `max_bytes`."""

    def check(value: str) -> str:
        ref = check_media_ref(value)
        inline = _inline_payload(ref)
        if inline is not None and _decoded_size(inline[1]) > max_bytes:
            raise ValueError(f"video is larger than {max_bytes // (1024 * 1024)} MB")
        return ref

    return AfterValidator(check)


# --------------------------------------------------------------------------------------------------
# Common scalar fields
# --------------------------------------------------------------------------------------------------

Seed = Annotated[int, Field(ge=-1, description="Random seed; -1 picks one at random.")]
NegativePrompt = Annotated[str, Field(description="What to keep out of the result.")]

FACE_INDEX_PATTERN = r"^\s*\d+\s*(,\s*\d+\s*)*$"
FaceIndexes = Annotated[
    str,
    Field(
        pattern=FACE_INDEX_PATTERN,
        description='Comma-separated face indexes as labelled by the detector, e.g. "0" or "1,0".',
    ),
]


def face_index_count(indexes: str) -> int:
    return len([part for part in indexes.split(",") if part.strip()])


# --------------------------------------------------------------------------------------------------
# Nested settings
# --------------------------------------------------------------------------------------------------


class Setting(BaseModel):
    """Base of nested input objects; like TaskInput, unknown keys are kept."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)


class LoraSetting(Setting):
    """One LoRA adapter to apply (Flux, WanX, Hunyuan)."""

    lora_type: str = Field(..., min_length=1, description="Name of the LoRA, from the published LoRA list.")
    lora_strength: float = Field(1.0, ge=0.0, le=2.0, description="How strongly the LoRA applies.")
    lora_image: OptionalMediaRef = Field("", description="Reference image for LoRAs that take one.")


LoraList = Annotated[list[LoraSetting], Field(min_length=1, max_length=4)]
"""A non-empty list of LoRA settings (at most 4 adapters at once, our choice)."""

VideoAspectRatio = Literal["16:9", "9:16", "1:1"]


# --------------------------------------------------------------------------------------------------
# Prices (integer credits; 1 USD = 10,000,000 credits)
# --------------------------------------------------------------------------------------------------


def ceil_div(numerator: int, denominator: int) -> int:
    return -(-numerator // denominator)


def flat(amount_usd: float) -> Callable[[Any], int]:
    """A price function for a fixed per-task price."""
    credits = usd(amount_usd)

    def price(_inputs: Any) -> int:
        return credits

    return price


def per_unit(amount_usd: float, units: int, *, per: int = 1) -> int:
    """`amount_usd` per `per` units, for `units` units, rounded up to a whole credit."""
    return ceil_div(usd(amount_usd) * units, per)


def counted(output: dict[str, Any], field: str) -> float | None:
    """The positive quantity a backend reported in `output[field]` (frames, seconds), or None when it did not."""
    value = output.get(field)
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        return None
    return float(value)


def usage_per_unit(field: str, price_for: Callable[[int], int], cap: int) -> Callable[[Any, dict[str, Any]], int]:
    """A `usage_price` for an entry priced per unit of something only the run knows (frames, seconds): the price
    of the whole units the output reports in `field`, rounded up and at most `cap` units; the cap's price when
    the output does not say (a backend that cannot count, such as an upstream service)."""

    def usage(_inputs: Any, output: dict[str, Any]) -> int:
        quantity = counted(output, field)
        units = cap if quantity is None else min(cap, max(1, math.ceil(quantity)))
        return price_for(units)

    return usage


__all__ = [
    "MAX_VIDEO_BYTES",
    "MEDIA_INPUT",
    "FaceIndexes",
    "LoraList",
    "LoraSetting",
    "MediaRef",
    "NegativePrompt",
    "OptionalMediaRef",
    "Seed",
    "Setting",
    "TaskInput",
    "VideoAspectRatio",
    "ceil_div",
    "check_media_ref",
    "counted",
    "face_index_count",
    "flat",
    "mp4_video_ref",
    "per_unit",
    "usage_per_unit",
    "video_size_limit",
]
