"""The output content-type rule and the inline allow-list of `/files/` (genmill.domain.media_types)."""

from __future__ import annotations

import pytest

from genmill.domain.media_types import (
    INLINE_TYPES,
    OCTET_STREAM,
    output_type_refusal,
    parse_media_type,
    served_inline,
    served_type,
)


@pytest.mark.parametrize(
    ("declared", "parsed"),
    [
        ("image/png", "image/png"),
        ("IMAGE/PNG", "image/png"),
        ("model/gltf-binary", "model/gltf-binary"),
        ("application/vnd.api+json", "application/vnd.api+json"),
        ("image/../text/html", None),
        ("image/png; charset=x", None),
        ("image/png\r\nSet-Cookie: a=b", None),
        ("image/png\n", None),
        (" image/png", None),
        ("image/", None),
        ("/png", None),
        ("image/pn\u00e9", None),
        ("image/" + "p" * 200, None),
    ],
)
def test_a_media_type_is_exactly_type_slash_subtype(declared: str, parsed: str | None) -> None:
    assert parse_media_type(declared) == parsed


@pytest.mark.parametrize(
    "declared",
    ["image/png", "Image/PNG", "video/mp4", "audio/wav", "model/gltf-binary", OCTET_STREAM],
)
def test_media_outputs_are_allowed(declared: str) -> None:
    assert output_type_refusal(declared) is None


@pytest.mark.parametrize(
    ("declared", "reason"),
    [
        ("image/svg+xml", "can carry scripts"),
        ("IMAGE/SVG+XML", "can carry scripts"),
        ("model/vnd.collada+xml", "can carry scripts"),
        ("text/html", "outputs must be media"),
        ("application/xml", "outputs must be media"),
        ("application/javascript", "outputs must be media"),
        ("image/../text/html", "not a media type"),
        ("image/png\r\nX-Injected: 1", "not a media type"),
        ("image/png; charset=utf-8", "not a media type"),
        ("", "not a media type"),
    ],
)
def test_active_malformed_or_non_media_outputs_are_refused(declared: str, reason: str) -> None:
    refusal = output_type_refusal(declared)
    assert refusal is not None and refusal.startswith("content_type: ") and reason in refusal


def test_only_raster_images_video_and_sound_are_served_inline() -> None:
    assert all(served_inline(media) for media in INLINE_TYPES)
    assert served_inline("IMAGE/PNG")
    for other in ("image/svg+xml", "text/html", "application/xml", OCTET_STREAM, "model/gltf-binary", "image/bmp"):
        assert not served_inline(other), other


def test_a_malformed_stored_type_is_served_as_octet_stream() -> None:
    assert served_type("image/png") == "image/png"
    assert served_type("image/png\r\nX-Injected: 1") == OCTET_STREAM
    assert served_type("image/../text/html") == OCTET_STREAM
