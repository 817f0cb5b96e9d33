"""The audio backends (MusicGen for ace-step/diffrhythm, Stable Audio Open for mmaudio) on tiny random models.

Both models are built from configs (a one-layer MusicGen with a 10 Hz EnCodec, a one-layer Stable Audio DiT
with a 200 Hz Oobleck VAE), their T5 tokenizers are built from a few words, and they are saved with
`save_pretrained` into a models folder laid out like production's and loaded by the backends' own
`from_pretrained` calls, offline. The audio is noise, but lengths, seeds, windows, audio prompts, the inputs
that are not honoured, and the unserved entries are real. Skipped where the `diffusers` extra is not installed.
"""

from __future__ import annotations

import base64
import os
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
pytest.importorskip("diffusers")
pytest.importorskip("torchsde")
pytest.importorskip("imageio_ffmpeg")

import torch
from tests.backends.tiny_tokenizers import t5_tokenizer
from tests.backends.wav import read_wav, tone, wav_ref

from genmill.backends.audio_io import decode_audio
from genmill.backends.base import Backend, UnservedBackend
from genmill.backends.registry import model_backends
from genmill.backends.video_io import ffmpeg_exe
from genmill.catalog import build_catalog
from genmill.errors import BackendError
from genmill.models.audio.backends import audio_backends
from genmill.models.audio.catalog import ACE_STEP, DIFFRHYTHM, MMAUDIO
from genmill.models.audio.musicgen import MusicGenBackend
from genmill.models.audio.stable_audio import StableAudioBackend
from genmill.models.tts.catalog import MODEL as TTS
from genmill.testing import MemoryRunContext
from genmill.worker.backendset import ALL_STAND_INS, BackendSet

pytestmark = [
    pytest.mark.backends,
    # Oobleck's and EnCodec's layers still use the weight_norm that torch deprecated; Stable Audio's SDE
    # scheduler asks torchsde for times a float rounding past its interval, which torchsde only warns about.
    pytest.mark.filterwarnings("ignore:`torch.nn.utils.weight_norm` is deprecated:FutureWarning"),
    pytest.mark.filterwarnings("ignore:Should have t:UserWarning"),
]

CATALOG = build_catalog()
WORDS = ["pop", "rock", "jazz", "piano", "guitar", "calm", "rain", "dog", "bark", "wind", "birds"]
MUSIC_RATE = 640  # EnCodec at 640 Hz with 8x8 upsampling: 10 frames a second, 64 samples each
SFX_RATE = 200
DIFFRHYTHM_TEST_SECONDS = {"txt2audio-base": 6.0, "txt2audio-full": 9.0}


# --- tiny models ---------------------------------------------------------------------------------------------


def tiny_t5() -> tuple[Any, Any]:
    from transformers import T5Config

    tokenizer = t5_tokenizer(WORDS, max_length=128)
    undeclared: dict[str, Any] = {"decoder_start_token_id": 0}  # kept by transformers, unknown to its types
    config = T5Config(
        vocab_size=len(tokenizer),
        d_model=16,
        d_kv=4,
        d_ff=24,
        num_layers=1,
        num_heads=4,
        relative_attention_num_buckets=8,
        pad_token_id=0,
        eos_token_id=1,
        **undeclared,
    )
    return tokenizer, config


def save_tiny_musicgen(folder: Path) -> None:
    from transformers import (
        EncodecConfig,
        EncodecFeatureExtractor,
        MusicgenConfig,
        MusicgenDecoderConfig,
        MusicgenForConditionalGeneration,
        MusicgenProcessor,
    )

    tokenizer, t5 = tiny_t5()
    encodec = EncodecConfig(
        sampling_rate=MUSIC_RATE,
        audio_channels=1,
        num_filters=4,
        num_residual_layers=1,
        upsampling_ratios=[8, 8],
        codebook_size=1024,
        codebook_dim=16,
        hidden_size=16,
        num_lstm_layers=1,
        target_bandwidths=[0.2],  # 2 codebooks of 10 bits at 10 Hz
        use_causal_conv=True,
        normalize=False,
    )
    decoder = MusicgenDecoderConfig(
        vocab_size=1024,
        max_position_embeddings=2048,
        num_hidden_layers=1,
        ffn_dim=24,
        num_attention_heads=2,
        hidden_size=16,
        num_codebooks=2,
        pad_token_id=1024,
        bos_token_id=1024,
    )
    config = MusicgenConfig(text_encoder=t5.to_dict(), audio_encoder=encodec.to_dict(), decoder=decoder.to_dict())
    model = MusicgenForConditionalGeneration(config)
    quantizer: Any = model.audio_encoder.quantizer  # a submodule, typed by torch as Tensor | Module
    for layer in quantizer.layers:  # EnCodec starts its codebooks at zero: every code alike
        layer.codebook.embed.normal_()
    model.generation_config.decoder_start_token_id = 1024
    model.generation_config.pad_token_id = 1024
    model.save_pretrained(folder)
    extractor = EncodecFeatureExtractor(feature_size=1, sampling_rate=MUSIC_RATE, padding_value=0.0)
    MusicgenProcessor(feature_extractor=extractor, tokenizer=tokenizer).save_pretrained(folder)


def save_tiny_stable_audio(folder: Path) -> None:
    from diffusers import (
        AutoencoderOobleck,
        CosineDPMSolverMultistepScheduler,
        StableAudioDiTModel,
        StableAudioPipeline,
    )
    from diffusers.pipelines.stable_audio import StableAudioProjectionModel
    from transformers import T5EncoderModel

    tokenizer, t5 = tiny_t5()
    pipe = StableAudioPipeline(
        vae=AutoencoderOobleck(
            encoder_hidden_size=6,
            downsampling_ratios=[2, 4],
            decoder_channels=3,
            decoder_input_channels=3,
            audio_channels=2,
            channel_multiples=[2, 4],
            sampling_rate=SFX_RATE,
        ),
        text_encoder=T5EncoderModel(t5),
        projection_model=StableAudioProjectionModel(text_encoder_dim=16, conditioning_dim=8, min_value=0, max_value=47),
        tokenizer=tokenizer,
        transformer=StableAudioDiTModel(
            sample_size=1024,  # 1024 latents x 8 samples at 200 Hz: 40.96 seconds at most
            in_channels=3,
            num_layers=1,
            attention_head_dim=4,
            num_attention_heads=2,
            num_key_value_attention_heads=1,
            out_channels=3,
            cross_attention_dim=8,
            time_proj_dim=8,
            global_states_input_dim=16,
            cross_attention_input_dim=8,
        ),
        scheduler=CosineDPMSolverMultistepScheduler(
            solver_order=2, prediction_type="v_prediction", sigma_data=1.0, sigma_schedule="exponential"
        ),
    )
    pipe.save_pretrained(folder)


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("genmill-models")
    torch.manual_seed(0)
    save_tiny_musicgen(root / "musicgen")
    save_tiny_stable_audio(root / "stable-audio-open")
    (root / "f5-tts").mkdir()
    return root


@pytest.fixture(scope="module")
def backends(models_dir: Path) -> dict[str, Backend]:
    # Windows of 4 seconds prompted with the last 2, so that every longer piece crosses several windows.
    found = audio_backends(models_dir, window_s=4.0, context_s=2.0, diffrhythm_seconds=DIFFRHYTHM_TEST_SECONDS)
    by_name = {backend.name: backend for backend in found}
    for name in ("musicgen", "stable-audio-open"):
        assert by_name[name].availability().ok, by_name[name].availability().reason
        by_name[name].load()
    return by_name


# --- inputs and outputs --------------------------------------------------------------------------------------


def noise(seconds: float) -> str:
    return wav_ref(np.random.default_rng(5).uniform(-0.5, 0.5, round(seconds * 16000)))


def run_output(
    backend: Backend, model: str, task_type: str, fields: dict[str, Any]
) -> tuple[dict[str, Any], bytes, MemoryRunContext]:
    """The output, the one stored audio file's bytes (a WAV) and the context of one run."""
    entry = CATALOG.get(model, task_type)
    assert entry is not None
    ctx = MemoryRunContext()
    output = backend.run(entry, entry.input_model.model_validate(fields), ctx)
    first, *_ = ctx.outputs.values()
    assert output["audio_url"] == next(iter(ctx.outputs))
    assert first.content_type == "audio/wav"
    return output, first.data, ctx


def run(backend: Backend, model: str, task_type: str, fields: dict[str, Any]) -> tuple[bytes, MemoryRunContext]:
    output, data, ctx = run_output(backend, model, task_type, fields)
    assert set(output) == ({"audio_url", "duration"} if model == MMAUDIO else {"audio_url"})
    return data, ctx


# --- MusicGen: ace-step and diffrhythm -----------------------------------------------------------------------


def test_txt2audio_has_the_duration_asked_and_is_reproducible(backends: dict[str, Backend]) -> None:
    musicgen = backends["musicgen"]
    fields = {"style_prompt": "pop, piano", "lyrics": "[verse] la la", "duration": 5, "seed": 11}
    first, ctx = run(musicgen, ACE_STEP, "txt2audio", {**fields, "negative_style_prompt": "rock"})
    rate, audio = read_wav(first)
    assert (rate, audio.shape) == (MUSIC_RATE, (1, 5 * MUSIC_RATE))
    assert float(np.abs(audio).max()) > 0
    again, _ = run(musicgen, ACE_STEP, "txt2audio", {**fields, "negative_style_prompt": "rock"})
    assert again == first
    other, _ = run(musicgen, ACE_STEP, "txt2audio", {**fields, "seed": 12})
    assert other != first
    logs = "\n".join(ctx.logs)
    assert "MusicGen" in logs and "seed 11" in logs
    assert "lyrics: not used" in logs and "negative_style_prompt: not used" in logs
    assert ctx.fractions[-1] == 1.0


def test_audio2audio_continues_the_source_and_returns_only_new_music(backends: dict[str, Backend]) -> None:
    musicgen = backends["musicgen"]
    fields = {"style_prompt": "jazz", "duration": 5, "seed": 3}
    from_tone, ctx = run(musicgen, ACE_STEP, "audio2audio", {**fields, "style_audio": tone(3, 50)})
    from_noise, _ = run(musicgen, ACE_STEP, "audio2audio", {**fields, "style_audio": noise(3)})
    rate, audio = read_wav(from_tone)
    assert (rate, audio.shape) == (MUSIC_RATE, (1, 5 * MUSIC_RATE))
    assert from_tone != from_noise  # the source audio prompts the generation
    assert any("audio2audio: approximated" in line for line in ctx.logs)


def test_extend_appends_duration_seconds_to_the_source(backends: dict[str, Backend]) -> None:
    musicgen = backends["musicgen"]
    source = tone(3, 40)
    data, ctx = run(musicgen, ACE_STEP, "extend", {"style_prompt": "calm", "duration": 5, "style_audio": source})
    rate, audio = read_wav(data)
    assert (rate, audio.shape) == (MUSIC_RATE, (1, 8 * MUSIC_RATE))
    decoded = decode_audio(base64.b64decode(source.split(",", 1)[1]), field="x", rate=MUSIC_RATE, channels=1)
    assert np.allclose(audio[:, : 3 * MUSIC_RATE], decoded, atol=1e-3)  # the source is kept as it was
    seed = next(line for line in ctx.logs if "seed" in line).rsplit("seed ", 1)[1]
    other, _ = run(musicgen, ACE_STEP, "extend", {"style_prompt": "calm", "duration": 5, "style_audio": noise(3)})
    again, _ = run(musicgen, ACE_STEP, "extend", {"style_prompt": "calm", "duration": 5, "style_audio": source})
    same_seed, _ = run(
        musicgen, ACE_STEP, "extend", {"style_prompt": "calm", "duration": 5, "style_audio": source, "seed": int(seed)}
    )
    assert same_seed == data  # a random seed is logged and reproduces the result
    assert read_wav(other)[1][:, 3 * MUSIC_RATE :].tobytes() != audio[:, 3 * MUSIC_RATE :].tobytes()
    assert again != data  # no seed given: a new one each time


@pytest.mark.parametrize("task_type", ["txt2audio-base", "txt2audio-full"])
def test_diffrhythm_songs_have_their_length_across_windows(backends: dict[str, Backend], task_type: str) -> None:
    fields = {"style_prompt": "rock", "lyrics": "[00:01.00] hello", "style_audio": tone(2, 30), "seed": 1}
    data, ctx = run(backends["musicgen"], DIFFRHYTHM, task_type, fields)
    rate, audio = read_wav(data)
    assert audio.shape == (1, round(DIFFRHYTHM_TEST_SECONDS[task_type] * rate))
    logs = "\n".join(ctx.logs)
    assert "lyrics: not used" in logs and "style_audio: not used" in logs and "DiffRhythm" in logs


def test_a_cancelled_task_stops_between_frames(backends: dict[str, Backend]) -> None:
    entry = CATALOG.get(ACE_STEP, "txt2audio")
    assert entry is not None

    ctx = MemoryRunContext(cancel_when=lambda ctx: bool(ctx.fractions))  # stops once under way
    inputs = entry.input_model.model_validate({"style_prompt": "pop", "duration": 60})
    with pytest.raises(BackendError, match="cancelled"):
        backends["musicgen"].run(entry, inputs, ctx)
    assert not ctx.outputs and len(ctx.fractions) == 1


# --- Stable Audio: mmaudio -----------------------------------------------------------------------------------


def video_ref(seconds: float, fps: int = 10) -> str:
    command = [ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-f", "lavfi", "-i"]
    command += [f"testsrc=size=64x64:rate={fps}:duration={seconds}", "-pix_fmt", "yuv420p", "-f", "mp4"]
    command += ["-movflags", "frag_keyframe+empty_moov", "-"]
    data = subprocess.run(command, capture_output=True, check=True).stdout
    return "data:video/mp4;base64," + base64.b64encode(data).decode()


def test_video2audio_matches_the_video_length_and_the_seed(backends: dict[str, Backend]) -> None:
    stable = backends["stable-audio-open"]
    fields = {"prompt": "dog bark", "negative_prompt": "rain", "video": video_ref(2.5), "steps": 20, "seed": 9}
    output, first, ctx = run_output(stable, MMAUDIO, "video2audio", fields)
    rate, audio = read_wav(first)
    assert (rate, audio.shape) == (SFX_RATE, (2, round(2.5 * SFX_RATE)))
    assert output["duration"] == 2.5  # what the task is billed for: 3 of the 30 frozen seconds
    assert run(stable, MMAUDIO, "video2audio", fields)[0] == first
    assert run(stable, MMAUDIO, "video2audio", {**fields, "seed": 10})[0] != first
    logs = "\n".join(ctx.logs)
    assert "Stable Audio" in logs and "used for its duration only" in logs
    assert sum(1 for line in ctx.logs if line.startswith("step ")) == 10 and ctx.fractions[-1] == 1.0


def test_video2audio_refuses_videos_over_30_seconds(backends: dict[str, Backend]) -> None:
    entry = CATALOG.get(MMAUDIO, "video2audio")
    assert entry is not None
    inputs = entry.input_model.model_validate({"prompt": "wind", "video": video_ref(31, fps=2)})
    with pytest.raises(BackendError, match=r"video: 31\.0 seconds, the limit is 30 seconds"):
        backends["stable-audio-open"].run(entry, inputs, MemoryRunContext())


# --- the backend list ----------------------------------------------------------------------------------------


def test_folders_become_backends_and_unserved_entries_say_why(models_dir: Path) -> None:
    found = [
        b for b in model_backends(models_dir) if b.name in {"musicgen", "stable-audio-open", "f5-tts", "ace-step-edit"}
    ]
    assert isinstance(found[0], MusicGenBackend) and isinstance(found[2], StableAudioBackend)
    statuses = {s.name: s for s in BackendSet(found, CATALOG).statuses}
    assert statuses["musicgen"].available and statuses["stable-audio-open"].available
    edit, f5 = statuses["ace-step-edit"], statuses["f5-tts"]
    assert not edit.available and edit.entries == ((ACE_STEP, "edit"),)
    assert "genmill models pull Qubico/ace-step" in edit.reason and "MusicGen" in edit.reason
    assert not f5.available and f5.entries == ((TTS, "zero-shot"),) and "libc10_cuda.so" in f5.reason
    assert not BackendSet(found, CATALOG).can_run(ACE_STEP, "extend")  # stand-ins serve only when enabled
    backend_set = BackendSet(found, CATALOG, stand_ins=ALL_STAND_INS)
    assert not backend_set.can_run(ACE_STEP, "edit") and backend_set.can_run(ACE_STEP, "extend")
    served = {key for backend in found if backend.availability().ok for key in backend.entries}
    audio = {entry.key for entry in CATALOG if entry.family in ("ace-step", "diffrhythm", "mmaudio")}
    assert served == audio - {(ACE_STEP, "edit")}
    assert audio_backends(models_dir / "nothing-here") == []
    with pytest.raises(BackendError, match=r"needs ACE-Step itself"):
        UnservedBackend("x", (), edit.reason).load()


def test_availability_names_what_is_wrong(tmp_path: Path) -> None:
    (tmp_path / "musicgen").mkdir()
    (tmp_path / "stable-audio-open").mkdir()
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "config.json").write_text('{"model_type": "t5"}')
    musicgen, _, stable = audio_backends(tmp_path)
    assert "no MusicGen weights at" in musicgen.availability().reason
    assert "Stable Audio Open folder" in stable.availability().reason
    assert "not MusicGen" in MusicGenBackend(tmp_path / "other").availability().reason
