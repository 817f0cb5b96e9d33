"""Suno through PiAPI's music API: model `music-s`, task types `generate_music` (description mode),
`generate_music_custom` (custom mode: lyrics, title, tags, extension) and `generate_lyrics`.

The fields and their split between the two modes are PiAPI's "Music Generation" page for Suno; `model_version`'s
values and its default (chirp-v3-0) come from the same page and the legacy `mv` field. PiAPI's "[Udio] Generate
Lyrics" page shows its example with `music-s`, so lyrics generation is listed for Suno too. PiAPI has announced it
is sunsetting Suno; the entries stay for the clients written against them.

Extension (`continue_clip_id` + `continue_at`, custom mode only) is a derived operation like Udio's: a clip's id
is the id of the task that made it, and the engine checks that task before anyone pays.
"""

from __future__ import annotations

from typing import Any, Literal, Self

from pydantic import Field, model_validator

from genmill.domain.catalog import IMAGE_RETENTION, CatalogEntry, DerivedFrom, usd
from genmill.models.audio.udio_catalog import (
    MAX_DESCRIPTION_CHARS,
    MAX_LYRICS_CHARS,
    MAX_TAGS_CHARS,
    MAX_TITLE_CHARS,
    UDIO_LYRICS_USD,
)
from genmill.models.schema import TaskInput, flat

SUNO = "music-s"
FAMILY = "music-s"
"""PiAPI's key for Suno in `/account/active_tasks` and the history filter."""

# Prices: PiAPI's stored pages give none for Suno; GoAPI, PiAPI's sister service selling the same Suno pool, lists
# $0.02 per create call and $0.04 per continue call: those are the prices here. Lyrics cost what Udio's do here.
SUNO_USD_PER_GENERATION = 0.02
SUNO_USD_PER_CONTINUATION = 0.04

ModelVersion = Literal["chirp-v3-0", "chirp-v3-5", "chirp-v4"]
DEFAULT_MODEL_VERSION: ModelVersion = "chirp-v3-0"
"""The legacy API's documented default for `mv`; the unified page's example sends it too."""


class SunoGenerateMusic(TaskInput):
    """`generate_music` (description mode): Suno writes the lyrics, picks the style and the title."""

    gpt_description_prompt: str = Field(
        ..., min_length=1, max_length=MAX_DESCRIPTION_CHARS, description="A plain description of the song."
    )
    make_instrumental: bool = Field(False, description="No vocals.")
    model_version: ModelVersion = DEFAULT_MODEL_VERSION


class SunoGenerateMusicCustom(TaskInput):
    """`generate_music_custom` (custom mode): the user's lyrics, title and style; `continue_clip_id` extends."""

    prompt: str = Field("", max_length=MAX_LYRICS_CHARS, description="The lyrics to sing.")
    title: str = Field("", max_length=MAX_TITLE_CHARS, description="Title of the song.")
    tags: str = Field("", max_length=MAX_TAGS_CHARS, description="The style of music, e.g. R&B.")
    negative_tags: str = Field("", max_length=MAX_TAGS_CHARS, description="Styles to avoid, comma-separated.")
    make_instrumental: bool = Field(False, description="No vocals: the lyrics are not sung.")
    model_version: ModelVersion = DEFAULT_MODEL_VERSION
    continue_clip_id: str = Field("", description="Extend this earlier clip (the id of the task that made it).")
    continue_at: float = Field(
        0, ge=0, description="Second of the earlier clip to continue from; 0 continues from its end (our choice)."
    )

    @model_validator(mode="after")
    def _cross_fields(self) -> Self:
        if not self.make_instrumental and not self.prompt.strip():
            raise ValueError("prompt: the lyrics are required unless make_instrumental is true")
        if self.make_instrumental and not (self.tags.strip() or self.prompt.strip()):
            raise ValueError("tags: an instrumental needs a style in tags (or a prompt)")
        if self.continue_at and not self.continue_clip_id.strip():
            raise ValueError("continue_at: only with continue_clip_id (the clip to extend)")
        return self


class SunoGenerateLyrics(TaskInput):
    """`generate_lyrics`: lyrics for a theme, answered as `output.lyrics_pairs [{title, text}]`."""

    prompt: str = Field(..., min_length=1, max_length=MAX_DESCRIPTION_CHARS, description="What the lyrics are about.")


def _custom_price(inputs: SunoGenerateMusicCustom) -> int:
    continuing = bool(inputs.continue_clip_id.strip())
    return usd(SUNO_USD_PER_CONTINUATION if continuing else SUNO_USD_PER_GENERATION)


EXAMPLE_INPUTS: dict[str, dict[str, Any]] = {
    # PiAPI's Suno "Music Generation" page (description mode), the legacy page's custom example, and the
    # "[Udio] Generate Lyrics" page, whose example names music-s.
    "generate_music": {
        "gpt_description_prompt": "Autumn night breeze",
        "make_instrumental": True,
        "model_version": "chirp-v3-0",
    },
    "generate_music_custom": {
        "prompt": "[Verse 1]\nIn the quiet of the night,\nI still hear the echoes of your name,\n"
        "Haunted by the memories,\nNothing ever feels the same.\n",
        "title": "Without your love",
        "tags": "R&B",
        "model_version": "chirp-v3-5",
        "continue_at": 0,
        "continue_clip_id": "",
    },
    "generate_lyrics": {"prompt": "White egrets fly over the vast paddy fields"},
}
"""Per task type, the input PiAPI's documentation shows for it."""

_CONTINUES = DerivedFrom(
    models=(SUNO,), task_types=("generate_music", "generate_music_custom"), field="continue_clip_id"
)

ENTRIES: list[CatalogEntry] = [
    CatalogEntry(
        model=SUNO,
        task_type="generate_music",
        input_model=SunoGenerateMusic,
        price=flat(SUNO_USD_PER_GENERATION),
        family=FAMILY,
        retention=IMAGE_RETENTION,
        description="A song from a description, lyrics written for it ($0.02).",
    ),
    CatalogEntry(
        model=SUNO,
        task_type="generate_music_custom",
        input_model=SunoGenerateMusicCustom,
        price=_custom_price,
        family=FAMILY,
        retention=IMAGE_RETENTION,
        description="A song from lyrics, title and style ($0.02); continue_clip_id extends a clip ($0.04).",
        derived_from=_CONTINUES,
    ),
    CatalogEntry(
        model=SUNO,
        task_type="generate_lyrics",
        input_model=SunoGenerateLyrics,
        price=flat(UDIO_LYRICS_USD),
        family=FAMILY,
        retention=IMAGE_RETENTION,
        description="Lyrics for a theme: output.lyrics_pairs [{title, text}].",
    ),
]
