"""Inline media decoding, magic-byte sniffing and upload file-name rules."""

from __future__ import annotations

import base64

import pytest

from genmill.errors import FetchError, InvalidRequest, PayloadTooLarge
from genmill.net.media import (
    ALLOWED_UPLOAD_EXTENSIONS,
    content_type_for_extension,
    decode_inline,
    safe_file_name,
    sniff_content_type,
)

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\rIHDR" + b"\x00" * 17
JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + b"\x00" * 16


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


# --- decode_inline ---


def test_data_uri_keeps_declared_type() -> None:
    result = decode_inline(f"data:image/png;base64,{b64(PNG)}", field="input.image", max_bytes=1024)
    assert result is not None
    assert result.data == PNG
    assert result.content_type == "image/png"


def test_data_uri_without_type_is_sniffed() -> None:
    result = decode_inline(f"data:;base64,{b64(JPEG)}", field="input.image", max_bytes=1024)
    assert result is not None
    assert result.content_type == "image/jpeg"


def test_data_uri_octet_stream_is_sniffed() -> None:
    uri = f"DATA:application/octet-stream;BASE64,{b64(PNG)}"
    result = decode_inline(uri, field="input.image", max_bytes=1024)
    assert result is not None
    assert result.content_type == "image/png"


def test_bare_base64_is_sniffed_and_whitespace_tolerated() -> None:
    text = b64(PNG)
    wrapped = "\n".join(text[i : i + 8] for i in range(0, len(text), 8))
    result = decode_inline(f"  {wrapped}\n", field="input.image", max_bytes=1024)
    assert result is not None
    assert result.data == PNG
    assert result.content_type == "image/png"


def test_unknown_bytes_are_octet_stream() -> None:
    result = decode_inline(b64(b"hello world!"), field="input.file", max_bytes=1024)
    assert result is not None
    assert result.content_type == "application/octet-stream"


@pytest.mark.parametrize("url", ["http://example.com/a.png", "HTTPS://example.com/a.png", " https://x/y"])
def test_urls_are_not_decoded(url: str) -> None:
    assert decode_inline(url, field="input.image", max_bytes=10) is None


@pytest.mark.parametrize(
    "ref",
    [
        "not base64!",
        "abc",  # wrong length
        "ab=c",  # padding in the middle
        "file:///etc/passwd",
        "ftp://example.com/a.png",
        "data:image/png;base64,@@@@",
    ],
)
def test_invalid_base64_names_the_field(ref: str) -> None:
    with pytest.raises(FetchError, match=r"^input\.image: "):
        decode_inline(ref, field="input.image", max_bytes=1024)


@pytest.mark.parametrize("ref", ["", "   ", "data:image/png;base64,", "data:image/png;base64,  \n"])
def test_empty_data_is_refused(ref: str) -> None:
    with pytest.raises(FetchError, match=r"input\.image: data is empty"):
        decode_inline(ref, field="input.image", max_bytes=1024)


def test_non_base64_data_uri_is_refused() -> None:
    with pytest.raises(FetchError, match="must be base64-encoded"):
        decode_inline("data:text/plain,hello", field="input.image", max_bytes=1024)


def test_data_uri_with_bad_media_type_is_refused() -> None:
    with pytest.raises(FetchError, match="invalid media type"):
        decode_inline(f"data:<script>;base64,{b64(PNG)}", field="input.image", max_bytes=1024)


def test_too_large_by_estimate() -> None:
    with pytest.raises(PayloadTooLarge, match=r"input\.image: .*100-byte limit"):
        decode_inline(b64(b"x" * 101), field="input.image", max_bytes=100)


def test_exactly_at_limit_is_accepted() -> None:
    result = decode_inline(b64(b"x" * 100), field="input.image", max_bytes=100)
    assert result is not None
    assert len(result.data) == 100


def test_absurdly_long_string_is_refused_before_decoding() -> None:
    # Not even valid base64: the length check must fire before any decoding is attempted.
    with pytest.raises(PayloadTooLarge):
        decode_inline("!" * 10_000, field="input.image", max_bytes=100)


# --- sniff_content_type ---


def ftyp(brand: bytes) -> bytes:
    return b"\x00\x00\x00\x18ftyp" + brand + b"\x00\x00\x02\x00" + brand + b"isom"


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (PNG, "image/png"),
        (JPEG, "image/jpeg"),
        (b"RIFF\x24\x00\x00\x00WEBPVP8 ", "image/webp"),
        (b"GIF89a\x01\x00\x01\x00", "image/gif"),
        (b"GIF87a\x01\x00\x01\x00", "image/gif"),
        (ftyp(b"isom"), "video/mp4"),
        (ftyp(b"mp42"), "video/mp4"),
        (ftyp(b"qt  "), "video/quicktime"),
        (ftyp(b"M4A "), "audio/mp4"),
        (b"\x1a\x45\xdf\xa3\x9f\x42\x86\x81\x01\x42\x82\x84webm", "video/webm"),
        (b"ID3\x04\x00\x00\x00\x00\x00\x00", "audio/mpeg"),
        (b"\xff\xfb\x90\x64\x00\x00", "audio/mpeg"),  # MPEG-1 layer III frame header
        (b"RIFF\x24\x00\x00\x00WAVEfmt ", "audio/wav"),
        (b"fLaC\x00\x00\x00\x22", "audio/flac"),
        (b"OggS\x00\x02\x00\x00", "audio/ogg"),
        (b"glTF\x02\x00\x00\x00\x00\x01\x00\x00", "model/gltf-binary"),
    ],
)
def test_sniff_known_formats(data: bytes, expected: str) -> None:
    assert sniff_content_type(data) == expected


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"<html><body>hi</body></html>",
        b"RIFF\x24\x00\x00\x00AVI LIST",
        b"\xff\xf1\x50\x80",  # AAC ADTS (layer bits 00), not MPEG audio
        b"\xff\xfb\xf0\x64",  # bitrate index 15 is invalid
        ftyp(b"heic"),
        b"PK\x03\x04",
    ],
)
def test_sniff_unknown(data: bytes) -> None:
    assert sniff_content_type(data) is None


# --- extensions ---


def test_allowed_extensions() -> None:
    assert {
        "jpg", "jpeg", "png", "webp", "gif", "mp4", "mov", "webm", "mp3", "wav", "m4a", "flac", "ogg", "glb",
    } == ALLOWED_UPLOAD_EXTENSIONS  # fmt: skip


@pytest.mark.parametrize(
    ("ext", "expected"),
    [("png", "image/png"), (".JPG", "image/jpeg"), ("mov", "video/quicktime"), ("glb", "model/gltf-binary"),
     ("exe", "application/octet-stream")],
)  # fmt: skip
def test_content_type_for_extension(ext: str, expected: str) -> None:
    assert content_type_for_extension(ext) == expected


# --- safe_file_name ---


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("cat.png", "cat.png"),
        ("Cat.PNG", "Cat.PNG"),
        ("../../etc/passwd.png", "passwd.png"),
        ("..\\..\\windows\\evil.jpg", "evil.jpg"),
        ("/abs/path/clip.mp4", "clip.mp4"),
        ("my photo (1).jpeg", "my_photo__1_.jpeg"),
        ("naïve;rm -rf.webp", "na_ve_rm_-rf.webp"),
        ("a\x00b.png", "a_b.png"),
        (".hidden.png", "_hidden.png"),
        ("x" * 124 + ".png", "x" * 124 + ".png"),
    ],
)
def test_safe_file_name_accepts_and_flattens(name: str, expected: str) -> None:
    assert safe_file_name(name) == expected


@pytest.mark.parametrize(
    ("name", "rule"),
    [
        ("evil.exe", "extension must be one of"),
        ("noext", "extension must be one of"),
        ("archive.png.sh", "extension must be one of"),
        ("x" * 125 + ".png", "at most 128 characters"),
        ("", "must name a file"),
        ("dir/", "must name a file"),
        ("..", "must name a file"),
        ("a/.", "must name a file"),
        (".png", "name before the extension"),
    ],
)
def test_safe_file_name_rejects(name: str, rule: str) -> None:
    with pytest.raises(InvalidRequest, match=rf"^file_name: .*{rule}"):
        safe_file_name(name)
