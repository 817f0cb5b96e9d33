"""Pure helpers for client-supplied media: inline base64 decoding, magic-byte sniffing and upload names.

Nothing here does I/O. Every client-controlled value is checked before any expensive work is done: the decoded
size of a base64 payload is estimated from its length before it is decoded, so an absurdly long string is
refused without allocating its decoded form, and upload file names are reduced to a flat, harmless basename
before they can reach a storage path.
"""

from __future__ import annotations

import base64
import binascii
import re

from genmill.domain.records import InputFile
from genmill.errors import FetchError, InvalidRequest, PayloadTooLarge

OCTET_STREAM = "application/octet-stream"

_CONTENT_TYPE_BY_EXTENSION: dict[str, str] = {
    "jpg": "image/jpeg",
    "jpeg": "image/jpeg",
    "png": "image/png",
    "webp": "image/webp",
    "gif": "image/gif",
    "mp4": "video/mp4",
    "mov": "video/quicktime",
    "webm": "video/webm",
    "mp3": "audio/mpeg",
    "wav": "audio/wav",
    "m4a": "audio/mp4",
    "flac": "audio/flac",
    "ogg": "audio/ogg",
    "glb": "model/gltf-binary",
}

ALLOWED_UPLOAD_EXTENSIONS: frozenset[str] = frozenset(_CONTENT_TYPE_BY_EXTENSION)
"""Lower-case extensions (without the dot) that an uploaded file may have."""

MAX_FILE_NAME_LENGTH = 128

_UNSAFE_NAME_CHARS = re.compile(r"[^A-Za-z0-9._-]")
_MIME_TYPE = re.compile(r"^[a-z0-9][a-z0-9.+-]*/[a-z0-9][a-z0-9.+-]*$")
_WHITESPACE = re.compile(r"\s+")
_NOT_INLINE = "not a valid http(s) URL, data URI or base64 data"

# Generous slack for line-wrapped base64 (MIME wraps at 76 characters plus CRLF, about 3% extra): a payload
# longer than this many characters per allowed decoded byte cannot fit whatever its whitespace.
_MAX_RAW_CHARS_PER_BYTE = 3


def is_http_url(ref: str) -> bool:
    """True when `ref` is an http(s) URL (case-insensitive scheme), which is fetched rather than decoded."""
    head = ref.lstrip()[:8].lower()
    return head.startswith(("http://", "https://"))


def decode_inline(ref: str, *, field: str, max_bytes: int) -> InputFile | None:
    """Decode a `data:<mime>;base64,...` URI or bare base64 into an `InputFile`; None for an http(s) URL.

    Base64 is decoded strictly (standard alphabet, correct padding, whitespace allowed between characters),
    so a typo or a stray path is reported rather than silently turned into garbage bytes. The content type is
    the one the data URI declares; when none is declared (or it is octet-stream) it is sniffed from the bytes.

    Raises `FetchError` naming `field` for malformed input or empty data, and `PayloadTooLarge` when the
    decoded size would exceed `max_bytes`.
    """
    if is_http_url(ref):
        return None
    declared = ""
    payload = ref
    stripped = ref.lstrip()
    if stripped[:5].lower() == "data:":
        declared, payload = _split_data_uri(stripped, field=field)
    data = _decode_base64(payload, field=field, max_bytes=max_bytes)
    content_type = declared if declared and declared != OCTET_STREAM else ""
    content_type = content_type or sniff_content_type(data) or declared or OCTET_STREAM
    return InputFile(data=data, content_type=content_type)


def _split_data_uri(uri: str, *, field: str) -> tuple[str, str]:
    """Split a data URI into (media type, base64 payload); only the base64 form is accepted."""
    header, sep, payload = uri.partition(",")
    if not sep:
        raise FetchError(f"{field}: data URI has no ',' separating the header from the data")
    params = [part.strip().lower() for part in header[5:].split(";")]
    if "base64" not in params[1:]:
        raise FetchError(f"{field}: data URI must be base64-encoded (data:<mime>;base64,<data>)")
    mime = params[0]
    if mime and not _MIME_TYPE.match(mime):
        raise FetchError(f"{field}: data URI has an invalid media type {mime[:64]!r}")
    return mime, payload


def _decode_base64(payload: str, *, field: str, max_bytes: int) -> bytes:
    """Strictly decode base64 after checking, from the length alone, that the result would fit."""
    too_large = f"{field}: decoded data is larger than the {max_bytes}-byte limit"
    if len(payload) > _MAX_RAW_CHARS_PER_BYTE * max_bytes + 1024:
        raise PayloadTooLarge(too_large)
    compact = _WHITESPACE.sub("", payload)
    if not compact:
        raise FetchError(f"{field}: data is empty")
    if len(compact) % 4:
        raise FetchError(f"{field}: {_NOT_INLINE} (base64 length must be a multiple of 4)")
    estimated = len(compact) // 4 * 3 - compact[-2:].count("=")
    if estimated > max_bytes:
        raise PayloadTooLarge(too_large)
    try:
        data = base64.b64decode(compact, validate=True)
    except (binascii.Error, ValueError):
        raise FetchError(f"{field}: {_NOT_INLINE} (invalid base64 characters or padding)") from None
    if not data:
        raise FetchError(f"{field}: data is empty")
    if len(data) > max_bytes:
        raise PayloadTooLarge(too_large)
    return data


def sniff_content_type(data: bytes) -> str | None:
    """Guess a media type from magic bytes; None when the bytes match none of the supported formats.

    Used when a server or client says "application/octet-stream" (or nothing), so that a backend still learns
    what it was given. Only the formats genmill accepts are recognised.
    """
    head = data[:64]
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if head.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if head.startswith((b"GIF87a", b"GIF89a")):
        return "image/gif"
    if head.startswith(b"RIFF") and len(head) >= 12:
        return {b"WEBP": "image/webp", b"WAVE": "audio/wav"}.get(head[8:12])
    if len(head) >= 12 and head[4:8] == b"ftyp":
        return _sniff_iso_media(head[8:12])
    if head.startswith(b"\x1a\x45\xdf\xa3"):
        return "video/webm" if b"webm" in data[:256] else "video/x-matroska"
    if head.startswith(b"fLaC"):
        return "audio/flac"
    if head.startswith(b"OggS"):
        return "audio/ogg"
    if head.startswith(b"glTF"):
        return "model/gltf-binary"
    if head.startswith(b"ID3") or _is_mpeg_audio_frame(head):
        return "audio/mpeg"
    return None


def _sniff_iso_media(brand: bytes) -> str | None:
    """Map an ISO base media (`ftyp`) major brand to a media type."""
    if brand == b"qt  ":
        return "video/quicktime"
    if brand in (b"M4A ", b"M4B "):
        return "audio/mp4"
    if brand in (b"heic", b"heix", b"mif1", b"msf1", b"avif", b"avis"):
        return None  # still-image containers that share the box format; not accepted media
    return "video/mp4"


def _is_mpeg_audio_frame(head: bytes) -> bool:
    """True for an MPEG audio frame header (11 sync bits, valid version, layer, bitrate and sample rate)."""
    if len(head) < 4 or head[0] != 0xFF or head[1] & 0xE0 != 0xE0:
        return False
    version = (head[1] >> 3) & 0x03
    layer = (head[1] >> 1) & 0x03
    bitrate = head[2] >> 4
    sample_rate = (head[2] >> 2) & 0x03
    return version != 0b01 and layer != 0b00 and bitrate != 0x0F and sample_rate != 0x03


def content_type_for_extension(ext: str) -> str:
    """Media type for a file extension (with or without the dot, any case); octet-stream when unknown."""
    return _CONTENT_TYPE_BY_EXTENSION.get(ext.lower().lstrip("."), OCTET_STREAM)


def extension_for_content_type(content_type: str) -> str:
    """The usual extension (without the dot) of an accepted media type; "bin" for any other type."""
    wanted = content_type.split(";", 1)[0].strip().lower()
    return next((ext for ext, known in _CONTENT_TYPE_BY_EXTENSION.items() if known == wanted), "bin")


def safe_file_name(name: str) -> str:
    """Validate an upload file name and return a flat, storage-safe version of it.

    Any directory part is dropped (both `/` and `\\` count as separators) so a name can never steer where a
    file is written, and characters outside `[A-Za-z0-9._-]` become `_`. Raises `InvalidRequest` naming
    `file_name` when the name is too long, has nothing left after flattening, or has an extension that is not
    in `ALLOWED_UPLOAD_EXTENSIONS`.
    """
    if len(name) > MAX_FILE_NAME_LENGTH:
        limit = MAX_FILE_NAME_LENGTH
        raise InvalidRequest(f"file_name: must be at most {limit} characters (got {len(name)})")
    base = name.replace("\\", "/").rsplit("/", 1)[-1].strip()
    if base in ("", ".", ".."):
        raise InvalidRequest("file_name: must name a file, not be empty or a directory path")
    safe = _UNSAFE_NAME_CHARS.sub("_", base)
    stem, dot, ext = safe.rpartition(".")
    if not dot or ext.lower() not in ALLOWED_UPLOAD_EXTENSIONS:
        allowed = ", ".join(sorted(ALLOWED_UPLOAD_EXTENSIONS))
        raise InvalidRequest(f"file_name: extension must be one of {allowed}")
    if not stem.strip("."):
        raise InvalidRequest("file_name: must have a name before the extension")
    if safe.startswith("."):
        safe = "_" + safe.lstrip(".")
    return safe
