"""Voice cloning for `Qubico/tts` with Dia, on a tiny random Dia and a tiny 44.1 kHz DAC codec.

Both are built from configs, saved with `save_pretrained` into a models folder laid out like production's
(`tts-clone/` with the codec in `tts-clone/dac/`) and loaded by the backend's own `from_pretrained` calls,
offline; Dia's byte tokenizer needs no vocabulary. The speech is noise, but the reference clip's path through the
codec into the prompt, the chunking, lengths, seeds, the create-time refusals and the choice between Dia and Piper
are real. Skipped where transformers or torch is not installed.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("imageio_ffmpeg")

from tests.backends.memory import ready
from tests.backends.wav import read_wav, tone, wav_ref

from genmill.backends.base import Availability, Backend
from genmill.catalog import build_catalog
from genmill.errors import BackendError, InputRejected
from genmill.models.tts.catalog import MODEL as TTS
from genmill.models.tts.clone import CODEC_FOLDER, FOLDER, DiaCloneTtsBackend, tts_backends
from genmill.models.tts.piper import PiperTtsBackend
from genmill.testing import MemoryRunContext
from genmill.worker.backendset import BackendSet

pytestmark = [
    pytest.mark.backends,
    pytest.mark.filterwarnings("ignore:`torch.nn.utils.weight_norm` is deprecated:FutureWarning"),
    pytest.mark.filterwarnings("ignore:`max_length` is ignored:UserWarning"),
]

CATALOG = build_catalog()
ENTRY = CATALOG.get(TTS, "zero-shot")
RATE = 44_100
REF_TEXT = "Hello, this is my voice."
piper_missing = not PiperTtsBackend().availability().ok


def save_tiny_dia(folder: Path) -> None:
    """A one-layer Dia (the real 9-codebook delay pattern and 1,024-code vocabulary) and a DAC with DAC 44 kHz's
    512-sample hop (86 frames a second) but a few channels, saved as the production folder is laid out."""
    import torch
    from transformers import (
        DacConfig,
        DacModel,
        DiaConfig,
        DiaDecoderConfig,
        DiaEncoderConfig,
        DiaFeatureExtractor,
        DiaForConditionalGeneration,
        DiaTokenizer,
    )

    torch.manual_seed(0)
    undeclared: dict[str, Any] = {  # kept by transformers, unknown to its types
        "upsampling_ratios": [8, 8, 4, 2],
        "hop_length": 512,
        "hidden_size": 16,
    }
    codec = DacConfig(
        encoder_hidden_size=4,
        decoder_hidden_size=16,
        downsampling_ratios=[2, 4, 8, 8],
        n_codebooks=9,
        codebook_size=1024,
        codebook_dim=4,
        sampling_rate=RATE,
        **undeclared,
    )
    DacModel(codec).save_pretrained(folder / CODEC_FOLDER)
    encoder = DiaEncoderConfig(
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=2,
        head_dim=8,
    )
    decoder = DiaDecoderConfig(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=1,
        head_dim=16,
        cross_hidden_size=16,
        cross_num_attention_heads=2,
        cross_num_key_value_heads=2,
        cross_head_dim=8,
    )
    DiaForConditionalGeneration(DiaConfig(encoder_config=encoder, decoder_config=decoder)).save_pretrained(folder)
    DiaFeatureExtractor(sampling_rate=RATE, hop_length=512).save_pretrained(folder)
    DiaTokenizer().save_pretrained(folder)


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("models")
    save_tiny_dia(root / FOLDER)
    return root


@pytest.fixture(scope="module")
def cloner(models_dir: Path) -> Iterator[Backend]:
    # Fast speech, little slack and 60-character parts keep the random model's generations short.
    backend = DiaCloneTtsBackend(models_dir / FOLDER, max_chunk_chars=60, chars_per_second=100.0, slack_seconds=0.25)
    yield from ready(backend)


def speech(seconds: float, seed: int) -> str:
    """A voice-like reference clip: a few harmonics of a pitch with a slow vibrato and a little noise."""
    rate = 16_000
    t = np.arange(round(seconds * rate)) / rate
    pitch = 120 + 25 * seed + 10 * np.sin(2 * np.pi * 3 * t)
    phase = 2 * np.pi * np.cumsum(pitch) / rate
    voice = sum(np.sin(k * phase) / k for k in range(1, 6))
    noise = np.random.default_rng(seed).normal(0, 0.02, t.size)
    return wav_ref(0.25 * voice + noise, rate)


def clone(backend: Backend, **fields: Any) -> tuple[bytes, MemoryRunContext]:
    assert ENTRY is not None
    ctx = MemoryRunContext()
    values = {"ref_audio": speech(0.5, 1), "ref_text": REF_TEXT, "seed": 7, **fields}
    output = backend.run(ENTRY, SimpleNamespace(**values), ctx)  # type: ignore[arg-type]
    first, *_ = ctx.outputs.values()
    data, content_type = first.data, first.content_type
    assert output == {"audio_url": next(iter(ctx.outputs))} and content_type == "audio/wav"
    return data, ctx


def test_a_cloned_wav_has_dias_rate_and_grows_with_the_text(cloner: Backend) -> None:
    short, ctx = clone(cloner, gen_text="Good morning.")
    rate, audio = read_wav(short)
    assert rate == RATE and audio.shape[0] == 1 and float(np.abs(audio).max()) > 0
    long_text = "Good morning. The weather is fine today, and the trains run on time. See you at noon by the river."
    longer, long_ctx = clone(cloner, gen_text=long_text)
    assert read_wav(longer)[1].shape[1] > 2 * audio.shape[1]
    logs = "\n".join(ctx.logs)
    assert "cloning the voice of 0.5s of ref_audio" in logs and "seed 7" in logs
    assert len(long_ctx.fractions) == 4 and long_ctx.fractions[-1] == 1.0  # three parts of at most 60 characters


def test_the_same_seed_gives_the_same_bytes_and_another_voice_another_output(cloner: Backend) -> None:
    first, _ = clone(cloner, gen_text="Good morning.")
    again, _ = clone(cloner, gen_text="Good morning.")
    assert again == first
    other_voice, _ = clone(cloner, gen_text="Good morning.", ref_audio=speech(0.5, 3))
    assert other_voice != first
    other_seed, _ = clone(cloner, gen_text="Good morning.", seed=8)
    assert other_seed != first


def test_a_reference_longer_than_dia_can_follow_is_refused_not_cut(cloner: Backend) -> None:
    with pytest.raises(InputRejected, match=r"^ref_audio: 16\.0 s is longer than 15 s"):
        clone(cloner, gen_text="Good morning.", ref_audio=tone(16.0, 200))
    with pytest.raises(InputRejected, match=r"^ref_audio: not a decodable audio file"):
        clone(cloner, gen_text="Good morning.", ref_audio="data:audio/wav;base64,bm90IGF1ZGlv")


class NoPiper(PiperTtsBackend):
    def availability(self) -> Availability:
        return Availability(False, "not installed")


def test_without_ref_audio_or_piper_dia_speaks_in_a_voice_the_seed_picks(models_dir: Path) -> None:
    backend = DiaCloneTtsBackend(
        models_dir / FOLDER, piper=NoPiper(), max_chunk_chars=60, chars_per_second=100.0, slack_seconds=0.25
    )
    assert backend.served_by(ENTRY).model.endswith("without ref_audio: Dia in a voice the seed picks")  # type: ignore[arg-type]
    first, ctx = clone(backend, gen_text="Good morning.", ref_audio="", ref_text="")
    assert read_wav(first)[0] == RATE and clone(backend, gen_text="Good morning.", ref_audio="")[0] == first
    assert any("speaks in a voice of its own; seed 7" in line for line in ctx.logs)
    with pytest.raises(InputRejected, match=r"^gen_text: Dia speaks English only"):
        backend.check_request(ENTRY, SimpleNamespace(gen_text="Привет", ref_audio=""))  # type: ignore[arg-type]


def test_a_cancelled_task_stops_between_parts_with_nothing_saved(cloner: Backend) -> None:
    assert ENTRY is not None
    ctx = MemoryRunContext(cancel_when=lambda ctx: bool(ctx.fractions))  # stops after the first part's progress
    fields = {"gen_text": "One. " + "Two words here. " * 5, "ref_audio": speech(0.5, 1), "ref_text": REF_TEXT}
    with pytest.raises(BackendError, match="cancelled"):
        cloner.run(ENTRY, SimpleNamespace(**fields, seed=1), ctx)  # type: ignore[arg-type]
    assert len(ctx.fractions) == 1 and not ctx.outputs


def test_parts_shrink_so_that_a_long_reference_leaves_room_for_slow_speech(models_dir: Path) -> None:
    backend = DiaCloneTtsBackend(models_dir / FOLDER)  # the production pacing: 8 characters a second, 250 at most
    backend.load()
    text = " ".join(f"Sentence number {n} is here." for n in range(40))
    short_clip = backend._parts(text, np.zeros((1, 2 * RATE), np.float32), REF_TEXT)
    long_clip = backend._parts(text, np.zeros((1, 15 * RATE), np.float32), REF_TEXT)
    assert max(map(len, short_clip)) <= 250 and max(map(len, long_clip)) <= 8 * (3072 - 1309) // 86
    assert len(long_clip) > len(short_clip)
    transcript = "é" * 400  # 800 bytes of Dia's 1,024: the parts get what is left
    accented = backend._parts("é" * 900, np.zeros((1, 2 * RATE), np.float32), transcript)
    assert all(len(f"[S1] {transcript} {part}".encode()) <= 1024 for part in accented) and len(accented) > 4


def test_create_time_refusals_name_the_field(cloner: Backend) -> None:
    assert ENTRY is not None
    check = cloner.check_request
    ref = speech(1.0, 1)
    with pytest.raises(InputRejected, match=r"^ref_text: required here: this server has no speech recogniser"):
        check(ENTRY, ENTRY.input_model.model_validate({"gen_text": "Hello.", "ref_audio": ref}))
    with pytest.raises(InputRejected, match=r"^gen_text: Dia speaks English only; 2 letter"):
        check(ENTRY, ENTRY.input_model.model_validate({"gen_text": "你好", "ref_audio": ref, "ref_text": "hi"}))
    with pytest.raises(InputRejected, match=r"^ref_text: at most 400 characters"):
        check(ENTRY, ENTRY.input_model.model_validate({"gen_text": "Hi.", "ref_audio": ref, "ref_text": "a " * 300}))
    check(ENTRY, ENTRY.input_model.model_validate({"gen_text": "Hello.", "ref_audio": ref, "ref_text": REF_TEXT}))


def test_ref_audio_is_refused_at_create_without_the_folder_and_accepted_with_it(
    models_dir: Path, tmp_path: Path
) -> None:
    assert ENTRY is not None
    inputs = ENTRY.input_model.model_validate({"gen_text": "Hello.", "ref_audio": speech(1.0, 1), "ref_text": "hi"})
    without = BackendSet(tts_backends(tmp_path), CATALOG)
    if piper_missing:
        assert not without.can_run(TTS, "zero-shot")
    else:
        with pytest.raises(InputRejected, match=r"^ref_audio: voice cloning is not available here"):
            without.check_request(ENTRY, inputs)
    with_dia = BackendSet(tts_backends(models_dir), CATALOG)
    with_dia.check_request(ENTRY, inputs)
    served = with_dia.served_by(TTS, "zero-shot")
    assert served is not None and served.model.startswith("Dia-1.6B") and not served.stand_in
    assert any("English only" in limit for limit in served.limits)


@pytest.mark.skipif(piper_missing, reason="piper-tts or its voice is not installed")
def test_without_ref_audio_piper_speaks(cloner: Backend) -> None:
    assert ENTRY is not None
    ctx = MemoryRunContext()
    cloner.run(ENTRY, ENTRY.input_model.model_validate({"gen_text": "Good morning."}), ctx)
    data = next(iter(ctx.outputs.values())).data
    assert read_wav(data)[0] == 22_050  # the joe-medium voice's rate, not Dia's
    assert any("Piper" in line for line in ctx.logs)


def test_the_api_refuses_a_reference_without_its_transcript_with_no_credit_moved(
    models_dir: Path, tmp_path: Path
) -> None:
    from fastapi.testclient import TestClient

    from genmill.app import Runtime, create_app
    from genmill.settings import Settings

    config = Settings(data_dir=tmp_path, public_url="http://testserver", workers=1)
    runtime = Runtime(config, backends=tts_backends(models_dir))
    with TestClient(create_app(config, runtime=runtime, run_workers=False)) as client:
        account = runtime.store.accounts.create_account("one", credits=1_000_000)
        key, _ = runtime.store.accounts.create_key(account.account_id)

        def create(**fields: str) -> Any:
            body = {"model": TTS, "task_type": "zero-shot", "input": {"gen_text": "Hello.", **fields}}
            return client.post("/api/v1/task", headers={"X-API-Key": key}, json=body)

        before = runtime.store.accounts.get(account.account_id).balances
        refused = create(ref_audio=speech(0.5, 1))
        assert refused.status_code == 400 and "input.ref_text: required here" in refused.json()["message"]
        assert runtime.store.accounts.get(account.account_id).balances == before
        assert create(ref_audio=speech(0.5, 1), ref_text=REF_TEXT).status_code == 200
        listed = client.get("/api/v1/models").json()["data"]["models"]
        served = {f"{m['model']}/{m['task_type']}": m["served_by"] for m in listed}
        assert served[f"{TTS}/zero-shot"]["model"].startswith("Dia-1.6B")
    runtime.store.close()
