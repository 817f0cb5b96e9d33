"""F5-TTS weights in the models folder, reported rather than run: F5-TTS cannot be installed beside this server's
torch (`F5_TTS_REASON`), so an `f5-tts/` folder lists a backend that is never available and says why, instead of
`genmill models` staying silent about weights an operator put there.

    genmill-models/f5-tts/              F5-TTS weights: reported as unusable here (see F5_TTS_REASON)
"""

from __future__ import annotations

from pathlib import Path

from genmill.backends.base import Backend, UnservedBackend
from genmill.models.tts.catalog import MODEL as TTS

F5_TTS_FOLDER = "f5-tts"

F5_TTS_REASON = (
    "F5-TTS cannot run with this server's torch 2.13.0: f5-tts 1.1.22 needs torchaudio, and PyPI's newest "
    "torchaudio (2.11.0) is a CUDA build for torch 2.11 that fails to load here (OSError: libc10_cuda.so: cannot "
    "open shared object file: No such file or directory); its other dependencies would also upgrade numpy to 2.x "
    "and protobuf to 7.x, which break mediapipe 0.10.21. Qubico/tts zero-shot clones ref_audio with Dia-1.6B "
    "(tts-clone/, genmill models pull Qubico/tts) and speaks without it with piper-tts"
)


def f5_tts_backends(models_dir: Path) -> list[Backend]:
    """The never-available F5-TTS backend for `Qubico/tts` zero-shot when its folder exists, else nothing."""
    if (models_dir / F5_TTS_FOLDER).is_dir():
        return [UnservedBackend("f5-tts", ((TTS, "zero-shot"),), F5_TTS_REASON)]
    return []
