"""Audio plumbing shared by the audio model backends: decoding inputs, writing WAV, weights on disk, devices.

Inputs are decoded by the ffmpeg binary bundled in `imageio-ffmpeg` (the same one the video toolkit runs), so
any format ffmpeg reads is accepted, resampled to the model's rate and channel count in one step, without
torchaudio (PyPI has no CPU torchaudio build for this torch). Outputs are 16-bit PCM WAV, which every player
and every audio library reads, at the model's own sampling rate.
"""

from __future__ import annotations

import io
import subprocess
import tempfile
import wave
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from genmill.backends.base import RunContext
from genmill.backends.toolkit import field_value
from genmill.backends.video_io import ffmpeg_exe
from genmill.domain.catalog import TaskInput
from genmill.errors import BackendError

Audio = NDArray[np.float32]
"""Samples in [-1, 1], shaped (channels, samples)."""

MAX_INPUT_SECONDS = 600
"""Longer inputs are refused: no audio task here uses more than a few minutes of its input."""

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt")


def decode_audio(data: bytes, *, field: str, rate: int, channels: int) -> Audio:
    """Decode any audio (or the audio track of a video) to float32 samples at `rate` Hz with `channels` channels.

    The file goes through a temporary file rather than a pipe because MP4/M4A keep their index at the end, which
    ffmpeg can only reach by seeking.
    """
    if not data:
        raise BackendError(f"{field}: the file is empty")
    with tempfile.TemporaryDirectory(prefix="genmill-audio-") as folder:
        source = Path(folder) / "input"
        source.write_bytes(data)
        command = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error", "-i", str(source)]
        command += ["-map", "0:a:0", "-t", str(MAX_INPUT_SECONDS + 1), "-vn"]
        command += ["-ac", str(channels), "-ar", str(rate), "-f", "f32le", "-"]
        try:
            done = subprocess.run(command, capture_output=True, timeout=300, check=False)
        except subprocess.TimeoutExpired as exc:
            raise BackendError(f"{field}: decoding the audio took too long") from exc
    detail = done.stderr.decode(errors="replace")[-800:]
    if done.returncode != 0:
        raise BackendError(f"{field}: not a decodable audio file", raw_message=detail)
    samples = np.frombuffer(done.stdout, dtype="<f4")
    frames = len(samples) // channels
    if frames == 0:
        raise BackendError(f"{field}: the file holds no audio samples", raw_message=detail)
    if frames > MAX_INPUT_SECONDS * rate:
        raise BackendError(f"{field}: longer than {MAX_INPUT_SECONDS} seconds")
    return np.ascontiguousarray(samples[: frames * channels].reshape(frames, channels).T, dtype=np.float32)


def read_audio(ctx: RunContext, inputs: TaskInput, field: str, *, rate: int, channels: int) -> Audio:
    """Fetch and decode an audio input field, naming the field in every error."""
    ref = field_value(inputs, field)
    if not isinstance(ref, str) or not ref.strip():
        raise BackendError(f"{field}: an audio URL or base64 string is required")
    return decode_audio(ctx.read_input(ref, field=field).data, field=field, rate=rate, channels=channels)


def fit_length(audio: Audio, samples: int) -> Audio:
    """Cut or zero-pad (channels, n) audio to exactly `samples` samples."""
    if audio.shape[1] >= samples:
        return audio[:, :samples]
    return np.pad(audio, ((0, 0), (0, samples - audio.shape[1])))


def wav_bytes(audio: Audio, rate: int) -> bytes:
    """16-bit PCM WAV of (channels, n) float samples; values beyond [-1, 1] are clipped."""
    pcm = np.round(np.clip(audio, -1.0, 1.0) * 32767.0).astype("<i2")
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as wav:
        wav.setnchannels(audio.shape[0])
        wav.setsampwidth(2)
        wav.setframerate(rate)
        wav.writeframes(np.ascontiguousarray(pcm.T).tobytes())
    return buffer.getvalue()


def save_wav(ctx: RunContext, audio: Audio, rate: int) -> dict[str, str]:
    """Store the audio as the task's output and answer PiAPI's shape for audio models."""
    url = ctx.save_output(wav_bytes(audio, rate), ext="wav", content_type="audio/wav")
    return {"audio_url": url}


def weights_bytes(path: Path) -> int:
    """The size of the weight files under a model folder: what loading it costs in memory, roughly."""
    if not path.is_dir():
        return 0
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file() and f.suffix in WEIGHT_SUFFIXES)


def best_device() -> str:
    """ "cuda" when torch sees a GPU, else "cpu" (torch is imported here, never at module import)."""
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"
