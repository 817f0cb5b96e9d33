"""The Qubico catalog: every pair of API.md, wire field names, defaults, ranges, required fields, prices."""

from __future__ import annotations

import base64
import io
from datetime import timedelta
from typing import Any

import pytest
from PIL import Image
from pydantic import ValidationError
from tests.support import catalog_entry

from genmill.catalog import all_entries, build_catalog
from genmill.domain.catalog import (
    HUG_VIDEO_RETENTION,
    IMAGE_RETENTION,
    VIDEO_RETENTION,
    Catalog,
    TaskInput,
    usd,
)
from genmill.domain.validation import describe_validation_error
from genmill.models.toolkits.video_catalog import upscale_price_for_frames

IMG = "https://example.com/cat.png"
IMG_B64 = (
    "data:image/png;base64,"
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
)
VIDEO = "https://example.com/clip.mp4"
AUDIO = "https://example.com/voice.wav"
LORA = [{"lora_type": "mystic-realism"}]

FLUX_MODELS = ("Qubico/flux1-dev", "Qubico/flux1-schnell", "Qubico/flux1-dev-advanced")

# Every (model, task_type) of API.md's catalog, with the smallest input each accepts.
MINIMAL_INPUTS: dict[tuple[str, str], dict[str, Any]] = {
    **{(m, "txt2img"): {"prompt": "a red fox"} for m in FLUX_MODELS},
    **{(m, "img2img"): {"prompt": "a bear", "image": IMG} for m in FLUX_MODELS},
    **{(m, "txt2img-lora"): {"prompt": "a fox", "lora_settings": LORA} for m in FLUX_MODELS},
    ("Qubico/flux1-dev-advanced", "img2img-lora"): {"prompt": "a fox", "image": IMG, "lora_settings": LORA},
    ("Qubico/flux1-dev-advanced", "controlnet-lora"): {
        "prompt": "a fox",
        "control_net_settings": [{"control_type": "depth", "control_image": IMG}],
    },
    ("Qubico/flux1-dev-advanced", "fill-inpaint"): {"prompt": "a hat", "image": IMG},
    ("Qubico/flux1-dev-advanced", "fill-outpaint"): {
        "prompt": "a meadow",
        "image": IMG,
        "custom_settings": [{"setting_type": "outpaint", "outpaint_left": 128}],
    },
    ("Qubico/flux1-dev-advanced", "redux-variation"): {"prompt": "a fox", "image": IMG},
    ("Qubico/flux1-dev-advanced", "kontext"): {"prompt": "make it snow", "image": IMG},
    ("Qubico/image-toolkit", "background-remove"): {"image": IMG},
    ("Qubico/image-toolkit", "upscale"): {"image": IMG_B64},
    ("Qubico/image-toolkit", "segment"): {"image": IMG, "prompt": "clothes,shoes"},
    ("Qubico/image-toolkit", "face-swap"): {"target_image": IMG, "swap_image": IMG},
    ("Qubico/image-toolkit", "multi-face-swap"): {"target_image": IMG, "swap_image": IMG},
    ("Qubico/video-toolkit", "upscale"): {"video": VIDEO},
    ("Qubico/video-toolkit", "face-swap"): {"swap_image": IMG, "target_video": VIDEO},
    ("Qubico/video-toolkit", "background-remove"): {"video": VIDEO},
    ("Qubico/tts", "zero-shot"): {"gen_text": "Hello there.", "ref_audio": AUDIO},
    ("Qubico/trellis", "image-to-3d"): {"image": IMG},
    ("Qubico/trellis", "text-to-3d"): {"prompt": "a bear"},
    ("Qubico/wanx", "txt2video-1.3b"): {"prompt": "a girl on a ferry"},
    ("Qubico/wanx", "txt2video-14b"): {"prompt": "a girl on a ferry"},
    ("Qubico/wanx", "img2video-14b"): {"prompt": "she waves", "image": IMG},
    ("Qubico/wanx", "txt2video-14b-lora"): {"prompt": "a girl", "lora_settings": [{"lora_type": "ghibli"}]},
    ("Qubico/wanx", "img2video-14b-lora"): {"prompt": "a girl", "image": IMG, "lora_settings": LORA},
    ("Qubico/wanx", "img2video-14b-keyframe"): {"prompt": "a walk", "first_frame": IMG, "last_frame": IMG},
    ("Qubico/wanx", "img2video-14b-control-camera"): {
        "prompt": "a product",
        "image": IMG,
        "control_camera_settings": [{"motion_type": "zoom_in"}],
    },
    ("Qubico/wanx", "wan22-txt2video-14b"): {"prompt": "a cat"},
    ("Qubico/wanx", "wan22-img2video-14b"): {"prompt": "a cat", "image": IMG},
    ("Qubico/skyreels", "img2video"): {"prompt": "FPS-24, a woman", "image": IMG},
    ("Qubico/framepack", "img2video"): {"prompt": "a jellyfish", "start_image": IMG},
    ("Qubico/hunyuan", "txt2video"): {"prompt": "a cat walks on the grass"},
    ("Qubico/hunyuan", "fast-txt2video"): {"prompt": "a cat walks on the grass"},
    ("Qubico/hunyuan", "img2video-concat"): {"prompt": "a hug", "image": IMG},
    ("Qubico/hunyuan", "img2video-replace"): {"prompt": "a hug", "image": IMG},
    ("Qubico/hunyuan", "txt2video-lora"): {"prompt": "a cat", "lora_settings": [{"lora_type": "anime"}]},
    ("Qubico/mmaudio", "video2audio"): {"prompt": "waves", "video": VIDEO},
    ("Qubico/diffrhythm", "txt2audio-base"): {},
    ("Qubico/diffrhythm", "txt2audio-full"): {},
    ("Qubico/ace-step", "txt2audio"): {"style_prompt": "lofi, chill"},
    ("Qubico/ace-step", "audio2audio"): {"style_prompt": "jazz", "style_audio": AUDIO},
    ("Qubico/ace-step", "edit"): {"style_prompt": "jazz", "style_audio": AUDIO},
    ("Qubico/ace-step", "extend"): {"style_prompt": "jazz", "style_audio": AUDIO},
    ("Qubico/hug-video", "image_to_video"): {"image_url": IMG},
    ("midjourney", "imagine"): {"prompt": "a red fox"},
    ("midjourney", "upscale"): {"origin_task_id": "t-1", "index": "1"},
    ("midjourney", "variation"): {"origin_task_id": "t-1", "index": "2"},
    ("midjourney", "reroll"): {"origin_task_id": "t-1"},
    ("midjourney", "describe"): {"image_url": IMG},
    ("midjourney", "seed"): {"origin_task_id": "t-1"},
    ("midjourney", "blend"): {"image_urls": [IMG, IMG]},
    ("midjourney", "inpaint"): {"origin_task_id": "t-1", "mask": IMG_B64},
    ("midjourney", "outpaint"): {"origin_task_id": "t-1"},
    ("midjourney", "pan"): {"origin_task_id": "t-1", "direction": "left"},
    ("music-u", "generate_music"): {"lyrics_type": "instrumental", "gpt_description_prompt": "night breeze"},
    ("music-u", "generate_lyrics"): {"prompt": "white egrets"},
    ("music-s", "generate_music"): {"gpt_description_prompt": "autumn night breeze"},
    ("music-s", "generate_music_custom"): {"prompt": "[Verse]\nla la la"},
    ("music-s", "generate_lyrics"): {"prompt": "white egrets"},
    # PiAPI's resold video services (docs/video-services.md)
    ("kling", "video_generation"): {"prompt": "a cat"},
    ("kling", "text2video"): {"prompt": "a cat"},
    ("kling", "image2video"): {"image_url": IMG},
    ("kling", "extend_video"): {"origin_task_id": "t-1"},
    ("kling", "lip_sync"): {"origin_task_id": "t-1", "tts_text": "hello"},
    ("kling", "effects"): {"image_url": IMG, "effect": "squish"},
    ("kling", "ai_try_on"): {"model_input": IMG, "dress_input": IMG},
    ("kling-turbo", "video_generation"): {"prompt": "a cat"},
    ("hailuo", "video_generation"): {"prompt": "a cat"},
    ("luma", "video_generation"): {"prompt": "a cat"},
    ("luma", "extend_video"): {"prompt": "a cat", "origin_task_id": "t-1"},
}

FAMILIES = {
    "Qubico/flux1-dev": "flux",
    "Qubico/flux1-schnell": "flux",
    "Qubico/flux1-dev-advanced": "flux",
    "Qubico/image-toolkit": "image-toolkit",
    "Qubico/video-toolkit": "video-toolkit",
    "Qubico/tts": "tts",
    "Qubico/trellis": "trellis",
    "Qubico/wanx": "wanx",
    "Qubico/skyreels": "skyreels",
    "Qubico/framepack": "framepack",
    "Qubico/hunyuan": "hunyuan",
    "Qubico/mmaudio": "mmaudio",
    "Qubico/diffrhythm": "diffrhythm",
    "Qubico/ace-step": "ace-step",
    "Qubico/hug-video": "hug-video",
    "midjourney": "mj",
    "music-u": "music-u",
    "music-s": "music-s",
    "kling": "kling",
    "kling-turbo": "kling",
    "hailuo": "hailuo",
    "luma": "luma",
}

VIDEO_MODELS = {
    "Qubico/video-toolkit",
    "Qubico/wanx",
    "Qubico/skyreels",
    "Qubico/framepack",
    "Qubico/hunyuan",
    "kling",
    "kling-turbo",
    "hailuo",
    "luma",
}


def validate(catalog: Catalog, model: str, task_type: str, **overrides: Any) -> TaskInput:
    data = {**MINIMAL_INPUTS[(model, task_type)], **overrides}
    return catalog_entry(catalog, model, task_type).input_model.model_validate(data)


def rejects(catalog: Catalog, model: str, task_type: str, **overrides: Any) -> ValidationError:
    with pytest.raises(ValidationError) as info:
        validate(catalog, model, task_type, **overrides)
    return info.value


def error_locs(error: ValidationError) -> list[tuple[int | str, ...]]:
    return [tuple(e["loc"]) for e in error.errors()]


def price(catalog: Catalog, model: str, task_type: str, **overrides: Any) -> int:
    return catalog_entry(catalog, model, task_type).price_of(validate(catalog, model, task_type, **overrides))


# ------------------------------------------------------------------------------------------------------------
# The catalog as a whole
# ------------------------------------------------------------------------------------------------------------


OWN_MODELS = {"genmill/echo"}  # genmill's own diagnostic model (docs/echo.md), not part of API.md


CHAT_FAMILIES = ("llm", "gpts")
"""The OpenAI-compatible API's models (docs/api.md), tested in tests/unit/test_llm_catalog.py."""


def test_every_api_md_pair_is_in_the_catalog(catalog: Catalog) -> None:
    missing = [key for key in MINIMAL_INPUTS if key not in catalog]
    assert missing == []
    chat = {e.model for e in catalog if e.family in CHAT_FAMILIES}
    assert set(catalog.models()) - OWN_MODELS - chat == set(FAMILIES)


def test_no_pair_outside_api_md(catalog: Catalog) -> None:
    qubico = {e.key for e in catalog if e.model not in OWN_MODELS and e.family not in CHAT_FAMILIES}
    assert qubico == set(MINIMAL_INPUTS)
    assert {e.key for e in catalog if e.model in OWN_MODELS} == {
        ("genmill/echo", "echo"),
        ("genmill/echo", "echo-derive"),
    }


def test_build_catalog_returns_a_fresh_catalog_and_modules_do_not_overlap() -> None:
    entries = all_entries()
    assert len({e.key for e in entries}) == len(entries)
    assert build_catalog() is not build_catalog()


@pytest.mark.parametrize("key", sorted(MINIMAL_INPUTS), ids="/".join)
def test_entry_shape(catalog: Catalog, key: tuple[str, str]) -> None:
    e = catalog_entry(catalog, *key)
    assert issubclass(e.input_model, TaskInput)
    assert e.family == FAMILIES[e.model]
    assert e.family == e.family.lower() and e.family
    assert e.description
    for name in e.generated_input_fields:
        assert name in e.input_model.model_fields
    e.input_model.model_json_schema()  # every schema renders


@pytest.mark.parametrize("key", sorted(MINIMAL_INPUTS), ids="/".join)
def test_minimal_input_is_accepted_defaults_echoed_and_priced(catalog: Catalog, key: tuple[str, str]) -> None:
    e = catalog_entry(catalog, *key)
    inputs = e.input_model.model_validate(MINIMAL_INPUTS[key])
    dumped = inputs.model_dump()
    assert set(e.input_model.model_fields) <= set(dumped)
    credits = e.price_of(inputs)
    assert isinstance(credits, int)
    assert credits > 0


@pytest.mark.parametrize("key", sorted(MINIMAL_INPUTS), ids="/".join)
def test_required_fields_are_enforced(catalog: Catalog, key: tuple[str, str]) -> None:
    e = catalog_entry(catalog, *key)
    required = [name for name, info in e.input_model.model_fields.items() if info.is_required()]
    for name in required:
        data = {k: v for k, v in MINIMAL_INPUTS[key].items() if k != name}
        with pytest.raises(ValidationError) as info:
            e.input_model.model_validate(data)
        assert (name,) in error_locs(info.value)


@pytest.mark.parametrize("key", sorted(MINIMAL_INPUTS), ids="/".join)
def test_unknown_fields_are_kept(catalog: Catalog, key: tuple[str, str]) -> None:
    inputs = validate(catalog, *key, client_tag="abc")
    assert inputs.model_dump()["client_tag"] == "abc"


def test_retention(catalog: Catalog) -> None:
    for e in catalog:
        if e.model == "Qubico/hug-video":
            assert e.retention == HUG_VIDEO_RETENTION == timedelta(days=1)
        elif e.model in VIDEO_MODELS:
            assert e.retention == VIDEO_RETENTION
        else:
            assert e.retention == IMAGE_RETENTION == timedelta(days=3)


def test_generated_input_fields(catalog: Catalog) -> None:
    assert catalog_entry(catalog, "Qubico/image-toolkit", "upscale").generated_input_fields == ("image",)
    assert catalog_entry(catalog, "Qubico/flux1-dev-advanced", "redux-variation").generated_input_fields == ("image",)
    for model in FLUX_MODELS:
        assert catalog_entry(catalog, model, "img2img").generated_input_fields == ("image",)
        assert catalog_entry(catalog, model, "txt2img").generated_input_fields == ()


# ------------------------------------------------------------------------------------------------------------
# Flux
# ------------------------------------------------------------------------------------------------------------


def test_flux_txt2img_defaults(catalog: Catalog) -> None:
    dumped = validate(catalog, "Qubico/flux1-dev", "txt2img").model_dump()
    assert dumped["prompt"] == "a red fox"
    assert (dumped["width"], dumped["height"]) == (1024, 1024)
    assert dumped["seed"] == -1
    assert dumped["steps"] == 28
    assert dumped["negative_prompt"] == ""
    assert 1.5 <= dumped["guidance_scale"] <= 5


def test_flux_img2img_denoise(catalog: Catalog) -> None:
    assert validate(catalog, "Qubico/flux1-dev", "img2img").model_dump()["denoise"] == 0.7
    assert validate(catalog, "Qubico/flux1-dev", "img2img", denoise=1).model_dump()["denoise"] == 1
    for bad in (0, -0.1, 1.01):
        assert ("denoise",) in error_locs(rejects(catalog, "Qubico/flux1-dev", "img2img", denoise=bad))


@pytest.mark.parametrize("bad", [1.4, 5.1, 0])
def test_flux_guidance_scale_range(catalog: Catalog, bad: float) -> None:
    error = rejects(catalog, "Qubico/flux1-dev", "txt2img", guidance_scale=bad)
    assert ("guidance_scale",) in error_locs(error)
    assert validate(catalog, "Qubico/flux1-dev", "txt2img", guidance_scale=1.5).model_dump()["guidance_scale"] == 1.5
    assert validate(catalog, "Qubico/flux1-dev", "txt2img", guidance_scale=5).model_dump()["guidance_scale"] == 5


@pytest.mark.parametrize(
    ("model", "task_type"),
    [
        ("Qubico/flux1-dev", "txt2img"),
        ("Qubico/flux1-schnell", "txt2img"),
        ("Qubico/flux1-dev-advanced", "txt2img-lora"),
        ("Qubico/flux1-dev-advanced", "controlnet-lora"),
        ("Qubico/flux1-dev-advanced", "redux-variation"),
        ("Qubico/flux1-dev-advanced", "kontext"),
    ],
)
def test_flux_area_limit(catalog: Catalog, model: str, task_type: str) -> None:
    assert validate(catalog, model, task_type, width=1024, height=1024) is not None
    assert validate(catalog, model, task_type, width=2048, height=512) is not None
    error = rejects(catalog, model, task_type, width=1024, height=1032)
    message = str(error)
    assert "width" in message and "height" in message
    assert "1048576" in message


def test_flux_schnell_batch_size(catalog: Catalog) -> None:
    assert validate(catalog, "Qubico/flux1-schnell", "txt2img").model_dump()["batch_size"] == 1
    for good in (1, 4):
        assert validate(catalog, "Qubico/flux1-schnell", "txt2img", batch_size=good).model_dump()["batch_size"] == good
    for bad in (0, 5):
        error = rejects(catalog, "Qubico/flux1-schnell", "txt2img", batch_size=bad)
        assert ("batch_size",) in error_locs(error)
    one = price(catalog, "Qubico/flux1-schnell", "txt2img")
    assert price(catalog, "Qubico/flux1-schnell", "txt2img", batch_size=4) == 4 * one


def test_flux_kontext(catalog: Catalog) -> None:
    dumped = validate(catalog, "Qubico/flux1-dev-advanced", "kontext").model_dump()
    assert dumped["seed"] == -1
    assert dumped["steps"] == 28
    assert validate(catalog, "Qubico/flux1-dev-advanced", "kontext", steps=40).model_dump()["steps"] == 40
    assert ("steps",) in error_locs(rejects(catalog, "Qubico/flux1-dev-advanced", "kontext", steps=41))
    assert price(catalog, "Qubico/flux1-dev-advanced", "kontext") == 200000


def test_flux_dev_price_matches_the_documented_example(catalog: Catalog) -> None:
    assert price(catalog, "Qubico/flux1-dev", "txt2img") == 200000


def test_flux_steps_and_seed_ranges(catalog: Catalog) -> None:
    assert ("steps",) in error_locs(rejects(catalog, "Qubico/flux1-dev", "txt2img", steps=0))
    assert ("steps",) in error_locs(rejects(catalog, "Qubico/flux1-dev", "txt2img", steps=51))
    assert ("seed",) in error_locs(rejects(catalog, "Qubico/flux1-dev", "txt2img", seed=-2))


def test_flux_lora_settings(catalog: Catalog) -> None:
    dumped = validate(catalog, "Qubico/flux1-dev-advanced", "txt2img-lora").model_dump()
    assert dumped["lora_settings"] == [{"lora_type": "mystic-realism", "lora_strength": 1.0, "lora_image": ""}]
    error = rejects(catalog, "Qubico/flux1-dev-advanced", "txt2img-lora", lora_settings=[])
    assert ("lora_settings",) in error_locs(error)
    error = rejects(
        catalog,
        "Qubico/flux1-dev-advanced",
        "txt2img-lora",
        lora_settings=[{"lora_type": "x", "lora_strength": 3}],
    )
    assert ("lora_settings", 0, "lora_strength") in error_locs(error)


def test_flux_control_net_settings(catalog: Catalog) -> None:
    dumped = validate(catalog, "Qubico/flux1-dev-advanced", "controlnet-lora").model_dump()
    control = dumped["control_net_settings"][0]
    assert control["control_type"] == "depth"
    assert control["return_preprocessed_image"] is False
    assert dumped["lora_settings"] == []
    for control_type in ("depth", "canny", "soft_edge", "openpose"):
        settings = [{"control_type": control_type, "control_image": IMG}]
        validate(catalog, "Qubico/flux1-dev-advanced", "controlnet-lora", control_net_settings=settings)
    error = rejects(
        catalog,
        "Qubico/flux1-dev-advanced",
        "controlnet-lora",
        control_net_settings=[{"control_type": "hed", "control_image": IMG}],
    )
    assert ("control_net_settings", 0, "control_type") in error_locs(error)


def test_flux_outpaint_settings(catalog: Catalog) -> None:
    dumped = validate(catalog, "Qubico/flux1-dev-advanced", "fill-outpaint").model_dump()
    setting = dumped["custom_settings"][0]
    assert setting["outpaint_left"] == 128
    assert setting["outpaint_right"] == setting["outpaint_top"] == setting["outpaint_bottom"] == 0
    bad_type = [{"setting_type": "inpaint", "outpaint_left": 10}]
    error = rejects(catalog, "Qubico/flux1-dev-advanced", "fill-outpaint", custom_settings=bad_type)
    assert ("custom_settings", 0, "setting_type") in error_locs(error)
    rejects(catalog, "Qubico/flux1-dev-advanced", "fill-outpaint", custom_settings=[{"setting_type": "outpaint"}])


def test_flux_lora_task_types_are_on_advanced_only(catalog: Catalog) -> None:
    for task_type in (
        "img2img-lora",
        "controlnet-lora",
        "fill-inpaint",
        "fill-outpaint",
        "redux-variation",
        "kontext",
    ):
        assert ("Qubico/flux1-dev", task_type) not in catalog
        assert ("Qubico/flux1-schnell", task_type) not in catalog


# ------------------------------------------------------------------------------------------------------------
# Image toolkit
# ------------------------------------------------------------------------------------------------------------


def test_image_upscale_fields_and_defaults(catalog: Catalog) -> None:
    dumped = validate(catalog, "Qubico/image-toolkit", "upscale").model_dump()
    assert dumped == {"image": IMG_B64, "scale": 2, "face_enhance": False}
    assert validate(catalog, "Qubico/image-toolkit", "upscale", scale=10, upscale_model="anime").model_dump() == {
        "image": IMG_B64,
        "scale": 10,
        "face_enhance": False,
        "upscale_model": "anime",
    }


def test_image_upscale_leaves_face_enhance_to_the_backend(catalog: Catalog) -> None:
    """Whether a face restorer runs depends on the deployment's weights, so the catalog accepts the flag and the
    upscale backend's create-time check refuses it where none is installed (tests/backends/test_face_restore.py)."""
    assert validate(catalog, "Qubico/image-toolkit", "upscale", face_enhance=True).model_dump()["face_enhance"]


def test_upscale_model_extras_are_checked_when_sent(catalog: Catalog) -> None:
    error = rejects(catalog, "Qubico/image-toolkit", "upscale", upscale_model="painting")
    assert "upscale_model: must be one of photo, photo-sharp, anime, not 'painting'" in str(error)
    error = rejects(catalog, "Qubico/video-toolkit", "upscale", upscale_mode="bilinear")
    assert "upscale_mode: must be one of realesrgan, lanczos, not 'bilinear'" in str(error)
    assert validate(catalog, "Qubico/video-toolkit", "upscale", upscale_mode="lanczos").model_dump()["upscale_mode"]


def png_uri(width: int, height: int, fmt: str = "PNG") -> str:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height)).save(buffer, format=fmt)
    return f"data:image/{fmt.lower()};base64," + base64.b64encode(buffer.getvalue()).decode()


@pytest.mark.parametrize(
    ("model", "task_type", "field"),
    [
        ("Qubico/image-toolkit", "upscale", "image"),
        ("Qubico/image-toolkit", "background-remove", "image"),
        ("Qubico/image-toolkit", "face-swap", "swap_image"),
        ("Qubico/image-toolkit", "multi-face-swap", "target_image"),
        ("Qubico/video-toolkit", "face-swap", "swap_image"),
    ],
)
def test_inline_toolkit_images_are_checked_from_their_header(
    catalog: Catalog, model: str, task_type: str, field: str
) -> None:
    """The 2048x2048 cap and the format of an inline image are 400s at create, naming the field."""
    wide = rejects(catalog, model, task_type, **{field: png_uri(2049, 16)})
    assert error_locs(wide) == [(field,)]
    assert "2049x16 PNG is larger than 2048x2048" in describe_validation_error(wide, "input")
    garbage = "data:image/png;base64," + base64.b64encode(b"not an image at all").decode()
    assert "is not a decodable image" in describe_validation_error(
        rejects(catalog, model, task_type, **{field: garbage}), "input"
    )
    assert validate(catalog, model, task_type, **{field: png_uri(2048, 8, "JPEG")}) is not None
    bare = png_uri(16, 2048).split(",", 1)[1]
    assert validate(catalog, model, task_type, **{field: bare}) is not None
    # A URL is not fetched at create; the worker checks it.
    assert validate(catalog, model, task_type, **{field: "https://example.com/huge.png"}) is not None


@pytest.mark.parametrize("bad", [1, 11, 0, "two"])
def test_image_upscale_scale_range(catalog: Catalog, bad: Any) -> None:
    error = rejects(catalog, "Qubico/image-toolkit", "upscale", scale=bad)
    assert error_locs(error) == [("scale",)]


@pytest.mark.parametrize("bad", ["", "   ", "not an image!", "http://"])
def test_image_inputs_must_look_like_media(catalog: Catalog, bad: str) -> None:
    assert ("image",) in error_locs(rejects(catalog, "Qubico/image-toolkit", "upscale", image=bad))


def test_image_inputs_accept_urls_data_uris_paths_and_base64(catalog: Catalog) -> None:
    raw_b64 = IMG_B64.split(",", 1)[1]
    for good in (IMG, IMG_B64, raw_b64, "/files/abc.png"):
        assert validate(catalog, "Qubico/image-toolkit", "background-remove", image=good).model_dump()["image"] == good


def test_image_toolkit_prices(catalog: Catalog) -> None:
    assert price(catalog, "Qubico/image-toolkit", "background-remove") == 10000
    assert price(catalog, "Qubico/image-toolkit", "multi-face-swap") == 150000


def test_segment_fields(catalog: Catalog) -> None:
    dumped = validate(catalog, "Qubico/image-toolkit", "segment", segment_factor=-15).model_dump()
    assert dumped["negative_prompt"] == ""
    assert dumped["segment_factor"] == -15


def test_face_swap_indexes(catalog: Catalog) -> None:
    dumped = validate(catalog, "Qubico/image-toolkit", "multi-face-swap").model_dump()
    assert dumped["swap_faces_index"] == dumped["target_faces_index"] == "0"
    ok = validate(catalog, "Qubico/image-toolkit", "multi-face-swap", swap_faces_index="0,1", target_faces_index="1,0")
    assert ok.model_dump()["target_faces_index"] == "1,0"
    error = rejects(catalog, "Qubico/image-toolkit", "multi-face-swap", swap_faces_index="a,b")
    assert ("swap_faces_index",) in error_locs(error)
    error = rejects(catalog, "Qubico/image-toolkit", "multi-face-swap", swap_faces_index="0,1", target_faces_index="0")
    assert "same number of faces" in str(error)


# ------------------------------------------------------------------------------------------------------------
# Video toolkit
# ------------------------------------------------------------------------------------------------------------

MP4_HEAD = b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom"


def mp4_data_uri(size: int, media_type: str = "video/mp4") -> str:
    payload = MP4_HEAD + b"\x00" * max(0, size - len(MP4_HEAD))
    return f"data:{media_type};base64," + base64.b64encode(payload).decode()


def test_video_upscale_accepts_small_mp4(catalog: Catalog) -> None:
    inline = mp4_data_uri(2048)
    assert validate(catalog, "Qubico/video-toolkit", "upscale", video=inline).model_dump()["video"] == inline
    bare = inline.split(",", 1)[1]
    assert validate(catalog, "Qubico/video-toolkit", "upscale", video=bare) is not None
    assert validate(catalog, "Qubico/video-toolkit", "upscale", video="https://example.com/v?id=3") is not None


@pytest.mark.parametrize(
    "bad",
    [
        mp4_data_uri(2048, media_type="video/quicktime"),
        "data:video/mp4;base64," + base64.b64encode(b"GIF89a not a video at all").decode(),
        "https://example.com/clip.mov",
        "https://example.com/clip.webm",
    ],
)
def test_video_upscale_rejects_what_is_not_mp4(catalog: Catalog, bad: str) -> None:
    error = rejects(catalog, "Qubico/video-toolkit", "upscale", video=bad)
    assert ("video",) in error_locs(error)


def test_video_inputs_are_at_most_10_mb_inline(catalog: Catalog) -> None:
    too_big = mp4_data_uri(10 * 1024 * 1024 + 3)
    assert ("video",) in error_locs(rejects(catalog, "Qubico/video-toolkit", "upscale", video=too_big))
    assert ("target_video",) in error_locs(rejects(catalog, "Qubico/video-toolkit", "face-swap", target_video=too_big))
    assert ("video",) in error_locs(rejects(catalog, "Qubico/video-toolkit", "background-remove", video=too_big))
    just_fits = mp4_data_uri(10 * 1024 * 1024)
    assert validate(catalog, "Qubico/video-toolkit", "upscale", video=just_fits) is not None


def test_video_toolkit_fields(catalog: Catalog) -> None:
    dumped = validate(catalog, "Qubico/video-toolkit", "face-swap").model_dump()
    assert dumped["swap_faces_index"] == dumped["target_faces_index"] == "0"
    assert validate(catalog, "Qubico/video-toolkit", "background-remove").model_dump()["invert_output"] is False


def test_video_upscale_price_per_frame(catalog: Catalog) -> None:
    assert upscale_price_for_frames(60) == usd(0.018)
    assert price(catalog, "Qubico/video-toolkit", "upscale") == upscale_price_for_frames(240) == 720000


# ------------------------------------------------------------------------------------------------------------
# TTS and Trellis
# ------------------------------------------------------------------------------------------------------------


def test_tts_fields(catalog: Catalog) -> None:
    dumped = validate(catalog, "Qubico/tts", "zero-shot").model_dump()
    assert dumped == {"gen_text": "Hello there.", "ref_audio": AUDIO, "ref_text": ""}


def test_tts_price_is_proportional(catalog: Catalog) -> None:
    assert price(catalog, "Qubico/tts", "zero-shot", gen_text="a" * 2000) == 2 * usd(0.025) == 500000
    assert price(catalog, "Qubico/tts", "zero-shot", gen_text="a" * 1000) == usd(0.025)
    assert price(catalog, "Qubico/tts", "zero-shot", gen_text="a" * 1234) == 308500
    assert price(catalog, "Qubico/tts", "zero-shot", gen_text="a") == 250
    assert price(catalog, "Qubico/tts", "zero-shot", gen_text="a" * 10_000) == 10 * usd(0.025)


def test_tts_gen_text_limits(catalog: Catalog) -> None:
    assert ("gen_text",) in error_locs(rejects(catalog, "Qubico/tts", "zero-shot", gen_text="a" * 10_001))
    assert ("gen_text",) in error_locs(rejects(catalog, "Qubico/tts", "zero-shot", gen_text=""))


def test_trellis(catalog: Catalog) -> None:
    dumped = validate(catalog, "Qubico/trellis", "text-to-3d").model_dump()
    assert dumped["ss_guidance_strength"] == 7.5
    assert dumped["slat_guidance_strength"] == 3.0
    assert dumped["seed"] == 0
    assert {"ss_sampling_steps", "slat_sampling_steps"} <= set(dumped)
    assert validate(catalog, "Qubico/trellis", "text-to-3d", ss_sampling_steps=7) is not None
    error = rejects(catalog, "Qubico/trellis", "image-to-3d", slat_sampling_steps=51)
    assert ("slat_sampling_steps",) in error_locs(error)
    assert price(catalog, "Qubico/trellis", "image-to-3d") == 400000


# ------------------------------------------------------------------------------------------------------------
# Video models
# ------------------------------------------------------------------------------------------------------------


def test_wanx(catalog: Catalog) -> None:
    dumped = validate(catalog, "Qubico/wanx", "txt2video-14b").model_dump()
    assert dumped["aspect_ratio"] == "16:9"
    assert dumped["negative_prompt"] == ""
    assert validate(catalog, "Qubico/wanx", "txt2video-14b", aspect_ratio="9:16") is not None
    assert ("aspect_ratio",) in error_locs(rejects(catalog, "Qubico/wanx", "txt2video-14b", aspect_ratio="1:1"))
    assert price(catalog, "Qubico/wanx", "txt2video-1.3b") == usd(0.12)
    assert price(catalog, "Qubico/wanx", "txt2video-14b") == usd(0.28)
    assert price(catalog, "Qubico/wanx", "img2video-14b") == usd(0.28)
    camera = validate(catalog, "Qubico/wanx", "img2video-14b-control-camera").model_dump()
    assert camera["control_camera_settings"] == [{"motion_type": "zoom_in", "motion_speed": 0.2}]
    wan22 = validate(catalog, "Qubico/wanx", "wan22-txt2video-14b").model_dump()
    assert wan22["video_resolution"] in {"480p", "720p"}


def test_skyreels(catalog: Catalog) -> None:
    dumped = validate(catalog, "Qubico/skyreels", "img2video").model_dump()
    assert dumped["guidance_scale"] == 3.5
    assert dumped["aspect_ratio"] == "16:9"
    assert validate(catalog, "Qubico/skyreels", "img2video", aspect_ratio="1:1", guidance_scale=10) is not None
    for bad in (0, 10.5):
        error = rejects(catalog, "Qubico/skyreels", "img2video", guidance_scale=bad)
        assert ("guidance_scale",) in error_locs(error)
    assert ("aspect_ratio",) in error_locs(rejects(catalog, "Qubico/skyreels", "img2video", aspect_ratio="4:3"))


def test_framepack(catalog: Catalog) -> None:
    dumped = validate(catalog, "Qubico/framepack", "img2video").model_dump()
    assert dumped["duration"] == 10
    assert dumped["end_image"] == ""
    for bad in (9, 31):
        assert ("duration",) in error_locs(rejects(catalog, "Qubico/framepack", "img2video", duration=bad))
    assert price(catalog, "Qubico/framepack", "img2video") == usd(0.30)
    assert price(catalog, "Qubico/framepack", "img2video", duration=30) == usd(0.90)


def test_hunyuan(catalog: Catalog) -> None:
    assert validate(catalog, "Qubico/hunyuan", "txt2video").model_dump()["aspect_ratio"] == "16:9"
    assert ("prompt",) in error_locs(rejects(catalog, "Qubico/hunyuan", "txt2video", prompt="a" * 1001))
    assert price(catalog, "Qubico/hunyuan", "fast-txt2video") < price(catalog, "Qubico/hunyuan", "txt2video")


def test_hug_video(catalog: Catalog) -> None:
    e = catalog_entry(catalog, "Qubico/hug-video", "image_to_video")
    assert e.family == "hug-video"
    assert e.retention == timedelta(days=1)
    assert validate(catalog, "Qubico/hug-video", "image_to_video").model_dump() == {"image_url": IMG}


# ------------------------------------------------------------------------------------------------------------
# Audio
# ------------------------------------------------------------------------------------------------------------


def test_mmaudio(catalog: Catalog) -> None:
    dumped = validate(catalog, "Qubico/mmaudio", "video2audio").model_dump()
    assert dumped["steps"] == 20
    assert dumped["negative_prompt"] == ""
    assert ("steps",) in error_locs(rejects(catalog, "Qubico/mmaudio", "video2audio", steps=51))
    # $0.0005 per second, frozen at the 30-second cap.
    assert price(catalog, "Qubico/mmaudio", "video2audio") == 30 * usd(0.0005)


def test_diffrhythm(catalog: Catalog) -> None:
    dumped = validate(catalog, "Qubico/diffrhythm", "txt2audio-base").model_dump()
    assert dumped == {"lyrics": "", "style_prompt": "pop", "style_audio": ""}
    assert price(catalog, "Qubico/diffrhythm", "txt2audio-base") == 200000
    assert price(catalog, "Qubico/diffrhythm", "txt2audio-full") == 200000


def test_ace_step(catalog: Catalog) -> None:
    dumped = validate(catalog, "Qubico/ace-step", "txt2audio").model_dump()
    assert {"style_prompt", "lyrics", "duration", "negative_style_prompt"} <= set(dumped)
    assert price(catalog, "Qubico/ace-step", "txt2audio", duration=120) == 120 * usd(0.0005)
    assert ("duration",) in error_locs(rejects(catalog, "Qubico/ace-step", "txt2audio", duration=241))
    assert ("style_prompt",) in error_locs(rejects(catalog, "Qubico/ace-step", "txt2audio", style_prompt=""))


USAGE_BILLED = {
    ("Qubico/video-toolkit", "upscale"): ("frames", 12, 36_000, 720_000),
    ("Qubico/video-toolkit", "face-swap"): ("frames", 100, 200_000, 1_200_000),
    ("Qubico/mmaudio", "video2audio"): ("duration", 2.5, 15_000, 150_000),
}
"""Each entry frozen at a cap, with the field its output reports, a quantity, its price, and the cap's price."""


@pytest.mark.parametrize("key", sorted(USAGE_BILLED))
def test_capped_entries_price_what_the_output_reports(catalog: Catalog, key: tuple[str, str]) -> None:
    field, quantity, price, cap = USAGE_BILLED[key]
    entry = catalog.get(*key)
    assert entry is not None and entry.usage_price is not None
    inputs = entry.input_model.model_validate(MINIMAL_INPUTS[key])
    assert entry.price_of(inputs) == cap
    assert entry.usage_price(inputs, {"url": "x", field: quantity}) == price
    assert entry.usage_price(inputs, {"url": "x"}) == cap  # a backend that does not count pays the cap
    assert entry.usage_price(inputs, {field: 10**9}) == cap  # never above it


def test_the_per_unit_qubico_entries_priced_at_a_cap_have_a_usage_price(catalog: Catalog) -> None:
    assert set(USAGE_BILLED) <= {entry.key for entry in catalog if entry.usage_price is not None}
