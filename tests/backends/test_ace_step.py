"""ACE-Step (`Qubico/ace-step`, and `Qubico/diffrhythm` standing in) through diffusers' AceStepPipeline on a tiny
random model.

Every component (Oobleck VAE, Qwen3 text encoder with a byte-level Qwen2 tokenizer, condition encoder, DiT,
audio tokenizer and detokenizer) is built from a small config, saved with `save_pretrained` into a models folder
laid out like production's (`ace-step/`), and loaded by the backend's own path (`load_pipeline` with a CPU
`Placement`), offline. The VAE runs at 4000 Hz with a 160-sample hop, so its latents are 25 a second like the real
model's. The audio is noise; lengths, rates, seeds, which inputs reach the model, spans, refusals and
cancellation are real. Skipped where the `diffusers` extra is not installed.
"""

from __future__ import annotations

import base64
import os
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
pytest.importorskip("diffusers")
pytest.importorskip("imageio_ffmpeg")

import torch
from tests.backends.wav import read_wav
from tests.backends.wav import tone as tone_at

from genmill.backends.base import UnservedBackend
from genmill.backends.diffusers_loading import Placement
from genmill.catalog import build_catalog
from genmill.errors import INPUT_ERROR_CODE, BackendError, InputRejected
from genmill.models.audio.ace_step import PIPELINE, AceStepBackend, untimed_lyrics
from genmill.models.audio.backends import audio_backends
from genmill.models.audio.catalog import ACE_STEP, DIFFRHYTHM
from genmill.models.audio.musicgen import MusicGenBackend
from genmill.testing import MemoryRunContext

pytestmark = [
    pytest.mark.backends,
    pytest.mark.filterwarnings("ignore:`torch.nn.utils.weight_norm` is deprecated:FutureWarning"),
]

CATALOG = build_catalog()
RATE = 4000
LATENT = 8
DIFFRHYTHM_TEST_SECONDS = {"txt2audio-base": 4.0, "txt2audio-full": 5.0}


def save_tiny_ace_step(folder: Path) -> None:
    from diffusers import (
        AceStepAudioTokenDetokenizer,
        AceStepAudioTokenizer,
        AceStepConditionEncoder,
        AceStepPipeline,
        AceStepTransformer1DModel,
        AutoencoderOobleck,
        FlowMatchEulerDiscreteScheduler,
    )
    from transformers import Qwen2Tokenizer, Qwen3Config, Qwen3Model
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    # Byte-level BPE without merges: every text tokenizes, one token per byte, as Qwen's tokenizer would at worst.
    vocab = {char: index for index, char in enumerate(bytes_to_unicode().values())}
    vocab["<|endoftext|>"] = len(vocab)
    no_unknown: dict[str, Any] = {"unk_token": None}  # as Qwen's own tokenizer; typed as a str by transformers
    tokenizer = Qwen2Tokenizer(
        vocab=vocab, merges=[], bos_token=None, eos_token="<|endoftext|>", pad_token="<|endoftext|>", **no_unknown
    )
    text_encoder = Qwen3Model(
        Qwen3Config(
            vocab_size=len(tokenizer),
            hidden_size=16,
            intermediate_size=32,
            num_hidden_layers=1,
            num_attention_heads=2,
            num_key_value_heads=1,
            head_dim=8,
            max_position_embeddings=4096,
        )
    )
    vae = AutoencoderOobleck(
        encoder_hidden_size=2 * LATENT,
        downsampling_ratios=[2, 8, 10],
        channel_multiples=[1, 1, 1],
        decoder_channels=4,
        decoder_input_channels=LATENT,
        audio_channels=2,
        sampling_rate=RATE,
    )
    sizes: dict[str, Any] = {
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_attention_heads": 2,
        "num_key_value_heads": 1,
        "head_dim": 16,
        "sliding_window": 16,
    }
    pipe = AceStepPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        transformer=AceStepTransformer1DModel(
            num_hidden_layers=2,
            in_channels=3 * LATENT,  # noisy latents, source latents and the repaint mask
            audio_acoustic_hidden_dim=LATENT,
            encoder_hidden_size=32,
            is_turbo=True,
            model_version="turbo",
            **sizes,
        ),
        condition_encoder=AceStepConditionEncoder(
            text_hidden_dim=16,
            timbre_hidden_dim=LATENT,
            num_lyric_encoder_hidden_layers=1,
            num_timbre_encoder_hidden_layers=1,
            **sizes,
        ),
        scheduler=FlowMatchEulerDiscreteScheduler(num_train_timesteps=1, shift=1.0),
        audio_tokenizer=AceStepAudioTokenizer(
            audio_acoustic_hidden_dim=LATENT, fsq_dim=32, num_attention_pooler_hidden_layers=1, **sizes
        ),
        audio_token_detokenizer=AceStepAudioTokenDetokenizer(
            audio_acoustic_hidden_dim=LATENT, num_attention_pooler_hidden_layers=1, **sizes
        ),
    )
    pipe.save_pretrained(folder)


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("genmill-models")
    torch.manual_seed(0)
    save_tiny_ace_step(root / "ace-step")
    (root / "musicgen").mkdir()  # present but empty: MusicGen is listed after ACE-Step and cannot run
    return root


@pytest.fixture(scope="module")
def backend(models_dir: Path) -> AceStepBackend:
    found = audio_backends(
        models_dir,
        placement=Placement("cpu"),
        ace_step_options={"steps": 2, "diffrhythm_seconds": DIFFRHYTHM_TEST_SECONDS},
    )
    ace_step = found[0]
    assert isinstance(ace_step, AceStepBackend)
    assert ace_step.availability().ok, ace_step.availability().reason
    ace_step.load()
    return ace_step


def run(backend: AceStepBackend, model: str, task_type: str, fields: dict[str, Any]) -> tuple[bytes, MemoryRunContext]:
    entry = CATALOG.get(model, task_type)
    assert entry is not None
    ctx = MemoryRunContext()
    output = backend.run(entry, entry.input_model.model_validate(fields), ctx)
    first, *_ = ctx.outputs.values()
    data, content_type = first.data, first.content_type
    assert output == {"audio_url": next(iter(ctx.outputs))} and content_type == "audio/wav"
    return data, ctx


def seconds_of(data: bytes) -> float:
    rate, audio = read_wav(data)
    assert rate == RATE and audio.shape[0] == 2
    return audio.shape[1] / rate


def test_txt2audio_sings_the_lyrics_for_the_duration_and_repeats_with_the_seed(backend: AceStepBackend) -> None:
    fields = {"style_prompt": "pop, piano", "lyrics": "[verse]\nhello rain", "duration": 5, "seed": 3}
    first, ctx = run(backend, ACE_STEP, "txt2audio", {**fields, "negative_style_prompt": "rock"})
    assert seconds_of(first) == 5.0
    assert run(backend, ACE_STEP, "txt2audio", fields)[0] == first
    assert run(backend, ACE_STEP, "txt2audio", {**fields, "lyrics": "[chorus]\ngoodbye sun"})[0] != first
    assert run(backend, ACE_STEP, "txt2audio", {**fields, "seed": 4})[0] != first
    logs = "\n".join(ctx.logs)
    assert PIPELINE in logs and "seed 3" in logs and "negative_style_prompt is not used" in logs
    assert sum(1 for line in ctx.logs if line.startswith("step ")) == 2 and ctx.fractions[-1] == 1.0
    served = backend.served_by(CATALOG.get(ACE_STEP, "txt2audio"))  # type: ignore[arg-type]
    assert served.model == PIPELINE and not served.stand_in


def test_audio2audio_and_edit_cover_the_source_at_its_length(backend: AceStepBackend) -> None:
    fields = {"style_prompt": "jazz", "lyrics": "", "seed": 1}
    low, ctx = run(backend, ACE_STEP, "audio2audio", {**fields, "style_audio": tone(3, 110)})
    high, _ = run(backend, ACE_STEP, "audio2audio", {**fields, "style_audio": tone(3, 880)})
    assert seconds_of(low) == seconds_of(high) == 3.0 and low != high
    assert "covered with the new style and lyrics" in "\n".join(ctx.logs)
    edited, ctx = run(backend, ACE_STEP, "edit", {**fields, "style_audio": tone(3, 110), "lyrics": "new words"})
    assert seconds_of(edited) == 3.0 and edited != low


def test_edit_repaints_only_the_span_asked(backend: AceStepBackend) -> None:
    fields = {"style_prompt": "rock", "style_audio": tone(4, 220), "seed": 2, "repaint_start": 1, "repaint_end": 3}
    data, ctx = run(backend, ACE_STEP, "edit", fields)
    assert seconds_of(data) == 4.0
    assert "1s to 3s repainted, the rest kept" in "\n".join(ctx.logs)
    for extra, field in (({"repaint_start": 7}, "repaint_start"), ({"repaint_end": 9}, "repaint_end")):
        with pytest.raises(InputRejected, match=f"^{field}: ") as caught:
            run(backend, ACE_STEP, "edit", {**fields, **extra})
        assert caught.value.code == INPUT_ERROR_CODE


def test_extend_appends_duration_seconds_after_the_source(backend: AceStepBackend) -> None:
    data, ctx = run(backend, ACE_STEP, "extend", {"style_prompt": "calm", "style_audio": tone(2, 220), "duration": 5})
    assert seconds_of(data) == 7.0
    assert "5s repainted after it" in "\n".join(ctx.logs)


def test_an_undecodable_source_is_the_inputs_fault(backend: AceStepBackend) -> None:
    garbage = "data:audio/wav;base64," + base64.b64encode(b"not audio at all" * 10).decode()
    with pytest.raises(InputRejected, match=r"^style_audio: not a decodable audio file") as caught:
        run(backend, ACE_STEP, "audio2audio", {"style_prompt": "jazz", "style_audio": garbage})
    assert caught.value.code == INPUT_ERROR_CODE


def test_diffrhythm_is_a_stand_in_with_its_song_length(backend: AceStepBackend) -> None:
    lyrics = "[00:10.00]first line\n[00:15.50]second line"
    data, ctx = run(backend, DIFFRHYTHM, "txt2audio-full", {"lyrics": lyrics, "style_audio": tone(2, 330)})
    assert seconds_of(data) == DIFFRHYTHM_TEST_SECONDS["txt2audio-full"]
    logs = "\n".join(ctx.logs)
    assert "standing in for DiffRhythm" in logs and "timestamps are dropped" in logs and "timbre" in logs
    assert untimed_lyrics(lyrics) == "first line\nsecond line" and untimed_lyrics("") == "[Instrumental]"
    served = backend.served_by(CATALOG.get(DIFFRHYTHM, "txt2audio-base"))  # type: ignore[arg-type]
    assert served.stand_in and served.model == PIPELINE and served.limits


def test_a_cancelled_task_stops_after_the_step_it_was_in(backend: AceStepBackend) -> None:
    entry = CATALOG.get(ACE_STEP, "txt2audio")
    assert entry is not None

    ctx = MemoryRunContext(cancel_when=lambda ctx: bool(ctx.fractions))  # stops once under way
    inputs = entry.input_model.model_validate({"style_prompt": "pop", "duration": 60})
    with pytest.raises(BackendError, match="cancelled"):
        backend.run(entry, inputs, ctx)
    assert not ctx.outputs and len(ctx.fractions) == 1


def test_ace_step_comes_before_musicgen_and_edit_needs_no_excuse(models_dir: Path, tmp_path: Path) -> None:
    found = audio_backends(models_dir, placement=Placement("cpu"))
    assert [type(b) for b in found] == [AceStepBackend, MusicGenBackend]
    (tmp_path / "musicgen").mkdir()
    alone = audio_backends(tmp_path)
    edit = next(b for b in alone if isinstance(b, UnservedBackend))
    assert "ace-step/" in edit.availability().reason and "genmill models pull Qubico/ace-step" in edit.reason
    (tmp_path / "ace-step").mkdir()
    missing = audio_backends(tmp_path)[0]
    assert isinstance(missing, AceStepBackend)
    assert "genmill models pull Qubico/ace-step" in missing.availability().reason


def tone(seconds: float, hz: float) -> str:
    return tone_at(seconds, hz, 8000)
