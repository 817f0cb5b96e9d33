"""`Qubico/tts` `zero-shot` voice cloning with Nari Labs' Dia-1.6B (transformers' `DiaForConditionalGeneration`).

PiAPI clones with F5-TTS, which cannot be installed beside this server's torch (docs/backends.md says why). Of the
cloning models transformers itself ships, Dia is the one used here: Apache-2.0 weights that are not gated, a byte
tokenizer (no tokenizer files to get right) and a documented way to clone: the reference clip, encoded by the DAC
codec, is the start of the audio, and its transcript the start of the text, so the model continues in that voice
with the new words. Sesame's CSM-1B clones through context turns as well and costs less per second on a CPU (12.5
codec frames a second against DAC's 86), but its weights are gated and its processor needs a chat template and a
Llama-3 tokenizer from that gated repository.

Dia takes the reference only with its transcript, and this server has no speech recogniser, so a task with
`ref_audio` and no `ref_text` is refused when it is created. Dia speaks English: text with letters outside the
Latin script is refused at create, like Piper does. Tasks without `ref_audio` are spoken by Piper's fixed voice
(this backend holds a `PiperTtsBackend` and hands them to it), or, where Piper is not installed, by Dia in a voice
of its own that the seed picks.

The weights live in `genmill-models/tts-clone/`: Dia's transformers folder, with the 44.1 kHz DAC codec in its
`dac/` subfolder (the processor's own reference to the codec would be a download at load time). Each generation
holds a lock and seeds torch's global RNG, so the same seed gives the same audio.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import math
import re
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from genmill.backends.audio_io import Audio, best_device, decode_audio, save_wav, weights_bytes
from genmill.backends.base import Availability, Backend, RunContext, ServedBy
from genmill.backends.toolkit import cancelled_error, field_value, pick_seed
from genmill.domain.catalog import CatalogEntry, TaskInput
from genmill.errors import BackendError, InputRejected
from genmill.models.tts.catalog import MODEL as TTS
from genmill.models.tts.piper import MAX_TEXT_CHARS, VOICE_NAME, PiperTtsBackend, VoiceLanguage, split_text

FOLDER = "tts-clone"
CODEC_FOLDER = "dac"
REQUIRED_PACKAGES = ("torch", "transformers", "imageio_ffmpeg")
INSTALL_HINT = "pip install 'genmill[cpu,diffusers]' (install torch==2.13.0 first, see docs/backends.md)"
MODEL_NAME = "Dia-1.6B (transformers DiaForConditionalGeneration)"
ENGLISH = VoiceLanguage("en", "en", "English")

MAX_REF_SECONDS = 15.0
"""Longer reference clips are refused rather than cut: a cut clip no longer matches its transcript, which is what
Dia needs to follow the voice. 15 s of prompt leaves room in Dia's 3,072 audio frames (about 35 s) for a chunk."""
MAX_REF_TEXT_CHARS = 400
"""Dia's text encoder reads at most 1,024 bytes: the transcript and one chunk of gen_text share them."""
SPEAKER_TAG = re.compile(r"^\s*\[S[12]\]")

log = logging.getLogger("genmill.backends.tts_clone")


def tagged(text: str) -> str:
    """Dia's script form: each turn starts with a speaker tag; untagged text is the first speaker's."""
    return text if SPEAKER_TAG.match(text) else f"[S1] {text}"


class _Frames:
    """A transformers `StoppingCriteria` called once per generated frame: it ends the generation early when the
    task is cancelled (the caller then raises)."""

    def __init__(self, ctx: RunContext) -> None:
        self.ctx = ctx
        self.frames = 0
        self.stopped = False

    def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
        import torch

        self.frames += 1
        if self.frames % 50 == 0:
            self.stopped = self.ctx.cancelled()
        return torch.full((input_ids.shape[0],), self.stopped, dtype=torch.bool, device=input_ids.device)


class DiaCloneTtsBackend(Backend):
    """`zero-shot` TTS: Dia clones `ref_audio`; Piper's fixed voice speaks tasks that send none."""

    name = "dia-tts-clone"
    entries = ((TTS, "zero-shot"),)
    requirements = ("torch", "transformers", "imageio-ffmpeg")

    def __init__(
        self,
        path: Path,
        *,
        piper: PiperTtsBackend | None = None,
        max_chunk_chars: int = 250,
        chars_per_second: float = 8.0,
        slack_seconds: float = 1.0,
        sentence_silence: float = 0.2,
        guidance_scale: float = 3.0,
        temperature: float = 1.8,
        top_p: float = 0.90,
        top_k: int = 45,
    ) -> None:
        """`path` holds Dia's transformers folder with the DAC codec in `dac/`; `piper` speaks tasks without
        `ref_audio` (None: a fresh `PiperTtsBackend`). `max_chunk_chars` bounds the gen_text of one generation
        (sentences are kept whole where they fit); a chunk gets room for speech as slow as `chars_per_second`
        plus `slack_seconds` (Dia stops at its end-of-speech token, usually far sooner); the sampling settings
        are Nari Labs' published defaults for Dia."""
        self.path = path
        self.piper = piper if piper is not None else PiperTtsBackend()
        self.max_chunk_chars = max_chunk_chars
        self.chars_per_second = chars_per_second
        self.slack_seconds = slack_seconds
        self.sentence_silence = sentence_silence
        self.sampling = {"guidance_scale": guidance_scale, "temperature": temperature, "top_p": top_p, "top_k": top_k}
        self.memory_bytes = weights_bytes(path)
        # Dia's self-attention cache over 3,072 frames, doubled for guidance: about 0.5 GB in float32; the DAC
        # codec's activations over a 15 s clip come on top.
        self.working_bytes = 1 << 30
        self._model: Any = None
        self._processor: Any = None
        self._lock = threading.Lock()

    # --- what serves what ---------------------------------------------------------------------------------

    def piper_ready(self) -> bool:
        return self.piper.availability().ok

    def served_by(self, entry: CatalogEntry) -> ServedBy:
        """Dia for cloning: not a stand-in, `Qubico/tts` names the task (zero-shot cloning), not a model; the
        limits say what it does not honour, and who speaks when no reference voice is sent."""
        plain = f"Piper's fixed {VOICE_NAME} voice" if self.piper_ready() else "Dia in a voice the seed picks"
        return ServedBy(
            f"{MODEL_NAME} clones ref_audio; without ref_audio: {plain}",
            limits=(
                "speaks English only: gen_text or ref_text with letters outside the Latin script is refused",
                "ref_text is required with ref_audio: this server has no speech recogniser to transcribe it",
                f"ref_audio: at most {MAX_REF_SECONDS:g} seconds (3-10 s of clear speech works best)",
                f"gen_text is spoken in parts of about {self.max_chunk_chars} characters, each cloned from ref_audio",
            ),
        )

    def check_request(self, entry: CatalogEntry, inputs: TaskInput) -> None:
        """Refuse at create what Dia cannot do: a reference without its transcript, a transcript too long for the
        text encoder, letters it cannot speak. Tasks without `ref_audio` get Piper's own checks."""
        ref_audio = field_value(inputs, "ref_audio", "")
        if not (isinstance(ref_audio, str) and ref_audio.strip()):
            if self.piper_ready():
                self.piper.check_request(entry, inputs)
            else:
                self._check_letters("gen_text", field_value(inputs, "gen_text", ""))
            return
        ref_text = field_value(inputs, "ref_text", "")
        if not isinstance(ref_text, str) or not ref_text.strip():
            raise InputRejected(
                "ref_text: required here: this server has no speech recogniser to transcribe ref_audio; "
                "send the words spoken in ref_audio"
            )
        if len(ref_text) > MAX_REF_TEXT_CHARS:
            raise InputRejected(
                f"ref_text: at most {MAX_REF_TEXT_CHARS} characters (the transcript of a clip of at most "
                f"{MAX_REF_SECONDS:g} s), got {len(ref_text):,}"
            )
        self._check_letters("ref_text", ref_text)
        self._check_letters("gen_text", field_value(inputs, "gen_text", ""))

    @staticmethod
    def _check_letters(field: str, text: object) -> None:
        ENGLISH.refuse_foreign(field, text, "Dia speaks English only")

    # --- loading ------------------------------------------------------------------------------------------

    def availability(self) -> Availability:
        missing = [name for name in REQUIRED_PACKAGES if importlib.util.find_spec(name) is None]
        if missing:
            return Availability(False, f"{', '.join(missing)} not installed: {INSTALL_HINT}")
        for folder, expected, what in (
            (self.path, "dia", "Dia (nari-labs/Dia-1.6B-0626)"),
            (self.path / CODEC_FOLDER, "dac", "the DAC codec (descript/dac_44khz)"),
        ):
            try:
                model_type = json.loads((folder / "config.json").read_text()).get("model_type")
            except (OSError, ValueError, AttributeError):
                return Availability(
                    False, f"no {what} weights at {folder}; genmill models pull {TTS} (docs/backends.md)"
                )
            if model_type != expected:
                return Availability(False, f"{folder} holds a {model_type!r} model, not {what} ({expected!r})")
        if not (self.path / "preprocessor_config.json").is_file():
            return Availability(False, f"{self.path} has no preprocessor_config.json (Dia's feature extractor)")
        self.device = best_device()
        return Availability(True)

    def load(self) -> None:
        with self._lock:
            if self._model is not None:
                return
            import transformers

            # Any-typed handles: these loaders are untyped, which strict mypy refuses to call.
            model_class: Any = transformers.DiaForConditionalGeneration
            codec_class: Any = transformers.DacModel
            processor_class: Any = transformers.DiaProcessor
            started = time.perf_counter()
            device = best_device()
            try:
                # In the checkpoint's own dtype, which is what `memory_bytes` (the files' size) counts.
                model = model_class.from_pretrained(str(self.path))
                codec = codec_class.from_pretrained(str(self.path / CODEC_FOLDER))
                processor = processor_class(
                    transformers.DiaFeatureExtractor.from_pretrained(str(self.path)),
                    transformers.DiaTokenizer.from_pretrained(str(self.path)),
                    audio_tokenizer=codec.to(device).eval(),
                )
            except (OSError, ValueError, KeyError) as exc:
                raise BackendError(f"the Dia weights at {self.path} could not be loaded", raw_message=str(exc)) from exc
            self.device = device
            self._model = model.to(device).eval()
            self._processor = processor
            log.info("loaded Dia from %s on %s in %.1fs", self.path, device, time.perf_counter() - started)

    def unload(self) -> None:
        with self._lock:
            self._model = None
            self._processor = None

    # --- running ------------------------------------------------------------------------------------------

    @property
    def sampling_rate(self) -> int:
        return int(self._processor.feature_extractor.sampling_rate)

    def run(self, entry: CatalogEntry, inputs: TaskInput, ctx: RunContext) -> dict[str, Any]:
        text = field_value(inputs, "gen_text")
        if not isinstance(text, str) or not text.strip():
            raise InputRejected("gen_text: the text to speak is required")
        if len(text) > MAX_TEXT_CHARS:
            raise InputRejected(f"gen_text: at most {MAX_TEXT_CHARS:,} characters, got {len(text):,}")
        self.check_request(entry, inputs)  # again: a task created where this backend was not known (remote worker)
        ref_audio = field_value(inputs, "ref_audio", "")
        cloning = isinstance(ref_audio, str) and bool(ref_audio.strip())
        if not cloning and self.piper_ready():
            ctx.log(f"no ref_audio: spoken by Piper's fixed {VOICE_NAME} voice")
            return self.piper.run(entry, inputs, ctx)
        self.load()
        seed = pick_seed(inputs)
        rate = self.sampling_rate
        reference: Audio | None = None
        ref_text = ""
        if cloning:
            data = ctx.read_input(str(ref_audio), field="ref_audio").data
            try:
                reference = decode_audio(data, field="ref_audio", rate=rate, channels=1)
            except InputRejected:
                raise
            except BackendError as exc:  # empty, undecodable or over-long: the input's fault, code 10001
                raise InputRejected(exc.message, raw_message=exc.raw_message) from exc
            seconds = reference.shape[1] / rate
            if seconds > MAX_REF_SECONDS:
                raise InputRejected(
                    f"ref_audio: {seconds:.1f} s is longer than {MAX_REF_SECONDS:g} s; send a clip of 3-15 s of "
                    "clear speech with its transcript in ref_text"
                )
            ref_text = str(field_value(inputs, "ref_text", "")).strip()
            ctx.log(f"cloning the voice of {seconds:.1f}s of ref_audio with {MODEL_NAME}; seed {seed}")
        else:
            ctx.log(f"no ref_audio and Piper is not installed: {MODEL_NAME} speaks in a voice of its own; seed {seed}")
        chunks = self._parts(text, reference, ref_text)
        ctx.log(f"speaking {len(text)} characters in {len(chunks)} part(s)")
        started = time.perf_counter()
        pieces = self._speak(chunks, reference, ref_text, seed, ctx)
        pause = np.zeros((1, round(self.sentence_silence * rate)), dtype=np.float32)
        joined = [part for piece in pieces for part in (pause, piece)][1:]
        audio = np.concatenate(joined, axis=1) if joined else np.zeros((1, 0), dtype=np.float32)
        if audio.shape[1] == 0:
            raise BackendError("Dia produced no audio for this text")
        output = save_wav(ctx, audio, rate)
        ctx.progress(1.0, f"done, seed {seed}")
        ctx.log(f"done: {audio.shape[1] / rate:.1f}s of {rate} Hz audio in {time.perf_counter() - started:.1f}s")
        return output

    def _hop(self) -> int:
        """Samples per codec frame (512 for DAC 44 kHz)."""
        return math.prod(int(ratio) for ratio in self._processor.audio_tokenizer.config.downsampling_ratios)

    def _frame_rate(self) -> float:
        return self.sampling_rate / self._hop()

    def _parts(self, text: str, reference: Audio | None, ref_text: str) -> list[str]:
        """gen_text in parts that each fit, with the reference prompt, in Dia's limits: the audio frames left after
        the reference clip must hold the part spoken at `chars_per_second` (else the speech would be cut off),
        and the text encoder's bytes must hold the transcript and the part (letters beyond ASCII take two)."""
        config = self._model.config
        frame_rate = self._frame_rate()
        prompt_frames = 1 + max(config.delay_pattern)
        if reference is not None:
            prompt_frames += math.ceil(reference.shape[1] / self._hop())
        room_s = (int(config.decoder_config.max_position_embeddings) - prompt_frames) / frame_rate - self.slack_seconds
        limit = min(self.max_chunk_chars, int(room_s * self.chars_per_second))
        room_bytes = int(config.encoder_config.max_position_embeddings) - len(f"{tagged(ref_text)} ".encode()) - 8
        if limit < 20 or room_bytes < 40:
            raise InputRejected(
                f"ref_audio: with this clip and ref_text Dia has no room left to speak; send a shorter clip "
                f"(at most {MAX_REF_SECONDS:g} s) and its transcript"
            )
        parts: list[str] = []
        for part in split_text(text, limit):
            parts.extend(split_text(part, room_bytes // 2) if len(part.encode()) > room_bytes else [part])
        return parts

    def _speak(
        self, chunks: list[str], reference: Audio | None, ref_text: str, seed: int, ctx: RunContext
    ) -> list[Audio]:
        """One generation per chunk, each prompted with the whole reference (clip and transcript), so every part
        is in the reference's voice rather than drifting from the previous part's."""
        import torch

        model, processor = self._model, self._processor
        frame_rate = self._frame_rate()
        max_frames = int(model.config.decoder_config.max_position_embeddings)
        prefix = f"{tagged(ref_text)} " if reference is not None else ""
        pieces: list[Audio] = []
        with self._lock:
            torch.manual_seed(seed)
            for number, chunk in enumerate(chunks, start=1):
                if ctx.cancelled():
                    raise cancelled_error()
                # A clone continues the reference's turn ("[S1] <ref_text> <part>"): Dia's scripts alternate speaker
                # tags, and a repeated [S1] is outside what it was trained on.
                text = prefix + chunk if reference is not None else tagged(chunk)
                kwargs: dict[str, Any] = {"text": [text], "padding": True, "return_tensors": "pt"}
                if reference is not None:
                    kwargs["audio"] = [reference[0]]
                batch = processor(**kwargs).to(self.device)
                prompt_frames = int(batch["decoder_attention_mask"].shape[1])
                wanted = math.ceil((len(chunk) / self.chars_per_second + self.slack_seconds) * frame_rate)
                room = max_frames - prompt_frames
                frames = _Frames(ctx)
                try:
                    with torch.inference_mode():
                        codes = model.generate(
                            **batch,
                            max_new_tokens=min(wanted, room),
                            do_sample=True,
                            stopping_criteria=[frames],
                            **self.sampling,
                        )
                        prompt_len = processor.get_audio_prompt_len(batch["decoder_attention_mask"])
                        decoded = processor.batch_decode(codes, audio_prompt_len=prompt_len)
                except (RuntimeError, ValueError, IndexError) as exc:
                    if frames.stopped:
                        raise cancelled_error() from None
                    raise BackendError("Dia could not generate from these inputs", raw_message=str(exc)) from exc
                if frames.stopped or ctx.cancelled():
                    raise cancelled_error()
                pieces.append(decoded[0].float().cpu().numpy().reshape(1, -1).astype(np.float32))
                ctx.progress(0.05 + 0.9 * number / len(chunks), f"part {number}/{len(chunks)}, seed {seed}")
        return pieces


def tts_backends(models_dir: Path) -> list[Backend]:
    """The `Qubico/tts` backends in the order they are tried: Dia cloning first where its folder exists (it hands
    tasks without `ref_audio` to its own Piper), then Piper alone, which serves when Dia cannot (no weights, no
    transformers) and refuses `ref_audio` at create."""
    backends: list[Backend] = []
    if (models_dir / FOLDER).is_dir():
        backends.append(DiaCloneTtsBackend(models_dir / FOLDER))
    backends.append(PiperTtsBackend())
    return backends
