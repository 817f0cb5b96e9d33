"""Audio models: `Qubico/mmaudio` (video to audio), `Qubico/diffrhythm` (songs from lyrics) and
`Qubico/ace-step` (music generation, remix, edit and extension).

Audio outputs are kept as long as images (3 days).
"""

from __future__ import annotations

import math

from pydantic import Field

from genmill.domain.catalog import IMAGE_RETENTION, CatalogEntry
from genmill.models.schema import (
    MediaRef,
    NegativePrompt,
    OptionalMediaRef,
    Seed,
    TaskInput,
    flat,
    per_unit,
    usage_per_unit,
)

MMAUDIO = "Qubico/mmaudio"
DIFFRHYTHM = "Qubico/diffrhythm"
ACE_STEP = "Qubico/ace-step"

# --------------------------------------------------------------------------------------------------
# MMAudio
# --------------------------------------------------------------------------------------------------

MMAUDIO_USD_PER_SECOND = 0.0005
MMAUDIO_MAX_SECONDS = 30


class MMAudioVideo2Audio(TaskInput):
    prompt: str = Field(..., description="The sound to generate.")
    negative_prompt: NegativePrompt = ""
    video: MediaRef = Field(..., description="MP4 video (at most 30 seconds) to make a soundtrack for.")
    steps: int = Field(20, ge=20, le=50, description="Sampling steps.")
    seed: Seed = -1


def mmaudio_price_for_seconds(seconds: float) -> int:
    """The list price for a video of `seconds` seconds: $0.0005 per started second, at most 30 seconds."""
    billed = min(MMAUDIO_MAX_SECONDS, max(1, math.ceil(seconds)))
    return per_unit(MMAUDIO_USD_PER_SECOND, billed)


def _mmaudio_price(_inputs: MMAudioVideo2Audio) -> int:
    # price: our choice — the video's length is known only once it is decoded, so the price of the
    # 30-second maximum is charged.
    return mmaudio_price_for_seconds(MMAUDIO_MAX_SECONDS)


# --------------------------------------------------------------------------------------------------
# DiffRhythm
# --------------------------------------------------------------------------------------------------


class DiffRhythmTxt2Audio(TaskInput):
    lyrics: str = Field("", description="Time-stamped lyrics, one [mm:ss.xx] line each; empty for instrumental.")
    style_prompt: str = Field("pop", description="Style of the song, e.g. pop.")
    style_audio: OptionalMediaRef = Field("", description="Optional reference audio for the style.")


# --------------------------------------------------------------------------------------------------
# ACE-Step
# --------------------------------------------------------------------------------------------------

ACE_STEP_USD_PER_SECOND = 0.0005


class AceStepTxt2Audio(TaskInput):
    style_prompt: str = Field(..., min_length=1, description="Style tags, comma-separated: genre, instruments, mood.")
    lyrics: str = Field("", description='Lyrics with [verse]/[chorus] markers; "[inst]" or "" for instrumental.')
    negative_style_prompt: str = Field("", description="Styles to avoid.")
    # Range and default: our choice (ACE-Step generates up to 4 minutes).
    duration: int = Field(60, ge=5, le=240, description="Length of the generated audio in seconds.")


class AceStepAudio2Audio(AceStepTxt2Audio):
    style_audio: MediaRef = Field(..., description="Source audio to remix in the new style.")


class AceStepEdit(AceStepTxt2Audio):
    style_audio: MediaRef = Field(..., description="Source audio to edit with the new lyrics and/or style.")


class AceStepExtend(AceStepTxt2Audio):
    style_audio: MediaRef = Field(..., description="Source audio to extend.")
    duration: int = Field(30, ge=5, le=240, description="Seconds of new audio to add.")


def _ace_step_price(inputs: AceStepTxt2Audio) -> int:
    return per_unit(ACE_STEP_USD_PER_SECOND, inputs.duration)


ENTRIES: list[CatalogEntry] = [
    CatalogEntry(
        model=MMAUDIO,
        task_type="video2audio",
        input_model=MMAudioVideo2Audio,
        price=_mmaudio_price,
        # The soundtrack is as long as the video: the seconds the output reports (`output.duration`) are consumed.
        usage_price=usage_per_unit("duration", mmaudio_price_for_seconds, MMAUDIO_MAX_SECONDS),
        family="mmaudio",
        retention=IMAGE_RETENTION,
        description="Soundtrack for a video ($0.0005 per second, frozen at the 30-second cap; the seconds of the "
        "video consumed).",
    ),
    *(
        CatalogEntry(
            model=DIFFRHYTHM,
            task_type=task_type,
            input_model=DiffRhythmTxt2Audio,
            price=flat(0.02),
            family="diffrhythm",
            retention=IMAGE_RETENTION,
            description=description,
        )
        for task_type, description in (
            ("txt2audio-base", "Song of up to 1m35s from lyrics and a style."),
            ("txt2audio-full", "Full-length song from lyrics and a style."),
        )
    ),
    *(
        CatalogEntry(
            model=ACE_STEP,
            task_type=task_type,
            input_model=input_model,
            price=_ace_step_price,
            family="ace-step",
            retention=IMAGE_RETENTION,
            description=description,
        )
        for task_type, input_model, description in (
            ("txt2audio", AceStepTxt2Audio, "Music from style tags and lyrics ($0.0005 per second)."),
            ("audio2audio", AceStepAudio2Audio, "Remix audio in a new style."),
            ("edit", AceStepEdit, "Change the lyrics or style of audio, or of one span of it."),
            ("extend", AceStepExtend, "Make audio longer (duration = seconds added)."),
        )
    ),
]
