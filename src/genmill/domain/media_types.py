"""Which media types a worker may store as outputs, and which of them `/files/` lets a browser show inline.

Stored files are served from the API's own origin. A file a browser renders as a page there (HTML, SVG, XML, a
script) runs with that origin, so a worker of a private pool could plant active content next to the API. Two
rules keep that out, both decided here:

- an output's content type must be a plain `type/subtype` (RFC 6838 names, no parameters, so nothing like
  `image/../text/html` or a CR/LF can reach a response header) of a media family (image, video, audio, model) or
  `application/octet-stream`, and never XML-based (SVG can carry scripts);
- `/files/` serves inline only the raster images, videos and sounds a browser plays as they are; everything else
  is served as an attachment, which a browser saves instead of opening.
"""

from __future__ import annotations

import re

OCTET_STREAM = "application/octet-stream"

OUTPUT_FAMILIES = ("image", "video", "audio", "model")
"""Top-level types a worker may store (besides `application/octet-stream`)."""

INLINE_TYPES = frozenset(
    {
        "image/png",
        "image/jpeg",
        "image/gif",
        "image/webp",
        "image/avif",
        "video/mp4",
        "video/webm",
        "video/quicktime",
        "video/ogg",
        "audio/mpeg",
        "audio/wav",
        "audio/x-wav",
        "audio/wave",
        "audio/mp4",
        "audio/aac",
        "audio/flac",
        "audio/ogg",
        "audio/webm",
    }
)
"""Media types `/files/` serves inline: formats a browser only displays or plays, none that can run script."""

MAX_MEDIA_TYPE = 100

_NAME = r"[a-z0-9][a-z0-9!#$&^_.+-]{0,62}"
_MEDIA_TYPE = re.compile(rf"{_NAME}/{_NAME}")
"""RFC 6838's restricted names (lower case): no slash, space, quote, semicolon or control character in either."""


def parse_media_type(value: str) -> str | None:
    """`value` as a lower-case `type/subtype` when it is exactly one (no parameters, nothing else), else None."""
    if len(value) > MAX_MEDIA_TYPE or not value.isascii():
        return None
    lowered = value.lower()
    return lowered if _MEDIA_TYPE.fullmatch(lowered) else None


def is_active_content(media_type: str) -> bool:
    """Whether a browser may treat a file of this (parsed) type as a document that runs script: XML-based types
    (`image/svg+xml`, `*+xml`) are; the other output families are not."""
    subtype = media_type.partition("/")[2]
    return subtype == "xml" or subtype.endswith("+xml")


def output_type_refusal(content_type: str) -> str | None:
    """Why a worker may not store an output declared as `content_type`, or None when it may."""
    media_type = parse_media_type(content_type)
    shown = content_type[:MAX_MEDIA_TYPE]
    if media_type is None:
        return f"content_type: {shown!r} is not a media type: send exactly type/subtype, without parameters"
    if media_type != OCTET_STREAM and media_type.partition("/")[0] not in OUTPUT_FAMILIES:
        families = ", ".join(f"{family}/" for family in OUTPUT_FAMILIES)
        return f"content_type: outputs must be media ({families} or {OCTET_STREAM}), not {media_type!r}"
    if is_active_content(media_type):
        return f"content_type: {media_type!r} can carry scripts (XML-based); store a raster image or a media file"
    return None


def served_inline(content_type: str) -> bool:
    """Whether `/files/` may let a browser show a stored file of `content_type` in place (else: an attachment)."""
    return parse_media_type(content_type) in INLINE_TYPES


def served_type(content_type: str) -> str:
    """The Content-Type `/files/` sends for a stored file: the stored type when well formed, else octet-stream
    (a file stored before the output rule existed can never break the response's headers)."""
    return parse_media_type(content_type) or OCTET_STREAM
