"""WAV helpers for the audio backend tests: make inputs as a client sends them, read outputs back."""

from __future__ import annotations

import base64
import io
import wave
from typing import Any

import numpy as np
from numpy.typing import NDArray


def wav_ref(samples: NDArray[np.floating[Any]], rate: int = 16000) -> str:
    """A data: URI of mono 16-bit PCM samples in [-1, 1]."""
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(rate)
        wav.writeframes((np.clip(samples, -1, 1) * 32767).astype("<i2").tobytes())
    return "data:audio/wav;base64," + base64.b64encode(buffer.getvalue()).decode()


def tone(seconds: float, hz: float, rate: int = 16000) -> str:
    """A sine tone at half scale, as a data: URI."""
    t = np.arange(round(seconds * rate)) / rate
    return wav_ref(0.5 * np.sin(2 * np.pi * hz * t), rate)


def read_wav(data: bytes) -> tuple[int, NDArray[np.float32]]:
    """(sample rate, channels x samples in [-1, 1]) of 16-bit PCM WAV bytes."""
    with wave.open(io.BytesIO(data)) as wav:
        rate, channels = wav.getframerate(), wav.getnchannels()
        pcm = np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2")
    return rate, pcm.reshape(-1, channels).T.astype(np.float32) / 32767
