"""Which audio backends a server has: ACE-Step, MusicGen and Stable Audio Open for the folders that exist, and the
audio entries no installable model can honestly serve, each listed with its reason so `genmill models` explains it.

    genmill-models/ace-step/            ACE-Step 1.5 (diffusers): every ace-step task type; diffrhythm as a stand-in
    genmill-models/musicgen/            MusicGen stand-in: ace-step txt2audio, audio2audio, extend; diffrhythm
    genmill-models/stable-audio-open/   Stable Audio Open: mmaudio video2audio
    genmill-models/f5-tts/              F5-TTS weights: reported as unusable here (see F5_TTS_REASON)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from genmill.backends.ace_step import FOLDER as ACE_STEP_FOLDER
from genmill.backends.ace_step import AceStepBackend
from genmill.backends.base import Backend, UnservedBackend
from genmill.backends.diffusers_loading import Placement
from genmill.backends.musicgen import FOLDER as MUSICGEN_FOLDER
from genmill.backends.musicgen import MusicGenBackend
from genmill.backends.stable_audio import FOLDER as STABLE_AUDIO_FOLDER
from genmill.backends.stable_audio import StableAudioBackend
from genmill.models.audio.catalog import ACE_STEP
from genmill.models.tts.catalog import MODEL as TTS

F5_TTS_FOLDER = "f5-tts"

F5_TTS_REASON = (
    "F5-TTS cannot run with this server's torch 2.13.0: f5-tts 1.1.22 needs torchaudio, and PyPI's newest "
    "torchaudio (2.11.0) is a CUDA build for torch 2.11 that fails to load here (OSError: libc10_cuda.so: cannot "
    "open shared object file: No such file or directory); its other dependencies would also upgrade numpy to 2.x "
    "and protobuf to 7.x, which break mediapipe 0.10.21. Qubico/tts zero-shot clones ref_audio with Dia-1.6B "
    "(tts-clone/, genmill models pull Qubico/tts) and speaks without it with piper-tts"
)

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
    **musicgen_options: Any,
) -> list[Backend]:
    """The audio backends whose weight folders exist under `models_dir`.

    As with Flux, a missing folder adds no backend; a folder that exists but cannot be used is listed and its
    `availability()` says why, as are ace-step `edit` beside MusicGen alone and F5-TTS weights (never usable
    here). ACE-Step comes before MusicGen: the first available backend of an entry runs it, so with both folders
    ACE-Step's entries run on ACE-Step and MusicGen serves nothing ACE-Step can. `placement` is where ACE-Step
    loads; `ace_step_options` go to `AceStepBackend` and `musicgen_options` to `MusicGenBackend` (tests
    shorten their runs).
    """
    backends: list[Backend] = []
    ace_step = (models_dir / ACE_STEP_FOLDER).is_dir()
    if ace_step:
        backends.append(AceStepBackend(models_dir / ACE_STEP_FOLDER, placement=placement, **(ace_step_options or {})))
    if (models_dir / MUSICGEN_FOLDER).is_dir():
        backends.append(MusicGenBackend(models_dir / MUSICGEN_FOLDER, **musicgen_options))
        if not ace_step:
            # Where only the MusicGen stand-in is set up, edit says why instead of "no backend".
            backends.append(UnservedBackend("ace-step-edit", ((ACE_STEP, "edit"),), ACE_STEP_EDIT_REASON))
    if (models_dir / STABLE_AUDIO_FOLDER).is_dir():
        backends.append(StableAudioBackend(models_dir / STABLE_AUDIO_FOLDER))
    if (models_dir / F5_TTS_FOLDER).is_dir():
        backends.append(UnservedBackend("f5-tts", ((TTS, "zero-shot"),), F5_TTS_REASON))
    return backends
