"""Kling, Hailuo and Luma catalogs: PiAPI's documented examples validate, defaults are echoed, ranges and
cross-field rules are refused naming the field, and every documented price combination costs what PiAPI lists
(docs/video-services.md)."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from genmill.catalog import build_catalog
from genmill.domain.catalog import VIDEO_RETENTION, CatalogEntry, usd
from genmill.domain.validation import describe_validation_error
from genmill.models.video import hailuo_catalog, kling_catalog, luma_catalog

CATALOG = build_catalog()
IMG = "https://example.com/cat.png"


def entry(model: str, task_type: str) -> CatalogEntry:
    found = CATALOG.get(model, task_type)
    assert found is not None
    return found


def price(model: str, task_type: str, /, **fields: Any) -> int:
    e = entry(model, task_type)
    return e.price_of(e.input_model.model_validate(fields))


def refused(model: str, task_type: str, /, **fields: Any) -> str:
    with pytest.raises(ValidationError) as info:
        entry(model, task_type).input_model.model_validate(fields)
    return describe_validation_error(info.value, "input")


EXAMPLES = [
    (module.MODEL, task_type, example)
    for module in (kling_catalog, hailuo_catalog, luma_catalog)
    for task_type, example in module.EXAMPLE_INPUTS.items()
] + [(kling_catalog.TURBO_MODEL, "video_generation", kling_catalog.TURBO_EXAMPLE_INPUTS["video_generation"])]


@pytest.mark.parametrize(("model", "task_type", "example"), EXAMPLES, ids=lambda v: v if isinstance(v, str) else "")
def test_piapi_examples_validate_and_are_priced(model: str, task_type: str, example: dict[str, Any]) -> None:
    e = entry(model, task_type)
    inputs = e.input_model.model_validate(example)
    assert e.price_of(inputs) > 0
    assert e.retention == VIDEO_RETENTION
    assert e.family == {"kling-turbo": "kling"}.get(model, model)  # PiAPI's keys in active_tasks and history


def test_usage_types_and_derived_operations() -> None:
    assert entry("luma", "video_generation").usage_type == entry("luma", "extend_video").usage_type == "point"
    assert entry("hailuo", "video_generation").usage_type == "point"
    assert entry("kling", "video_generation").usage_type == "quota"
    assert entry("kling-turbo", "video_generation").usage_type == "llm"  # as PiAPI's kling-turbo example reports
    for model, task_type in (("kling", "extend_video"), ("kling", "lip_sync"), ("luma", "extend_video")):
        derived = entry(model, task_type).derived_from
        assert derived is not None and derived.field == "origin_task_id"
        assert model in derived.models and "video_generation" in derived.task_types
    assert entry("kling", "video_generation").derived_from is None


def test_kling_defaults_are_echoed() -> None:
    dumped = entry("kling", "video_generation").input_model.model_validate({"prompt": "a cat"}).model_dump()
    assert {k: dumped[k] for k in ("duration", "aspect_ratio", "mode", "version", "cfg_scale", "enable_audio")} == {
        "duration": 5,
        "aspect_ratio": "16:9",
        "mode": "std",
        "version": "1.6",
        "cfg_scale": 0.5,
        "enable_audio": False,
    }
    turbo = entry("kling-turbo", "video_generation").input_model.model_validate({"prompt": "a"}).model_dump()
    assert (turbo["version"], turbo["mode"], turbo["duration"]) == ("2.5-turbo", "pro", 5)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({}, "prompt: required for text-to-video"),
        ({"prompt": "a", "image_tail_url": IMG}, "image_tail_url: needs image_url"),
        ({"prompt": "a", "duration": 7}, "duration: must be 5 or 10"),
        ({"prompt": "a", "version": "3.0", "duration": 20}, "duration: Kling 3.0 makes 3 to 15 seconds"),
        ({"prompt": "a", "enable_audio": True}, "enable_audio: only versions 2.6 and 3.0"),
        ({"prompt": "a", "multi_shots": [{"duration": 3, "prompt": "b"}]}, "multi_shots: only Kling 3.0"),
        ({"prompt": "a", "cfg_scale": 1.5}, "cfg_scale"),
        ({"prompt": "a" * 2501}, "prompt"),
        ({"prompt": "a", "mode": "max"}, "mode"),
        ({"prompt": "a", "version": "9.9"}, "version"),
        ({"prompt": "a", "camera_control": {"type": "simple", "config": {"pan": 3, "zoom": 2}}}, "exactly one"),
        ({"prompt": "a", "camera_control": {"type": "simple", "config": {"pan": 11}}}, "camera_control.config.pan"),
        ({"prompt": "a", "image_url": IMG, "elements": [{"image_url": IMG}]}, "elements: cannot be combined"),
    ],
)
def test_kling_refuses_naming_the_field(fields: dict[str, Any], message: str) -> None:
    assert message in refused("kling", "video_generation", **fields)


def test_kling_3_0_takes_its_own_durations_and_shots() -> None:
    shots = [{"duration": 3, "prompt": "a dog runs"}, {"duration": 2, "prompt": "it stops"}]
    inputs = entry("kling", "video_generation").input_model.model_validate(
        {"version": "3.0", "duration": 3, "multi_shots": shots, "prefer_multi_shots": True, "enable_audio": True}
    )
    assert isinstance(inputs, kling_catalog.KlingVideo) and inputs.seconds() == 5
    assert "add up to 3 to 15" in refused("kling", "video_generation", version="3.0", multi_shots=shots[:1] * 6)


@pytest.mark.parametrize(
    ("version", "mode", "duration", "dollars"),
    [
        *[
            (v, m, d, {"std": 0.26, "pro": 0.46}[m] * d / 5)
            for v in ("1.0", "1.5", "1.6", "2.1")
            for m in ("std", "pro")
            for d in (5, 10)
        ],
        *[(v, m, d, 0.96 * d / 5) for v in ("2.0", "2.1-master") for m in ("std", "pro") for d in (5, 10)],
        *[
            (v, m, d, {"std": 0.20, "pro": 0.33}[m] * d / 5)
            for v in ("2.5", "2.6")
            for m in ("std", "pro")
            for d in (5, 10)
        ],
    ],
)
def test_kling_prices_per_version_mode_and_duration(version: str, mode: str, duration: int, dollars: float) -> None:
    assert price("kling", "video_generation", prompt="a", version=version, mode=mode, duration=duration) == usd(dollars)


def test_kling_audio_and_per_second_prices() -> None:
    assert price("kling", "video_generation", prompt="a", version="2.6", mode="pro", enable_audio=True) == usd(0.66)
    assert price("kling", "video_generation", prompt="a", version="2.6", enable_audio=True, duration=10) == usd(0.80)
    for (mode, audio), per_second in {
        ("std", False): 0.10,
        ("std", True): 0.15,
        ("pro", False): 0.15,
        ("pro", True): 0.20,
    }.items():
        fields = {"prompt": "a", "version": "3.0", "mode": mode, "enable_audio": audio, "duration": 7}
        assert price("kling", "video_generation", **fields) == usd(per_second * 7)
    assert price("kling-turbo", "video_generation", prompt="a") == 2_800_000  # PiAPI's example consumed this
    assert price("kling-turbo", "video_generation", prompt="a", duration=10, mode="std") == usd(0.56)


def test_kling_operations() -> None:
    assert price("kling", "extend_video", origin_task_id="t") == usd(0.26)
    assert price("kling", "lip_sync", origin_task_id="t", tts_text="hi") == usd(0.20)  # covers 10 s
    lip_sync = entry("kling", "lip_sync")
    assert lip_sync.usage_price is not None
    inputs = lip_sync.input_model.model_validate({"origin_task_id": "t", "tts_text": "hi"})
    assert lip_sync.usage_price(inputs, {"works": [{"video": {"duration": 5100}}]}) == usd(0.20)  # 2 started 5 s
    assert lip_sync.usage_price(inputs, {"works": [{"video": {"duration": 4900}}]}) == usd(0.10)
    assert "tts_text:" in refused("kling", "lip_sync", origin_task_id="t")
    assert "tts_speed" in refused("kling", "lip_sync", origin_task_id="t", tts_text="hi", tts_speed=3)
    assert price("kling", "effects", image_url=IMG, effect="squish") == usd(0.26)
    assert price("kling", "effects", image_url=IMG, effect="expansion", mode="pro") == usd(0.46)
    assert "effect" in refused("kling", "effects", image_url=IMG, effect="melt")
    assert price("kling", "ai_try_on", model_input=IMG, upper_input=IMG, lower_input=IMG, batch_size=3) == usd(0.21)
    assert "not both" in refused("kling", "ai_try_on", model_input=IMG, dress_input=IMG, upper_input=IMG)
    assert "dress_input:" in refused("kling", "ai_try_on", model_input=IMG)
    assert "batch_size" in refused("kling", "ai_try_on", model_input=IMG, dress_input=IMG, batch_size=5)


@pytest.mark.parametrize(
    ("fields", "dollars"),
    [
        ({"prompt": "a"}, 0.20),
        ({"prompt": "a", "model": "t2v-01-director"}, 0.20),
        ({"model": "i2v-01", "image_url": IMG}, 0.20),
        ({"model": "i2v-01-live", "image_url": IMG}, 0.20),
        ({"model": "i2v-01-director", "image_url": IMG, "prompt": "[Pan left] a"}, 0.20),
        ({"model": "s2v-01", "image_url": IMG, "prompt": "a"}, 0.30),
    ],
)
def test_hailuo_prices(fields: dict[str, Any], dollars: float) -> None:
    assert price("hailuo", "video_generation", **fields) == usd(dollars)


def test_hailuo_rules() -> None:
    assert "image_url: t2v-01 is text-to-video" in refused("hailuo", "video_generation", prompt="a", image_url=IMG)
    assert "image_url: required for i2v-01" in refused("hailuo", "video_generation", model="i2v-01")
    assert "prompt: required for s2v-01" in refused("hailuo", "video_generation", model="s2v-01", image_url=IMG)
    assert "prompt" in refused("hailuo", "video_generation", prompt="a" * 2001)


def test_luma_forms_defaults_and_prices() -> None:
    luma = entry("luma", "video_generation").input_model
    keyed = luma.model_validate(luma_catalog.KEY_FRAMES_EXAMPLE)
    assert isinstance(keyed, luma_catalog.LumaVideo) and keyed.first_image() == IMG.replace("cat", "river")
    newer = luma.model_validate(luma_catalog.NEWER_FORM_EXAMPLE)
    assert isinstance(newer, luma_catalog.LumaVideo)
    assert (newer.model_name, newer.first_image(), newer.last_image()) == (
        "ray-v2",
        IMG.replace("cat", "river"),
        IMG.replace("cat", "sunset"),
    )
    plain = luma.model_validate({"prompt": "a"}).model_dump()
    assert (plain["model_name"], plain["duration"], plain["aspect_ratio"], plain["loop"]) == (
        "ray-v1",
        5,
        "16:9",
        False,
    )
    assert price("luma", "video_generation", prompt="a") == 2_000_000  # PiAPI's example froze this
    assert price("luma", "video_generation", prompt="a", model_name="ray-v2", duration=9) == usd(0.40)
    assert "duration: ray-v1 makes 5-second clips" in refused("luma", "video_generation", prompt="a", duration=10)
    frame = {"type": "image", "url": IMG}
    assert "not both" in refused("luma", "video_generation", prompt="a", start_image=IMG, key_frames={"frame0": frame})
    assert "model: disagrees" in refused("luma", "video_generation", prompt="a", model="ray-v2", model_name="ray-v1")
    assert "needs url" in refused("luma", "video_generation", prompt="a", key_frames={"frame0": {"type": "image"}})
    generation = {"frame0": {"type": "generation", "id": "t"}}
    assert "image only" in refused("luma", "video_generation", prompt="a", key_frames=generation)


def test_luma_extend_names_its_origin_either_way() -> None:
    extend = entry("luma", "extend_video").input_model
    by_frame = extend.model_validate({"prompt": "a", "key_frames": {"frame0": {"type": "generation", "id": "t-1"}}})
    by_field = extend.model_validate({"prompt": "a", "origin_task_id": "t-1"})
    for inputs in (by_frame, by_field):
        dumped = inputs.model_dump()
        assert dumped["origin_task_id"] == "t-1" and dumped["key_frames"]["frame0"]["id"] == "t-1"
    assert "key_frames.frame0" in refused("luma", "extend_video", prompt="a")
    both = {"prompt": "a", "origin_task_id": "x", "key_frames": {"frame0": {"type": "generation", "id": "y"}}}
    assert "disagrees" in refused("luma", "extend_video", **both)
    image_first = {"prompt": "a", "key_frames": {"frame0": {"type": "image", "url": IMG}}}
    assert "continues a generation" in refused("luma", "extend_video", **image_first)
