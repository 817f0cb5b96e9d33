"""The Midjourney catalog: PiAPI's field names, defaults, ranges, prices per process_mode and follow-up rules."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from genmill.catalog import build_catalog
from genmill.domain.catalog import IMAGE_RETENTION, ORIGIN_WINDOW, Catalog, CatalogEntry, TaskInput, usd
from genmill.models.flux.midjourney_catalog import (
    EXAMPLE_INPUTS,
    GRID_ACTIONS,
    ORIGIN,
    UPSCALED_ACTIONS,
    actions_for,
    parse_aspect_ratio,
)

TASK_TYPES = ("imagine", "upscale", "variation", "reroll", "describe", "seed", "blend", "inpaint", "outpaint", "pan")
IMG = "https://example.com/cat.png"


def entry(catalog: Catalog, task_type: str) -> CatalogEntry:
    found = catalog.get("midjourney", task_type)
    assert found is not None, task_type
    return found


def validate(catalog: Catalog, task_type: str, **fields: Any) -> TaskInput:
    return entry(catalog, task_type).input_model.model_validate(fields)


def price(catalog: Catalog, task_type: str, **fields: Any) -> int:
    e = entry(catalog, task_type)
    return e.price_of(e.input_model.model_validate(fields))


def test_every_task_type_is_in_the_catalog_in_family_mj(catalog: Catalog) -> None:
    assert catalog.task_types("midjourney") == sorted(TASK_TYPES)
    for task_type in TASK_TYPES:
        e = entry(catalog, task_type)
        assert e.family == "mj"
        assert e.retention == IMAGE_RETENTION
        assert e.usage_type == "quota"


@pytest.mark.parametrize("task_type", TASK_TYPES)
def test_every_documented_example_body_is_accepted(catalog: Catalog, task_type: str) -> None:
    body = {k: (f"task-{task_type}" if v == ORIGIN else v) for k, v in EXAMPLE_INPUTS[task_type].items()}
    inputs = validate(catalog, task_type, **body)
    for key, value in body.items():
        assert inputs.model_dump()[key] == value


def test_imagine_defaults(catalog: Catalog) -> None:
    dumped = validate(catalog, "imagine", prompt="a fox").model_dump()
    assert dumped == {
        "prompt": "a fox",
        "aspect_ratio": "1:1",
        "process_mode": "fast",
        "skip_prompt_check": False,
        "bot_id": 0,
    }


@pytest.mark.parametrize("bad", ["16x9", "0:1", "1:0", "a:b", "9:1", "1:9", ""])
def test_aspect_ratio_is_checked(catalog: Catalog, bad: str) -> None:
    with pytest.raises(ValidationError) as info:
        validate(catalog, "imagine", prompt="a fox", aspect_ratio=bad)
    assert info.value.errors()[0]["loc"] == ("aspect_ratio",)


def test_aspect_ratio_parses() -> None:
    assert parse_aspect_ratio("16:9") == (16, 9)
    assert parse_aspect_ratio(" 2 : 3 ") == (2, 3)
    assert validate(build_catalog(), "imagine", prompt="x", aspect_ratio="8:1").model_dump()["aspect_ratio"] == "8:1"


def test_variation_and_outpaint_keep_the_origin_shape_unless_told(catalog: Catalog) -> None:
    assert validate(catalog, "variation", origin_task_id="t", index="1").model_dump()["aspect_ratio"] == ""
    assert validate(catalog, "outpaint", origin_task_id="t").model_dump()["aspect_ratio"] == ""
    assert validate(catalog, "reroll", origin_task_id="t").model_dump()["aspect_ratio"] == "1:1"


@pytest.mark.parametrize(
    ("task_type", "fields"),
    [
        ("imagine", {"prompt": "x", "process_mode": "slow"}),
        ("upscale", {"origin_task_id": "t", "index": "5"}),
        ("upscale", {"origin_task_id": "t", "index": 1}),
        ("variation", {"origin_task_id": "t", "index": "2x"}),
        ("blend", {"image_urls": [IMG]}),
        ("blend", {"image_urls": [IMG] * 6}),
        ("blend", {"image_urls": [IMG, IMG], "dimension": "wide"}),
        ("pan", {"origin_task_id": "t", "direction": "sideways"}),
        ("outpaint", {"origin_task_id": "t", "zoom_ratio": "3"}),
        ("outpaint", {"origin_task_id": "t", "zoom_ratio": "big"}),
        ("upscale", {"origin_task_id": "", "index": "1"}),
        ("describe", {"image_url": "ftp://host/cat.png"}),
        ("imagine", {"prompt": "x", "bot_id": -1}),
    ],
)
def test_bad_values_are_refused_naming_the_field(catalog: Catalog, task_type: str, fields: dict[str, Any]) -> None:
    with pytest.raises(ValidationError) as info:
        validate(catalog, task_type, **fields)
    named = {str(e["loc"][0]) for e in info.value.errors()}
    assert named & set(fields)


def test_outpaint_zoom_ratio_accepts_custom_values(catalog: Catalog) -> None:
    for ratio in ("1", "1.2", "1.5", "2"):
        assert validate(catalog, "outpaint", origin_task_id="t", zoom_ratio=ratio).model_dump()["zoom_ratio"] == ratio
    assert validate(catalog, "outpaint", origin_task_id="t").model_dump()["zoom_ratio"] == "2"


@pytest.mark.parametrize(("mode", "dollars"), [("relax", 0.015), ("fast", 0.045), ("turbo", 0.10)])
def test_generation_prices_follow_the_process_mode(catalog: Catalog, mode: str, dollars: float) -> None:
    assert price(catalog, "imagine", prompt="x", process_mode=mode) == usd(dollars)
    assert price(catalog, "blend", image_urls=[IMG, IMG], process_mode=mode) == usd(dollars)
    for task_type, fields in (
        ("variation", {"index": "1"}),
        ("reroll", {}),
        ("inpaint", {"mask": IMG}),
        ("outpaint", {}),
        ("pan", {"direction": "up"}),
    ):
        assert price(catalog, task_type, origin_task_id="t", process_mode=mode, **fields) == usd(dollars)


def test_upscale_describe_and_seed_prices(catalog: Catalog) -> None:
    for index in ("1", "4", "light", "beta"):
        for mode in ("relax", "turbo"):
            assert price(catalog, "upscale", origin_task_id="t", index=index, process_mode=mode) == usd(0.015)
    assert price(catalog, "upscale", origin_task_id="t", index="2x") == usd(0.09)
    assert price(catalog, "upscale", origin_task_id="t", index="subtle", process_mode="relax") == usd(0.045)
    assert price(catalog, "upscale", origin_task_id="t", index="4x", process_mode="turbo") == usd(0.60)
    assert price(catalog, "describe", image_url=IMG, process_mode="turbo") == usd(0.015)
    assert price(catalog, "seed", origin_task_id="t") == usd(0.005)


def test_follow_ups_name_their_origin(catalog: Catalog) -> None:
    for task_type in ("imagine", "describe", "blend"):
        assert entry(catalog, task_type).derived_from is None
    for task_type in ("upscale", "variation", "reroll", "seed", "inpaint", "outpaint", "pan"):
        derived = entry(catalog, task_type).derived_from
        assert derived is not None
        assert derived.models == ("midjourney",)
        assert derived.field == "origin_task_id"
        assert "origin_task_id" in entry(catalog, task_type).input_model.model_fields
    for task_type in ("inpaint", "outpaint", "pan"):
        derived = entry(catalog, task_type).derived_from
        assert derived is not None and derived.task_types == ("upscale",)
    reroll = entry(catalog, "reroll").derived_from
    assert reroll is not None and "imagine" in reroll.task_types
    assert "upscale" not in reroll.task_types and "blend" not in reroll.task_types
    assert ORIGIN_WINDOW.total_seconds() == 3 * 3600


def test_describe_refuses_stale_generated_images(catalog: Catalog) -> None:
    assert entry(catalog, "describe").generated_input_fields == ("image_url",)


def test_actions_offered_by_each_output() -> None:
    assert actions_for("imagine") == list(GRID_ACTIONS)
    assert "upscale1" in actions_for("reroll") and "reroll" in actions_for("inpaint")
    assert actions_for("blend") == [a for a in GRID_ACTIONS if a != "reroll"]
    assert actions_for("upscale") == list(UPSCALED_ACTIONS)
    assert {"pan_left", "outpaint_2x", "region", "high_variation"} <= set(actions_for("upscale"))
    assert actions_for("describe") == [] and actions_for("seed") == []
