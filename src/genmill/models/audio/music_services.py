"""Udio's and Suno's `generate_music` on ACE-Step, a stand-in: how the services' fields become one ACE-Step song,
and how the song comes back in each service's PiAPI shape.

    Udio  lyrics_type instrumental   gpt_description_prompt as ACE-Step's caption, no vocals
          lyrics_type user           `lyrics` (or `prompt`, as PiAPI's example sends them) sung; the description,
                                     when given, is the style
          lyrics_type generate       lyrics first written by the lyrics model (GENMILL_LYRICS_*), then sung;
                                     refused with a 400 at creation where no lyrics model is configured
    Suno  generate_music             description mode: as Udio's generate, or instrumental with make_instrumental
          generate_music_custom      `prompt` (the lyrics) sung in the style of `tags`, titled `title`

`continue_song_id` / `continue_clip_id` extend an earlier song: the entry is derived (`derived_from`), so the
engine has checked that song's task, and `RunContext.origin()` gives its output, whose audio is continued from
`continue_at` (0 or past its end: from its end) by the service's song length with ACE-Step's repaint.

Choices where the services' pages are silent, all in docs/music-services.md: one song per task whose id is the
task's id (Udio and Suno make two; an extension must name a task), 32 s per Udio song or extension (udio32, which
PiAPI names for extensions), 120 s per Suno clip, no cover image (`image_path` / `image_url` are ""), a title
from the description's first words when neither the client nor the lyrics model gave one.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from genmill.backends.base import RunContext, ServedBy
from genmill.domain.catalog import CatalogEntry, TaskInput
from genmill.errors import InputRejected
from genmill.models.audio.lyrics import LyricsWriter, title_from
from genmill.models.audio.suno_catalog import SUNO, SunoGenerateMusic, SunoGenerateMusicCustom
from genmill.models.audio.udio_catalog import UDIO, UdioGenerateMusic

MUSIC_ENTRIES = ((UDIO, "generate_music"), (SUNO, "generate_music"), (SUNO, "generate_music_custom"))
SERVICES = {UDIO: "Udio", SUNO: "Suno"}
SONG_SECONDS = {UDIO: 32.0, SUNO: 120.0}
"""Seconds of new music per song or extension: Udio's udio32 (PiAPI: "you can only extend 32 seconds on every
extend call"), and two minutes for Suno, the length of a chirp-v3 clip."""
DEFAULT_STYLE = "song with vocals"
"""ACE-Step's caption for user lyrics sent without any style (our choice)."""
NO_WRITER = "no lyrics model is configured here (GENMILL_LYRICS_BASE_URL and GENMILL_LYRICS_MODEL)"
NEGATIVE_LIMIT = "negative_tags are not used: ACE-Step has no negative prompt"


@dataclass(frozen=True)
class Song:
    """One music task resolved into what ACE-Step is asked for and what the output reports."""

    style: str
    """ACE-Step's caption: the description, the tags, or DEFAULT_STYLE."""
    lyrics: str
    """What is sung; "" for an instrumental."""
    title: str
    description: str
    """The service's own description field, echoed in the output."""
    tags: str
    seconds: float
    """Seconds of new music."""
    notes: tuple[str, ...] = ()
    continue_field: str = ""
    """`continue_song_id` or `continue_clip_id` when the task extends a song; "" otherwise."""
    continue_ref: str = ""
    """The earlier song's audio URL, to be read with `RunContext.read_input`."""
    continue_at: float = 0.0
    origin_id: str = ""


def needs_writer(entry: CatalogEntry, inputs: TaskInput) -> bool:
    """Whether the service would write the lyrics itself (Udio's generate, Suno's description mode with vocals)."""
    if isinstance(inputs, UdioGenerateMusic):
        return inputs.lyrics_type == "generate"
    return (
        isinstance(inputs, SunoGenerateMusic) and entry.task_type == "generate_music" and not inputs.make_instrumental
    )


def check(entry: CatalogEntry, inputs: TaskInput, writer: LyricsWriter | None) -> None:
    """Refuse at creation (400, no credits) a song whose lyrics must be written where no lyrics model is set."""
    if writer is not None or not needs_writer(entry, inputs):
        return
    if entry.model == UDIO:
        raise InputRejected(
            f"lyrics_type: generate needs lyrics written by a language model and {NO_WRITER}; send lyrics_type "
            "user with lyrics, or instrumental"
        )
    raise InputRejected(
        f"make_instrumental: a song with vocals in description mode needs lyrics written by a language model and "
        f"{NO_WRITER}; use generate_music_custom with lyrics, or make_instrumental true"
    )


def served_by(entry: CatalogEntry, pipeline: str, writer: LyricsWriter | None, seconds: float) -> ServedBy:
    service = SERVICES[entry.model]
    limits = [
        f"one song per task (the service makes two); its id is the task's id, {seconds:g} s of new music each",
        NEGATIVE_LIMIT,
        "no cover image: image_path / image_url are empty",
    ]
    if entry.model == SUNO:
        limits.append("model_version is Suno's: ACE-Step runs whichever is asked")
    if entry.task_type == "generate_music":
        limits.append(
            f"lyrics written by {writer.described}" if writer else f"lyrics to write are refused: {NO_WRITER}"
        )
    return ServedBy(f"{pipeline} (stand-in for {service})", stand_in=True, limits=tuple(limits))


def prepare(
    entry: CatalogEntry, inputs: TaskInput, ctx: RunContext, writer: LyricsWriter | None, seconds: float
) -> Song:
    """The song a task asks for; writes its lyrics first where the service would have, and finds the earlier
    song an extension continues. Raises InputRejected naming the field for what cannot be honoured."""
    check(entry, inputs, writer)
    if isinstance(inputs, UdioGenerateMusic):
        song = _udio(inputs, ctx, writer, seconds)
        return _continued(song, "continue_song_id", inputs.continue_song_id, inputs.continue_at, ctx)
    if isinstance(inputs, SunoGenerateMusicCustom):
        song = _suno_custom(inputs, seconds)
        return _continued(song, "continue_clip_id", inputs.continue_clip_id, inputs.continue_at, ctx)
    if isinstance(inputs, SunoGenerateMusic):
        description = inputs.gpt_description_prompt.strip()
        lyrics, title = ("", title_from(description))
        if not inputs.make_instrumental:
            lyrics, title = _written(description, writer, ctx)
        notes = (f"model_version {inputs.model_version} is Suno's; ACE-Step runs",)
        return Song(description, lyrics, title, description, description, seconds, notes)
    raise InputRejected(f"task_type: {entry.model} {entry.task_type} is not a music task")


def _udio(inputs: UdioGenerateMusic, ctx: RunContext, writer: LyricsWriter | None, seconds: float) -> Song:
    description = inputs.description()
    notes = (NEGATIVE_LIMIT + "; ignored",) if inputs.negative_tags.strip() else ()
    if inputs.lyrics_type == "user":
        lyrics = inputs.sung_lyrics()
        title = inputs.title.strip() or title_from(description or lyrics)
        return Song(description or DEFAULT_STYLE, lyrics, title, description, description, seconds, notes)
    if inputs.lyrics_type == "generate":
        lyrics, written_title = _written(description, writer, ctx)
        title = inputs.title.strip() or written_title
        return Song(description, lyrics, title, description, description, seconds, notes)
    title = inputs.title.strip() or title_from(description)
    return Song(description, "", title, description, description, seconds, notes)


def _suno_custom(inputs: SunoGenerateMusicCustom, seconds: float) -> Song:
    tags = inputs.tags.strip()
    lyrics = "" if inputs.make_instrumental else inputs.prompt.strip()
    title = inputs.title.strip() or title_from(tags or inputs.prompt)
    notes = [f"model_version {inputs.model_version} is Suno's; ACE-Step runs"]
    if inputs.negative_tags.strip():
        notes.append(NEGATIVE_LIMIT + "; ignored")
    style = tags or (inputs.prompt.strip() if inputs.make_instrumental else DEFAULT_STYLE)
    return Song(style, lyrics, title, "", tags, seconds, tuple(notes))


def _written(description: str, writer: LyricsWriter | None, ctx: RunContext) -> tuple[str, str]:
    """Lyrics and a title for `description` from the lyrics model."""
    if writer is None:  # checked at creation; a task queued before the setting changed still fails clearly
        raise InputRejected(f"lyrics_type: lyrics cannot be written: {NO_WRITER}")
    ctx.log(f"lyrics written by {writer.described}")
    pair = writer.write(description, count=1)[0]
    return pair.text, pair.title


def _continued(song: Song, field: str, origin_id: str, continue_at: float, ctx: RunContext) -> Song:
    """The song with the earlier song it extends, from the origin task the engine checked."""
    origin_id = origin_id.strip()
    if not origin_id:
        return song
    origin = ctx.origin()
    if origin is None or origin.task_id != origin_id:
        raise InputRejected(f"{field}: the song {origin_id!r} to extend was not found")
    ref = song_audio(origin.output)
    if not ref:
        raise InputRejected(f"{field}: the task {origin_id!r} has no song to extend")
    note = f"{field}: continues {origin_id} from " + (f"{continue_at:g}s" if continue_at else "its end")
    return Song(
        song.style,
        song.lyrics,
        song.title,
        song.description,
        song.tags,
        song.seconds,
        (*song.notes, note),
        continue_field=field,
        continue_ref=ref,
        continue_at=continue_at,
        origin_id=origin_id,
    )


def song_audio(output: Mapping[str, Any] | None) -> str:
    """The audio URL of the first song in an Udio (`songs[].song_path`) or Suno (`clips{}.audio_url`) output."""
    if not output:
        return ""
    songs = output.get("songs")
    if isinstance(songs, list) and songs and isinstance(songs[0], dict):
        return str(songs[0].get("song_path") or "")
    clips = output.get("clips")
    if isinstance(clips, dict):
        for clip in clips.values():
            if isinstance(clip, dict) and clip.get("audio_url"):
                return str(clip["audio_url"])
    return ""


def song_output(entry: CatalogEntry, song: Song, audio_url: str, duration: float, task_id: str) -> dict[str, Any]:
    """The task's output in the service's PiAPI shape: Udio's `songs [...]`, Suno's `clips {id: {...}}`."""
    duration = round(duration, 2)
    if entry.model == UDIO:
        return {
            "songs": [
                {
                    "id": task_id,
                    "generation_id": task_id,
                    "title": song.title,
                    "song_path": audio_url,
                    "image_path": "",
                    "video_path": "",
                    "lyrics": song.lyrics,
                    "prompt": song.description,
                    "tags": [tag.strip() for tag in song.tags.split(",") if tag.strip()],
                    "duration": duration,
                    "finished": True,
                }
            ]
        }
    history = [{"id": song.origin_id, "continue_at": song.continue_at, "type": "gen"}] if song.origin_id else None
    clip = {
        "id": task_id,
        "title": song.title,
        "audio_url": audio_url,
        "video_url": "",
        "image_url": "",
        "image_large_url": "",
        "is_video_pending": False,
        "model_name": "ace-step",
        "major_model_version": "",
        "status": "complete",
        "metadata": {
            "tags": song.tags,
            "prompt": song.lyrics,
            "gpt_description_prompt": song.description,
            "history": history,
            "concat_history": None,
            "type": "gen",
            "duration": duration,
            "error_type": "",
            "error_message": "",
        },
    }
    return {"clips": {task_id: clip}}
