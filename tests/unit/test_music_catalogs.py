"""The Udio (`music-u`) and Suno (`music-s`) catalog entries: PiAPI's fields, defaults, enumerations, cross-field
rules, prices, families and extension as a derived operation; and PiAPI's documented example inputs validate."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError
from tests.support import catalog_entry

from genmill.domain.catalog import IMAGE_RETENTION, Catalog, DerivedFrom, usd
from genmill.models.audio import suno_catalog, udio_catalog
from genmill.models.audio.suno_catalog import SUNO
from genmill.models.audio.udio_catalog import UDIO


def refusal(catalog: Catalog, model: str, task_type: str, data: dict[str, Any]) -> str:
    with pytest.raises(ValidationError) as info:
        catalog_entry(catalog, model, task_type).input_model.model_validate(data)
    return str(info.value)


def test_task_types_and_families(catalog: Catalog) -> None:
    assert catalog.task_types(UDIO) == ["generate_lyrics", "generate_music"]
    assert catalog.task_types(SUNO) == ["generate_lyrics", "generate_music", "generate_music_custom"]
    for e in catalog:
        if e.model in (UDIO, SUNO):
            assert e.family == e.model  # PiAPI's keys in /account/active_tasks
            assert e.retention == IMAGE_RETENTION
            assert e.usage_type == "quota"


@pytest.mark.parametrize(("module", "model"), [(udio_catalog, UDIO), (suno_catalog, SUNO)], ids=["music-u", "music-s"])
def test_documented_examples_validate(catalog: Catalog, module: Any, model: str) -> None:
    examples: dict[str, dict[str, Any]] = module.EXAMPLE_INPUTS
    assert sorted(examples) == catalog.task_types(model)
    for task_type, data in examples.items():
        inputs = catalog_entry(catalog, model, task_type).input_model.model_validate(data)
        assert inputs.model_dump()["prompt" if "prompt" in data else "gpt_description_prompt"]


def test_udio_defaults(catalog: Catalog) -> None:
    model = catalog_entry(catalog, UDIO, "generate_music").input_model
    inputs = model.model_validate({"lyrics_type": "generate", "gpt_description_prompt": "night breeze, piano"})
    dumped = inputs.model_dump()
    assert dumped["seed"] == -1
    assert dumped["negative_tags"] == dumped["lyrics"] == dumped["continue_song_id"] == ""
    assert dumped["continue_at"] == 0


def test_udio_lyrics_type_is_required_and_enumerated(catalog: Catalog) -> None:
    assert "lyrics_type" in refusal(catalog, UDIO, "generate_music", {"gpt_description_prompt": "x"})
    message = refusal(catalog, UDIO, "generate_music", {"gpt_description_prompt": "x", "lyrics_type": "rap"})
    assert "lyrics_type" in message and "'generate', 'user' or 'instrumental'" in message


def test_udio_user_lyrics_are_required_and_read_from_prompt_too(catalog: Catalog) -> None:
    message = refusal(catalog, UDIO, "generate_music", {"lyrics_type": "user", "gpt_description_prompt": "pop"})
    assert "lyrics: required when lyrics_type is user" in message
    model = catalog_entry(catalog, UDIO, "generate_music").input_model
    given = model.model_validate({"lyrics_type": "user", "lyrics": "[Verse]\nla"})
    assert isinstance(given, udio_catalog.UdioGenerateMusic)
    assert given.sung_lyrics() == "[Verse]\nla" and given.description() == ""
    as_prompt = model.model_validate({"lyrics_type": "user", "prompt": "[Verse]\nlo", "gpt_description_prompt": "pop"})
    assert isinstance(as_prompt, udio_catalog.UdioGenerateMusic)
    assert as_prompt.sung_lyrics() == "[Verse]\nlo" and as_prompt.description() == "pop"


@pytest.mark.parametrize("lyrics_type", ["generate", "instrumental"])
def test_udio_description_is_required_unless_user_lyrics(catalog: Catalog, lyrics_type: str) -> None:
    message = refusal(catalog, UDIO, "generate_music", {"lyrics_type": lyrics_type})
    assert f"gpt_description_prompt: required when lyrics_type is {lyrics_type}" in message
    model = catalog_entry(catalog, UDIO, "generate_music").input_model
    inputs = model.model_validate({"lyrics_type": lyrics_type, "gpt_description_prompt": "rain", "lyrics": "ignored"})
    assert isinstance(inputs, udio_catalog.UdioGenerateMusic)
    assert inputs.sung_lyrics() == ""


def test_udio_seed_and_continue_at_ranges(catalog: Catalog) -> None:
    base = {"lyrics_type": "instrumental", "gpt_description_prompt": "rain"}
    assert "seed" in refusal(catalog, UDIO, "generate_music", {**base, "seed": -2})
    assert "continue_at" in refusal(catalog, UDIO, "generate_music", {**base, "continue_at": -1})
    message = refusal(catalog, UDIO, "generate_music", {**base, "continue_at": 12})
    assert "continue_at: only with continue_song_id" in message


def test_extension_is_a_derived_operation(catalog: Catalog) -> None:
    assert catalog_entry(catalog, UDIO, "generate_music").derived_from == DerivedFrom(
        models=(UDIO,), task_types=("generate_music",), field="continue_song_id"
    )
    assert catalog_entry(catalog, SUNO, "generate_music_custom").derived_from == DerivedFrom(
        models=(SUNO,), task_types=("generate_music", "generate_music_custom"), field="continue_clip_id"
    )
    for key in ((UDIO, "generate_lyrics"), (SUNO, "generate_music"), (SUNO, "generate_lyrics")):
        assert catalog_entry(catalog, *key).derived_from is None


def test_prices(catalog: Catalog) -> None:
    def price(model: str, task_type: str, data: dict[str, Any]) -> int:
        e = catalog_entry(catalog, model, task_type)
        return e.price_of(e.input_model.model_validate(data))

    udio = {"lyrics_type": "instrumental", "gpt_description_prompt": "rain"}
    assert price(UDIO, "generate_music", udio) == usd(0.05) == 500_000
    assert price(UDIO, "generate_music", {**udio, "continue_song_id": "t-1", "continue_at": 20}) == usd(0.05)
    assert price(UDIO, "generate_lyrics", {"prompt": "egrets"}) == usd(0.002)
    assert price(SUNO, "generate_music", {"gpt_description_prompt": "autumn"}) == usd(0.02)
    custom = {"prompt": "[Verse]\nla", "tags": "R&B"}
    assert price(SUNO, "generate_music_custom", custom) == usd(0.02)
    assert price(SUNO, "generate_music_custom", {**custom, "continue_clip_id": "t-1"}) == usd(0.04)
    assert price(SUNO, "generate_lyrics", {"prompt": "egrets"}) == usd(0.002)


def test_suno_modes(catalog: Catalog) -> None:
    simple = catalog_entry(catalog, SUNO, "generate_music").input_model.model_validate(
        {"gpt_description_prompt": "autumn"}
    )
    assert simple.model_dump()["make_instrumental"] is False
    assert simple.model_dump()["model_version"] == "chirp-v3-0"
    assert "gpt_description_prompt" in refusal(catalog, SUNO, "generate_music", {})
    bad_version = {"gpt_description_prompt": "autumn", "model_version": "chirp-v9"}
    assert "model_version" in refusal(catalog, SUNO, "generate_music", bad_version)
    custom = SUNO, "generate_music_custom"
    assert "prompt: the lyrics are required unless make_instrumental" in refusal(catalog, *custom, {"tags": "pop"})
    assert "tags: an instrumental needs a style" in refusal(catalog, *custom, {"make_instrumental": True})
    instrumental = {"make_instrumental": True, "tags": "lofi"}
    assert catalog_entry(catalog, *custom).input_model.model_validate(instrumental).model_dump()["prompt"] == ""
    message = refusal(catalog, *custom, {"prompt": "la", "continue_at": 30})
    assert "continue_at: only with continue_clip_id" in message


def test_lyrics_prompt_is_required(catalog: Catalog) -> None:
    for model in (UDIO, SUNO):
        assert "prompt" in refusal(catalog, model, "generate_lyrics", {})
        assert "prompt" in refusal(catalog, model, "generate_lyrics", {"prompt": ""})
