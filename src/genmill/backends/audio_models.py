"""Which audio backends a server has: MusicGen and Stable Audio Open for the folders that exist, and the audio
entries no installable model can honestly serve, each listed with its reason so `genmill models` explains it.

    genmill-models/musicgen/            MusicGen: ace-step txt2audio, audio2audio, extend; diffrhythm txt2audio-*
    genmill-models/stable-audio-open/   Stable Audio Open: mmaudio video2audio
    genmill-models/f5-tts/              F5-TTS weights: reported as unusable here (see F5_TTS_REASON)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from genmill.backends.base import Backend, UnservedBackend
from genmill.backends.musicgen import FOLDER as MUSICGEN_FOLDER
from genmill.backends.musicgen import MusicGenBackend
from genmill.backends.stable_audio import FOLDER as STABLE_AUDIO_FOLDER
from genmill.backends.stable_audio import StableAudioBackend
from genmill.catalog.audio import ACE_STEP
from genmill.catalog.tts import MODEL as TTS

F5_TTS_FOLDER = "f5-tts"

F5_TTS_REASON = (
    "F5-TTS cannot run with this server's torch 2.13.0: f5-tts 1.1.22 needs torchaudio, and PyPI's newest "
    "torchaudio (2.11.0) is a CUDA build for torch 2.11 that fails to load here (OSError: libc10_cuda.so: cannot "
    "open shared object file: No such file or directory); its other dependencies would also upgrade numpy to 2.x "
    "and protobuf to 7.x, which break mediapipe 0.10.21. Qubico/tts zero-shot is served by piper-tts, which "
    "cannot clone ref_audio"
)

ACE_STEP_EDIT_REASON = (
    "not served: editing the lyrics or style of existing audio in place needs ACE-Step itself, and its PyPI "
    "package (ace-step 0.1.0) does not build (FileNotFoundError: [Errno 2] No such file or directory: "
    "'requirements.txt'); MusicGen, which serves the other ace-step task types, neither sings lyrics nor edits "
    "audio in place, so nothing here could do what edit promises"
)


def audio_backends(models_dir: Path, **musicgen_options: Any) -> list[Backend]:
    """The audio backends whose weight folders exist under `models_dir`.

    As with Flux, a missing folder adds no backend; a folder that exists but cannot be used is listed and its
    `availability()` says why, as are ace-step `edit` (beside MusicGen) and F5-TTS weights (never usable here).
    `musicgen_options` go to `MusicGenBackend` (tests shorten its windows).
    """
    backends: list[Backend] = []
    if (models_dir / MUSICGEN_FOLDER).is_dir():
        backends.append(MusicGenBackend(models_dir / MUSICGEN_FOLDER, **musicgen_options))
        # Where the ace-step stand-in is set up, its one unserved task type says why instead of "no backend".
        backends.append(UnservedBackend("ace-step-edit", ((ACE_STEP, "edit"),), ACE_STEP_EDIT_REASON))
    if (models_dir / STABLE_AUDIO_FOLDER).is_dir():
        backends.append(StableAudioBackend(models_dir / STABLE_AUDIO_FOLDER))
    if (models_dir / F5_TTS_FOLDER).is_dir():
        backends.append(UnservedBackend("f5-tts", ((TTS, "zero-shot"),), F5_TTS_REASON))
    return backends
