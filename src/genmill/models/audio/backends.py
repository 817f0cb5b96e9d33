"""Which audio backends a server has: ACE-Step, MusicGen and Stable Audio Open for the folders that exist, and the
audio entries no installable model can honestly serve, each listed with its reason so `genmill models` explains it.

    genmill-models/ace-step/            ACE-Step 1.5 (diffusers): every ace-step task type; diffrhythm as a stand-in
    genmill-models/musicgen/            MusicGen stand-in: ace-step txt2audio, audio2audio, extend; diffrhythm
    genmill-models/stable-audio-open/   Stable Audio Open: mmaudio video2audio
    GENMILL_LYRICS_BASE_URL + _MODEL    a chat model writing Udio's and Suno's lyrics (generate_lyrics, and the
                                        lyrics of ACE-Step's Udio and Suno songs that the service would write)

(F5-TTS weights, a `Qubico/tts` model, are reported by `genmill.models.tts.f5_tts`.)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from genmill.backends.base import Backend, UnservedBackend
from genmill.backends.diffusers_loading import Placement
from genmill.backends.openai_compat import OpenAICompatTarget
from genmill.models.audio.ace_step import FOLDER as ACE_STEP_FOLDER
from genmill.models.audio.ace_step import AceStepBackend
from genmill.models.audio.catalog import ACE_STEP
from genmill.models.audio.lyrics import LyricsBackend, LyricsWriter
from genmill.models.audio.musicgen import FOLDER as MUSICGEN_FOLDER
from genmill.models.audio.musicgen import MusicGenBackend
from genmill.models.audio.stable_audio import FOLDER as STABLE_AUDIO_FOLDER
from genmill.models.audio.stable_audio import StableAudioBackend

ACE_STEP_EDIT_REASON = (
    "not served: editing audio in place needs ACE-Step itself; put a diffusers-format ACE-Step 1.5 folder in "
    f"{ACE_STEP_FOLDER}/ under the models folder (genmill models pull Qubico/ace-step); MusicGen, which stands in "
    "for the other ace-step task types here, neither sings lyrics nor edits audio in place"
)


def audio_backends(
    models_dir: Path,
    *,
    placement: Placement | None = None,
    ace_step_options: dict[str, Any] | None = None,
    lyrics: OpenAICompatTarget | None = None,
    **musicgen_options: Any,
) -> list[Backend]:
    """The audio backends whose weight folders exist under `models_dir`.

    As with Flux, a missing folder adds no backend; a folder that exists but cannot be used is listed and its
    `availability()` says why, as is ace-step `edit` beside MusicGen alone. ACE-Step comes before MusicGen: the
    first available backend of an entry runs it, so with both folders ACE-Step's entries run on ACE-Step and
    MusicGen serves nothing ACE-Step can. `placement` is where ACE-Step loads; `ace_step_options` go to
    `AceStepBackend` and `musicgen_options` to `MusicGenBackend` (tests shorten their runs). `lyrics`, the chat
    model that writes Udio's and Suno's lyrics, adds the generate_lyrics backend and lets ACE-Step's Udio and
    Suno songs have their lyrics written; without it those tasks are refused at creation.
    """
    backends: list[Backend] = []
    writer = LyricsWriter(lyrics) if lyrics is not None else None
    ace_step = (models_dir / ACE_STEP_FOLDER).is_dir()
    if ace_step:
        options = {"lyrics": writer, **(ace_step_options or {})}
        backends.append(AceStepBackend(models_dir / ACE_STEP_FOLDER, placement=placement, **options))
    if (models_dir / MUSICGEN_FOLDER).is_dir():
        backends.append(MusicGenBackend(models_dir / MUSICGEN_FOLDER, **musicgen_options))
        if not ace_step:
            # Where only the MusicGen stand-in is set up, edit says why instead of "no backend".
            backends.append(UnservedBackend("ace-step-edit", ((ACE_STEP, "edit"),), ACE_STEP_EDIT_REASON))
    if (models_dir / STABLE_AUDIO_FOLDER).is_dir():
        backends.append(StableAudioBackend(models_dir / STABLE_AUDIO_FOLDER))
    if writer is not None:
        backends.append(LyricsBackend(writer))
    return backends
