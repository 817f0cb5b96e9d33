"""`Qubico/ace-step` on ACE-Step 1.5 itself, through diffusers' `AceStepPipeline`, and `Qubico/diffrhythm` on it
as a stand-in. The weights are a diffusers-format ACE-Step folder in `genmill-models/ace-step/` (e.g.
ACE-Step/acestep-v15-xl-turbo-diffusers), loaded with the shared `Placement` like every diffusers backend.

How each task maps onto the pipeline's own task types:

    ace-step txt2audio      text2music: style_prompt and lyrics sung for `duration` seconds
    ace-step audio2audio    cover: style_audio's 5 Hz semantic codes (its melody and structure) re-rendered with
                            the new style_prompt and lyrics
    ace-step edit           cover of the whole clip with the new lyrics and style; with `repaint_start` /
                            `repaint_end` (seconds) only that span is repainted and the rest is kept
    ace-step extend         repaint past the end: style_audio followed by `duration` seconds of silence, the
                            silence repainted so the music continues from the source
    diffrhythm txt2audio-*  text2music of DiffRhythm's length (95 s, 285 s), timestamps stripped from the lyrics,
                            style_audio as ACE-Step's timbre reference; a stand-in, and `served_by` says so
    music-u / music-s       Udio's and Suno's generate_music: text2music of the service's song length, or an
                            earlier song continued like extend; a stand-in (`music_services` maps the fields)

The pipeline's VAE samples its latent distribution from torch's global generator when it encodes source audio,
so runs hold a lock and seed that generator as well as the pipeline's: the same seed gives the same bytes.
"""

from __future__ import annotations

import importlib.util
import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from genmill.backends.audio_io import Audio, decode_audio, save_wav
from genmill.backends.base import Availability, Backend, Prefetched, Resident, RunContext, ServedBy
from genmill.backends.diffusers_loading import Placement, load_pipeline, plan_pipeline, read_model_index
from genmill.backends.memory_modes import is_out_of_memory
from genmill.backends.toolkit import StepCancelled, StepReporter, cancelled_error, field_value, pick_seed
from genmill.domain.catalog import CatalogEntry, TaskInput
from genmill.domain.placement import MemoryPlan
from genmill.errors import BackendError, InputRejected
from genmill.models.audio import music_services
from genmill.models.audio.catalog import ACE_STEP, DIFFRHYTHM
from genmill.models.audio.lyrics import LyricsWriter
from genmill.models.audio.music_services import MUSIC_ENTRIES, SERVICES, SONG_SECONDS, Song

FOLDER = "ace-step"
PIPELINE_CLASS = "AceStepPipeline"
PIPELINE = "ACE-Step (diffusers AceStepPipeline)"
REQUIRED_PACKAGES = ("torch", "diffusers", "transformers", "imageio_ffmpeg")
INSTALL_HINT = "pip install 'genmill[cpu,diffusers]' (install torch==2.13.0 first, see docs/backends.md)"
WEIGHTS_HINT = "a diffusers-format ACE-Step 1.5 folder (genmill models pull Qubico/ace-step)"

MAX_SECONDS = 600.0
"""ACE-Step 1.5 generates up to 10 minutes; longer sources or extensions are refused."""
DIFFRHYTHM_SECONDS = {"txt2audio-base": 95.0, "txt2audio-full": 285.0}
"""DiffRhythm's fixed song lengths (1m35s and 4m45s), kept by the stand-in."""
INSTRUMENTAL = "[Instrumental]"
"""What ACE-Step is given for "" or "[inst]" lyrics: its own marker for a song without vocals."""
GUIDANCE_SCALE = 7.0
"""The base and SFT checkpoints' guidance (diffusers' default); turbo checkpoints run without guidance."""

NEGATIVE_LIMIT = "negative_style_prompt is not used: AceStepPipeline has no negative prompt"
DIFFRHYTHM_LIMITS = (
    "lyrics' [mm:ss.xx] timestamps are dropped: ACE-Step places the lines itself",
    "style_audio conditions ACE-Step's timbre encoder, not DiffRhythm's style embedding",
)
STANDS_IN_FOR = {DIFFRHYTHM: "DiffRhythm", **SERVICES}
TIMESTAMP = re.compile(r"^\s*\[\d{1,2}:\d{2}(?:[.:]\d{1,3})?\]\s*")


@dataclass
class Call:
    """One pipeline call: its keyword arguments (without generator and callbacks) and what to log about it."""

    kwargs: dict[str, Any]
    notes: list[str]


def sung_lyrics(text: object) -> str:
    """The lyrics as ACE-Step takes them: "" and "[inst]" mean instrumental."""
    lyrics = str(text or "").strip()
    return INSTRUMENTAL if lyrics.lower() in ("", "[inst]", "[instrumental]") else lyrics


def untimed_lyrics(text: object) -> str:
    """DiffRhythm's LRC-style lyrics ("[00:12.30]line") without their timestamps."""
    lines = (TIMESTAMP.sub("", line).strip() for line in str(text or "").splitlines())
    return sung_lyrics("\n".join(line for line in lines if line))


class AceStepBackend(Backend):
    """Every `Qubico/ace-step` task type on ACE-Step, and DiffRhythm's, Udio's and Suno's songs with ACE-Step
    standing in."""

    name = "ace-step"
    entries = (
        (ACE_STEP, "txt2audio"),
        (ACE_STEP, "audio2audio"),
        (ACE_STEP, "edit"),
        (ACE_STEP, "extend"),
        (DIFFRHYTHM, "txt2audio-base"),
        (DIFFRHYTHM, "txt2audio-full"),
        *MUSIC_ENTRIES,
    )
    requirements = ("torch", "diffusers", "transformers", "imageio-ffmpeg")

    def __init__(
        self,
        path: Path,
        *,
        placement: Placement | None = None,
        steps: int = 8,
        diffrhythm_seconds: dict[str, float] | None = None,
        song_seconds: dict[str, float] | None = None,
        lyrics: LyricsWriter | None = None,
    ) -> None:
        """`path` is a diffusers AceStepPipeline folder; `steps` the denoising steps per task (the turbo
        checkpoints are distilled for 8); `diffrhythm_seconds` the song length of each DiffRhythm task type,
        `song_seconds` Udio's and Suno's (by model); `lyrics` writes the lyrics a music service would write itself
        (None: such tasks are refused)."""
        self.path = path
        self.placement = placement or Placement()
        self.steps = steps
        self.diffrhythm_seconds = diffrhythm_seconds or DIFFRHYTHM_SECONDS
        self.song_seconds = song_seconds or SONG_SECONDS
        self.lyrics = lyrics
        self.plan: MemoryPlan | None = None
        self._residents: list[Resident] = []
        self._pipe: Any = None
        self._lock = threading.Lock()

    def served_by(self, entry: CatalogEntry) -> ServedBy:
        if entry.model in SERVICES:
            return music_services.served_by(entry, PIPELINE, self.lyrics, self.song_seconds[entry.model])
        if entry.model == DIFFRHYTHM:
            return ServedBy(PIPELINE, stand_in=True, limits=DIFFRHYTHM_LIMITS)
        return ServedBy(PIPELINE, limits=(NEGATIVE_LIMIT,))

    def check_request(self, entry: CatalogEntry, inputs: TaskInput) -> None:
        if entry.model in SERVICES:
            music_services.check(entry, inputs, self.lyrics)

    # --- availability and loading -----------------------------------------------------------------------------

    def availability(self) -> Availability:
        missing = [name for name in REQUIRED_PACKAGES if importlib.util.find_spec(name) is None]
        if missing:
            return Availability(False, f"{', '.join(missing)} not installed: {INSTALL_HINT}")
        if not (self.path / "model_index.json").is_file():
            return Availability(False, f"weights for {ACE_STEP} not found at {self.path}; put {WEIGHTS_HINT} there")
        found, absent = read_model_index(self.path)
        if found != PIPELINE_CLASS:
            return Availability(False, f"{self.path} holds a {found}, not an {PIPELINE_CLASS}")
        if absent:
            return Availability(False, f"{self.path} is incomplete: its {', '.join(absent)} folder(s) are missing")
        memory = plan_pipeline(self.placement, (self.name, FOLDER), self.path, PIPELINE_CLASS, video=False)
        self.device, self.plan, self._residents = memory.device, memory.plan, list(memory.residents)
        self.working_bytes, self.memory_bytes = memory.working_bytes, memory.device_bytes
        return Availability(True)

    def residents(self) -> list[Resident]:
        return list(self._residents)

    def memory_note(self) -> str:
        return self.placement.describe(self.plan)

    def load(self) -> None:
        if self.plan is None and not self.availability().ok:  # loaded without asking first (tools, tests)
            raise BackendError(self.availability().reason)
        assert self.plan is not None
        with self._lock:
            if self._pipe is None:
                self._pipe = load_pipeline(PIPELINE_CLASS, self.path, self.placement, self.plan)

    def unload(self) -> None:
        with self._lock:
            self._pipe = None

    # --- running ----------------------------------------------------------------------------------------------

    def run(self, entry: CatalogEntry, inputs: TaskInput, ctx: RunContext) -> dict[str, Any]:
        if entry.key not in self.entries:
            raise BackendError(f"task_type: {self.name} does not run {entry.model} {entry.task_type}")
        import torch

        seed = pick_seed(inputs)
        reporter = StepReporter(ctx, seed, start=0.1, end=0.9)
        reporter.check()
        song: Song | None = None
        if entry.model in SERVICES:  # lyrics are written before the model is taken
            song = music_services.prepare(entry, inputs, ctx, self.lyrics, self.song_seconds[entry.model])
        ctx = Prefetched(ctx, [("style_audio", field_value(inputs, "style_audio"))])
        self.load()
        with self._lock:
            pipe = self._pipe
            rate = int(pipe.sample_rate)
            call = self.song_call(song, ctx, rate) if song else self.call(entry, inputs, ctx, rate)
            stand_in = f" standing in for {STANDS_IN_FOR[entry.model]}" if entry.model in STANDS_IN_FOR else ""
            ctx.log(f"{entry.model} {entry.task_type} runs on {PIPELINE}{stand_in}; seed {seed}")
            for note in call.notes:
                ctx.log(note)
            reporter.check()
            turbo = bool(getattr(pipe, "is_turbo", False))
            torch.manual_seed(seed)  # the VAE samples source latents from the global generator
            started = time.perf_counter()
            try:
                result = pipe(
                    **call.kwargs,
                    num_inference_steps=self.steps,
                    guidance_scale=1.0 if turbo else GUIDANCE_SCALE,
                    generator=torch.Generator("cpu").manual_seed(seed),
                    callback_on_step_end=reporter,
                    output_type="np",
                )
            except StepCancelled:
                raise cancelled_error() from None
            except BackendError:
                raise
            except (ValueError, RuntimeError, TypeError) as exc:
                if is_out_of_memory(exc):
                    raise  # the worker frees memory and retries; not the inputs' fault
                raise BackendError("ACE-Step could not run these inputs", raw_message=str(exc)) from exc
        audio = np.asarray(result.audios[0], dtype=np.float32)
        reporter.check()
        output = save_wav(ctx, audio, rate)
        if song:
            output = music_services.song_output(entry, song, output["audio_url"], audio.shape[1] / rate, ctx.task_id)
        ctx.progress(1.0, f"done, seed {seed}")
        ctx.log(f"done: {audio.shape[1] / rate:.1f}s of {rate} Hz audio in {time.perf_counter() - started:.1f}s")
        return output

    def call(self, entry: CatalogEntry, inputs: TaskInput, ctx: RunContext, rate: int) -> Call:
        """The pipeline call for one task; raises InputRejected naming the field for inputs it cannot use."""
        prompt = str(field_value(inputs, "style_prompt", "") or "").strip()
        if not prompt:
            raise InputRejected("style_prompt: a style is required")
        notes: list[str] = []
        if str(field_value(inputs, "negative_style_prompt", "") or "").strip():
            notes.append(f"{NEGATIVE_LIMIT}; ignored")
        if entry.model == DIFFRHYTHM:
            seconds = self.diffrhythm_seconds[entry.task_type]
            kwargs: dict[str, Any] = {
                "prompt": prompt,
                "lyrics": untimed_lyrics(field_value(inputs, "lyrics", "")),
                "audio_duration": seconds,
            }
            notes.append(f"length: {seconds:g}s, DiffRhythm's {entry.task_type} length; " + DIFFRHYTHM_LIMITS[0])
            if str(field_value(inputs, "style_audio", "") or "").strip():
                kwargs["reference_audio"] = _tensor(self.source(ctx, inputs, rate))
                notes.append(DIFFRHYTHM_LIMITS[1])
            return Call(kwargs, notes)
        lyrics = sung_lyrics(field_value(inputs, "lyrics", ""))
        base = {"prompt": prompt, "lyrics": lyrics}
        duration = float(field_value(inputs, "duration", 30))
        if entry.task_type == "txt2audio":
            return Call({**base, "audio_duration": duration}, notes)
        source = self.source(ctx, inputs, rate)
        length = source.shape[1] / rate
        if entry.task_type == "extend":
            return self.continuation(source, rate, duration, base, notes, ("duration", "style_audio"))
        span = self.repaint_span(inputs, length) if entry.task_type == "edit" else None
        if span is None:
            notes.append(f"style_audio: {length:.1f}s, covered with the new style and lyrics")
            return Call({**base, "task_type": "cover", "src_audio": _tensor(source), "audio_duration": length}, notes)
        notes.append(f"style_audio: {length:.1f}s; {span[0]:g}s to {span[1]:g}s repainted, the rest kept")
        kwargs = {"task_type": "repaint", "src_audio": _tensor(source), "audio_duration": length}
        return Call({**base, **kwargs, "repainting_start": span[0], "repainting_end": span[1]}, notes)

    def song_call(self, song: Song, ctx: RunContext, rate: int) -> Call:
        """The pipeline call for an Udio or Suno song: text2music of its length, or the earlier song (cut at
        `continue_at` when that is inside it) continued by that length."""
        base = {"prompt": song.style, "lyrics": sung_lyrics(song.lyrics)}
        notes = [*song.notes, f"caption: {song.style!r}; " + ("lyrics sung" if song.lyrics else "instrumental")]
        if not song.continue_ref:
            return Call({**base, "audio_duration": song.seconds}, notes)
        source = self.decoded(ctx, song.continue_ref, song.continue_field, rate)
        if 0 < song.continue_at < source.shape[1] / rate:
            source = source[:, : round(song.continue_at * rate)]
        return self.continuation(source, rate, song.seconds, base, notes, (song.continue_field, "the song"))

    def continuation(
        self, source: Audio, rate: int, duration: float, base: dict[str, Any], notes: list[str], names: tuple[str, str]
    ) -> Call:
        """Repaint past the end: `source` followed by `duration` seconds of silence, the silence repainted so the
        music continues; `names` are the field to blame and how to call the source in messages."""
        length = source.shape[1] / rate
        total = length + duration
        if total > MAX_SECONDS:
            over = f"{names[1]} ({length:.1f}s) plus {duration:g}s is over ACE-Step's {MAX_SECONDS:g}s"
            raise InputRejected(f"{names[0]}: {over}")
        padded = np.concatenate([source, np.zeros((2, round(duration * rate)), np.float32)], axis=1)
        notes.append(f"{names[1]}: {length:.1f}s; {duration:g}s repainted after it")
        kwargs = {"task_type": "repaint", "src_audio": _tensor(padded), "audio_duration": total}
        return Call({**base, **kwargs, "repainting_start": length, "repainting_end": total}, notes)

    def source(self, ctx: RunContext, inputs: TaskInput, rate: int) -> Audio:
        """style_audio decoded to stereo at the model's rate."""
        ref = field_value(inputs, "style_audio")
        if not isinstance(ref, str) or not ref.strip():
            raise InputRejected("style_audio: an audio URL or base64 string is required")
        return self.decoded(ctx, ref, "style_audio", rate)

    @staticmethod
    def decoded(ctx: RunContext, ref: str, field: str, rate: int) -> Audio:
        """An audio input decoded to stereo at the model's rate; an undecodable or over-long file is the input's
        fault, so it fails with code 10001."""
        data = ctx.read_input(ref, field=field).data
        try:
            audio = decode_audio(data, field=field, rate=rate, channels=2)
        except InputRejected:
            raise
        except BackendError as exc:
            raise InputRejected(exc.message, raw_message=exc.raw_message) from exc
        if audio.shape[1] > MAX_SECONDS * rate:
            raise InputRejected(f"{field}: longer than ACE-Step's {MAX_SECONDS:g} seconds")
        return audio

    @staticmethod
    def repaint_span(inputs: TaskInput, length: float) -> tuple[float, float] | None:
        """edit's optional `repaint_start` / `repaint_end` (seconds; an end of -1 or none: the clip's end), checked
        against the clip; None when neither is given (the whole clip is covered)."""
        start, end = field_value(inputs, "repaint_start", None), field_value(inputs, "repaint_end", None)
        if start is None and end is None:
            return None
        for name, value in (("repaint_start", start), ("repaint_end", end)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
                raise InputRejected(f"{name}: must be a number of seconds, got {value!r}")
        first = float(start or 0.0)
        last = length if end is None or float(end) < 0 else float(end)
        if not 0 <= first < length:
            raise InputRejected(f"repaint_start: {first:g}s is outside style_audio (0 to {length:.1f}s)")
        if not first < last <= length + 0.05:
            raise InputRejected(f"repaint_end: {last:g}s must be after repaint_start and within {length:.1f}s")
        return first, min(last, length)


def _tensor(audio: Audio) -> Any:
    import torch

    return torch.from_numpy(np.ascontiguousarray(audio))
