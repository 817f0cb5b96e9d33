"""Which input values are inline media: only fields of the catalog's media types, nested settings included."""

from __future__ import annotations

import base64
from typing import Any

import pytest
from tests.support import png_bytes

from genmill.domain.catalog import Catalog
from genmill.domain.media_inputs import inline_media, is_inline, replace_at

PNG_B64 = base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\0" * 32).decode()
DATA_URI = "data:image/png;base64," + PNG_B64
URL = "https://example.com/a.png"
REAL_PNG = "data:image/png;base64," + base64.b64encode(png_bytes(4, 4)).decode()


def found(catalog: Catalog, model: str, task_type: str, raw: dict[str, Any]) -> list[tuple[str, str]]:
    entry = catalog.get(model, task_type)
    assert entry is not None
    return [(m.field, m.value) for m in inline_media(entry.input_model.model_validate(raw))]


@pytest.mark.parametrize(
    ("value", "inline"),
    [(DATA_URI, True), (PNG_B64, True), (URL, False), ("HTTP://x.org/a", False), ("/files/a.png", False), ("", False)],
)
def test_what_counts_as_inline(value: str, inline: bool) -> None:
    assert is_inline(value) is inline


def test_nested_media_are_found_and_prompts_never(catalog: Catalog) -> None:
    raw = {
        "prompt": PNG_B64,  # looks like base64, but a prompt is never media
        "negative_prompt": DATA_URI,
        "lora_settings": [{"lora_type": "x", "lora_image": DATA_URI}, {"lora_type": "y", "lora_image": URL}],
        "control_net_settings": [{"control_type": "depth", "control_image": PNG_B64}],
        "extra_key": DATA_URI,  # an unknown key is echoed, never stored as a file
    }
    assert found(catalog, "Qubico/flux1-dev-advanced", "controlnet-lora", raw) == [
        ("lora_settings.0.lora_image", DATA_URI),
        ("control_net_settings.0.control_image", PNG_B64),
    ]


def test_every_media_type_of_the_catalog_is_marked(catalog: Catalog) -> None:
    cases: list[tuple[str, str, dict[str, Any], str]] = [
        ("Qubico/image-toolkit", "upscale", {"image": REAL_PNG}, "image"),  # ToolkitImage
        ("Qubico/flux1-dev", "img2img", {"prompt": "p", "image": DATA_URI}, "image"),  # MediaRef
        ("Qubico/tts", "zero-shot", {"gen_text": "hi", "ref_audio": DATA_URI}, "ref_audio"),  # OptionalMediaRef
    ]
    for model, task_type, raw, field in cases:
        assert [name for name, _ in found(catalog, model, task_type, raw)] == [field], (model, task_type)
    mp4 = "data:video/mp4;base64," + base64.b64encode(b"\0\0\0\x18ftypisom" + b"\0" * 16).decode()
    assert [f for f, _ in found(catalog, "Qubico/video-toolkit", "upscale", {"video": mp4})] == ["video"]  # Mp4Video
    video = "data:video/webm;base64," + PNG_B64
    assert [f for f, _ in found(catalog, "Qubico/video-toolkit", "background-remove", {"video": video})] == ["video"]


def test_replace_at_sets_a_nested_value() -> None:
    stored: dict[str, Any] = {"settings": [{"image": "a"}, {"image": "b"}], "prompt": "p"}
    replace_at(stored, ("settings", 1, "image"), "/files/x.png")
    assert stored == {"settings": [{"image": "a"}, {"image": "/files/x.png"}], "prompt": "p"}
