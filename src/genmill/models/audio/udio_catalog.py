"""Udio through PiAPI's music API: model `music-u`, task types `generate_music` and `generate_lyrics`.

The field names, the `lyrics_type` enumeration and the $0.05 per generation are PiAPI's (its "Create Task" and
"[Udio] Song Extend" pages and the task examples). Where PiAPI's pages are silent this module makes the choice and
says so; docs/music-services.md lists every one of them.

Extend is not a task type of its own at PiAPI: a `generate_music` with `continue_song_id` (and `continue_at`)
continues an earlier song. Here a song's id is the id of the task that made it, so the extension is a derived
operation on that task (`derived_from`): the engine checks the earlier task (same account, completed, a music-u
generate_music, within the origin window) before anyone pays, and the backend reads its song through
`RunContext.origin()`. A `generate_music` without `continue_song_id` stands alone.
"""

from __future__ import annotations

from typing import Any, Literal, Self

from pydantic import Field, model_validator

from genmill.domain.catalog import IMAGE_RETENTION, CatalogEntry, DerivedFrom
from genmill.models.schema import Seed, TaskInput, flat

UDIO = "music-u"
FAMILY = "music-u"
"""PiAPI's key for Udio in `/account/active_tasks` and the history filter."""

UDIO_USD_PER_GENERATION = 0.05
"""PiAPI: "music-u: $0.05 / generation"; an extension is a generation too."""
UDIO_LYRICS_USD = 0.002
"""Our choice: PiAPI's pages give no price for generate_lyrics (GoAPI, PiAPI's sister service, lists Suno's lyrics
as free); here the lyrics come from the operator's LLM, so a task costs what a short chat completion does."""

LyricsType = Literal["generate", "user", "instrumental"]

# Lengths: our choice (PiAPI's pages give none); generous for a song, bounded for the lyrics model's prompt.
MAX_DESCRIPTION_CHARS = 1000
MAX_LYRICS_CHARS = 5000
MAX_TAGS_CHARS = 500
MAX_TITLE_CHARS = 120


class UdioGenerateMusic(TaskInput):
    """`generate_music`: a song from a description (lyrics written for it), an instrumental, or the user's lyrics;
    with `continue_song_id` an extension of an earlier song."""

    gpt_description_prompt: str = Field(
        "",
        max_length=MAX_DESCRIPTION_CHARS,
        description="What the song is about and how it sounds; the style for lyrics_type user.",
    )
    prompt: str = Field(
        "",
        max_length=MAX_LYRICS_CHARS,
        description="PiAPI's example for lyrics_type user sends the lyrics here; read as lyrics when lyrics is empty.",
    )
    lyrics: str = Field("", max_length=MAX_LYRICS_CHARS, description="The lyrics to sing (lyrics_type user).")
    negative_tags: str = Field("", max_length=MAX_TAGS_CHARS, description="Styles to avoid, comma-separated.")
    title: str = Field("", max_length=MAX_TITLE_CHARS, description="Title of the song; made up when empty.")
    lyrics_type: LyricsType = Field(
        ...,
        description="generate: lyrics written from the description; instrumental: no vocals; user: the lyrics given.",
    )
    seed: Seed = -1
    continue_song_id: str = Field("", description="Extend this earlier song (the id of the task that made it).")
    continue_at: float = Field(
        0, ge=0, description="Second of the earlier song to continue from; 0 continues from its end (our choice)."
    )

    @model_validator(mode="after")
    def _cross_fields(self) -> Self:
        if self.lyrics_type == "user" and not (self.lyrics.strip() or self.prompt.strip()):
            raise ValueError("lyrics: required when lyrics_type is user (PiAPI's examples also send them as prompt)")
        if self.lyrics_type != "user" and not (self.gpt_description_prompt.strip() or self.prompt.strip()):
            raise ValueError(f"gpt_description_prompt: required when lyrics_type is {self.lyrics_type}")
        if self.continue_at and not self.continue_song_id.strip():
            raise ValueError("continue_at: only with continue_song_id (the song to extend)")
        return self

    def sung_lyrics(self) -> str:
        """The lyrics a user-lyrics song sings: `lyrics`, else `prompt` (PiAPI's example); "" otherwise."""
        if self.lyrics_type != "user":
            return ""
        return self.lyrics.strip() or self.prompt.strip()

    def description(self) -> str:
        """What describes the song: `gpt_description_prompt`, else `prompt` when it is not the lyrics."""
        if self.gpt_description_prompt.strip():
            return self.gpt_description_prompt.strip()
        return "" if self.lyrics_type == "user" else self.prompt.strip()


class UdioGenerateLyrics(TaskInput):
    """`generate_lyrics`: lyrics for a theme, answered as `output.lyrics_pairs [{title, text}]`."""

    prompt: str = Field(..., min_length=1, max_length=MAX_DESCRIPTION_CHARS, description="What the lyrics are about.")


EXAMPLE_INPUTS: dict[str, dict[str, Any]] = {
    # PiAPI's "Song API Task Creation Examples" (simple prompt) and "[Udio] Generate Lyrics" pages.
    "generate_music": {
        "gpt_description_prompt": "night breeze, piano",
        "negative_tags": "",
        "lyrics_type": "generate",
        "seed": -1,
    },
    "generate_lyrics": {"prompt": "White egrets fly over the vast paddy fields"},
}
"""Per task type, the input PiAPI's documentation shows for it."""

ENTRIES: list[CatalogEntry] = [
    CatalogEntry(
        model=UDIO,
        task_type="generate_music",
        input_model=UdioGenerateMusic,
        price=flat(UDIO_USD_PER_GENERATION),
        family=FAMILY,
        retention=IMAGE_RETENTION,
        description="A song from a description, lyrics or neither ($0.05); continue_song_id extends a song.",
        derived_from=DerivedFrom(models=(UDIO,), task_types=("generate_music",), field="continue_song_id"),
    ),
    CatalogEntry(
        model=UDIO,
        task_type="generate_lyrics",
        input_model=UdioGenerateLyrics,
        price=flat(UDIO_LYRICS_USD),
        family=FAMILY,
        retention=IMAGE_RETENTION,
        description="Lyrics for a theme: output.lyrics_pairs [{title, text}].",
    ),
]
