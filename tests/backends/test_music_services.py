"""Udio (`music-u`) and Suno (`music-s`) on ACE-Step, a stand-in, with lyrics from an OpenAI-compatible chat model.

ACE-Step is the tiny random model `test_ace_step` builds, saved and loaded by the production path; the pipeline
object is wrapped to record what each task hands it, so the tests see which caption and lyrics reach ACE-Step.
Lyrics come from a fake chat server on 127.0.0.1. Lengths are measured from the WAV written; output shapes,
extensions from the origin song, refusals at creation and the stand-in gate are real.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
pytest.importorskip("diffusers")
pytest.importorskip("imageio_ffmpeg")

import torch
from fastapi.testclient import TestClient
from tests.backends.fake_chat_server import FakeChatServer, fake_chat_server
from tests.backends.test_ace_step import RATE, save_tiny_ace_step
from tests.backends.wav import read_wav

from genmill.app import Runtime, create_app
from genmill.backends.diffusers_loading import Placement
from genmill.backends.openai_compat import OpenAICompatTarget
from genmill.catalog import build_catalog
from genmill.domain.catalog import usd
from genmill.domain.records import InputFile, OriginTask
from genmill.errors import INPUT_ERROR_CODE, InputRejected
from genmill.models.audio.ace_step import AceStepBackend
from genmill.models.audio.backends import audio_backends
from genmill.models.audio.lyrics import LyricsBackend
from genmill.models.audio.music_services import DEFAULT_STYLE
from genmill.models.audio.suno_catalog import SUNO
from genmill.models.audio.udio_catalog import UDIO
from genmill.settings import Settings
from genmill.testing import MemoryRunContext
from genmill.worker.backendset import BackendSet, StandIns

pytestmark = [
    pytest.mark.backends,
    pytest.mark.filterwarnings("ignore:`torch.nn.utils.weight_norm` is deprecated:FutureWarning"),
]

CATALOG = build_catalog()
SECONDS = {UDIO: 4.0, SUNO: 5.0}
LYRICS_MODEL = "qwen2.5:7b-instruct"
WRITTEN = "[Verse]\nEgrets rise on silver wings\n[Chorus]\nOver paddy fields the morning sings"


class RecordingPipe:
    """The loaded AceStepPipeline, recording the keyword arguments of every call."""

    def __init__(self, pipe: Any) -> None:
        self.pipe = pipe
        self.calls: list[dict[str, Any]] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.pipe, name)

    def __call__(self, **kwargs: Any) -> Any:
        self.calls.append(kwargs)
        return self.pipe(**kwargs)


@pytest.fixture(scope="module")
def chat() -> Iterator[FakeChatServer]:
    with fake_chat_server() as server:
        yield server


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("genmill-models")
    torch.manual_seed(0)
    save_tiny_ace_step(root / "ace-step")
    return root


def loaded(backend: AceStepBackend) -> RecordingPipe:
    assert backend.availability().ok, backend.availability().reason
    backend.load()
    recorder = RecordingPipe(backend._pipe)
    backend._pipe = recorder
    return recorder


@pytest.fixture(scope="module")
def found(models_dir: Path, chat: FakeChatServer) -> list[Any]:
    target = OpenAICompatTarget(chat.base_url, LYRICS_MODEL)
    options = {"steps": 2, "song_seconds": SECONDS}
    return audio_backends(models_dir, placement=Placement("cpu"), ace_step_options=options, lyrics=target)


@pytest.fixture(scope="module")
def backend(found: list[Any]) -> AceStepBackend:
    ace_step = found[0]
    assert isinstance(ace_step, AceStepBackend) and ace_step.lyrics is not None
    return ace_step


@pytest.fixture(scope="module")
def pipe(backend: AceStepBackend) -> RecordingPipe:
    return loaded(backend)


@pytest.fixture(scope="module")
def lyrics_backend(found: list[Any]) -> LyricsBackend:
    lyrics = found[-1]
    assert isinstance(lyrics, LyricsBackend)
    return lyrics


def run(
    backend: AceStepBackend, model: str, task_type: str, fields: dict[str, Any], ctx: MemoryRunContext | None = None
) -> tuple[dict[str, Any], MemoryRunContext]:
    entry = CATALOG.get(model, task_type)
    assert entry is not None
    ctx = ctx or MemoryRunContext(task_id=f"task-{model}-{len(fields)}")
    inputs = entry.input_model.model_validate(fields)
    backend.check_request(entry, inputs)
    return backend.run(entry, inputs, ctx), ctx


def seconds_of(ctx: MemoryRunContext, url: str) -> float:
    rate, audio = read_wav(ctx.output(url))
    assert rate == RATE and audio.shape[0] == 2 and ctx.outputs[url].content_type == "audio/wav"
    return audio.shape[1] / rate


def test_udio_instrumental_comes_back_as_one_song_of_udios_length(backend: AceStepBackend, pipe: RecordingPipe) -> None:
    fields = {"gpt_description_prompt": "night breeze, piano", "lyrics_type": "instrumental", "negative_tags": "rock"}
    output, ctx = run(backend, UDIO, "generate_music", fields)
    [song] = output["songs"]
    assert set(output) == {"songs"}
    assert song["id"] == song["generation_id"] == ctx.task_id
    assert seconds_of(ctx, song["song_path"]) == song["duration"] == SECONDS[UDIO]
    assert (
        song["lyrics"] == "" and song["prompt"] == "night breeze, piano" and song["tags"] == ["night breeze", "piano"]
    )
    assert song["title"] == "Night Breeze Piano" and song["image_path"] == "" and song["finished"] is True
    call = pipe.calls[-1]
    assert call["prompt"] == "night breeze, piano" and call["lyrics"] == "[Instrumental]"
    assert call["audio_duration"] == SECONDS[UDIO] and "src_audio" not in call
    logs = "\n".join(ctx.logs)
    assert "standing in for Udio" in logs and "negative_tags are not used" in logs


def test_udio_user_lyrics_are_sung_from_lyrics_or_prompt(backend: AceStepBackend, pipe: RecordingPipe) -> None:
    lyrics = "[Verse]\nIn the gentle evening air,\nWhispers dance without a care."
    output, _ = run(backend, UDIO, "generate_music", {"lyrics_type": "user", "prompt": lyrics, "seed": 5})
    assert pipe.calls[-1]["lyrics"] == lyrics and pipe.calls[-1]["prompt"] == DEFAULT_STYLE
    assert output["songs"][0]["lyrics"] == lyrics and output["songs"][0]["title"] == "Verse In The Gentle"
    fields = {"lyrics_type": "user", "lyrics": lyrics, "gpt_description_prompt": "jazz, female vocals", "title": "Air"}
    output, _ = run(backend, UDIO, "generate_music", fields)
    assert pipe.calls[-1]["lyrics"] == lyrics and pipe.calls[-1]["prompt"] == "jazz, female vocals"
    assert output["songs"][0]["title"] == "Air"


def test_udio_generate_writes_the_lyrics_with_the_chat_model_first(
    backend: AceStepBackend, pipe: RecordingPipe, chat: FakeChatServer
) -> None:
    chat.answer = json.dumps({"lyrics_pairs": [{"title": "Silver Wings", "text": WRITTEN}]})
    sent = len(chat.requests)
    output, ctx = run(backend, UDIO, "generate_music", {"gpt_description_prompt": "egrets", "lyrics_type": "generate"})
    request = chat.requests[sent]
    assert request["model"] == LYRICS_MODEL and request["messages"][-1]["content"] == "egrets"
    assert pipe.calls[-1]["lyrics"] == WRITTEN and pipe.calls[-1]["prompt"] == "egrets"
    song = output["songs"][0]
    assert song["lyrics"] == WRITTEN and song["title"] == "Silver Wings"
    assert any(LYRICS_MODEL in line for line in ctx.logs)


def test_lyrics_to_write_are_refused_at_creation_without_a_chat_model(models_dir: Path) -> None:
    alone = AceStepBackend(models_dir / "ace-step", placement=Placement("cpu"), steps=2, song_seconds=SECONDS)
    cases = [
        (UDIO, "generate_music", {"gpt_description_prompt": "rain", "lyrics_type": "generate"}, "lyrics_type"),
        (SUNO, "generate_music", {"gpt_description_prompt": "rain"}, "make_instrumental"),
    ]
    sets = BackendSet([alone], CATALOG, stand_ins=StandIns.parse("ace-step"))
    for model, task_type, fields, field in cases:
        entry = CATALOG.get(model, task_type)
        assert entry is not None
        inputs = entry.input_model.model_validate(fields)
        with pytest.raises(InputRejected, match=f"^{field}: .*GENMILL_LYRICS_BASE_URL") as caught:
            sets.check_request(entry, inputs)
        assert caught.value.code == INPUT_ERROR_CODE
        with pytest.raises(InputRejected, match=f"^{field}: "):
            alone.run(entry, inputs, MemoryRunContext())  # a task created elsewhere fails the same way
        assert "refused" in " ".join(alone.served_by(entry).limits)
    instrumental = CATALOG.get(SUNO, "generate_music")
    assert instrumental is not None
    inputs = instrumental.input_model.model_validate({"gpt_description_prompt": "rain", "make_instrumental": True})
    sets.check_request(instrumental, inputs)  # nothing to write: accepted


def test_suno_description_and_custom_modes_come_back_as_clips(
    backend: AceStepBackend, pipe: RecordingPipe, chat: FakeChatServer
) -> None:
    chat.answer = "[Verse]\nno json here, just words"  # a model that ignores the format still gives lyrics
    output, ctx = run(backend, SUNO, "generate_music", {"gpt_description_prompt": "autumn night breeze"})
    [(clip_id, clip)] = output["clips"].items()
    assert clip_id == clip["id"] == ctx.task_id and clip["status"] == "complete"
    assert seconds_of(ctx, clip["audio_url"]) == clip["metadata"]["duration"] == SECONDS[SUNO]
    assert clip["metadata"]["prompt"] == pipe.calls[-1]["lyrics"] == "[Verse]\nno json here, just words"
    assert clip["title"] == "Autumn Night Breeze" and clip["image_url"] == "" and clip["video_url"] == ""
    assert any("model_version chirp-v3-0 is Suno's" in line for line in ctx.logs)
    fields = {"prompt": "[Verse]\nWithout your love", "title": "Without your love", "tags": "R&B"}
    output, ctx = run(backend, SUNO, "generate_music_custom", fields)
    clip = output["clips"][ctx.task_id]
    assert pipe.calls[-1]["prompt"] == "R&B" and pipe.calls[-1]["lyrics"] == "[Verse]\nWithout your love"
    assert clip["title"] == "Without your love" and clip["metadata"]["tags"] == "R&B"
    assert clip["metadata"]["history"] is None
    output, ctx = run(backend, SUNO, "generate_music_custom", {"tags": "lofi", "make_instrumental": True})
    assert pipe.calls[-1]["lyrics"] == "[Instrumental]" and output["clips"][ctx.task_id]["metadata"]["prompt"] == ""


def origin_of(output: dict[str, Any], ctx: MemoryRunContext, model: str, task_type: str) -> MemoryRunContext:
    """A context for a task deriving from the one that ran in `ctx`, with its files readable."""
    files = {url: InputFile(saved.data, saved.content_type) for url, saved in ctx.outputs.items()}
    origin = OriginTask(ctx.task_id, model, task_type, {}, output, None, datetime.now(UTC))
    return MemoryRunContext(task_id="extension", files=files, origin=origin)


def test_udio_extension_continues_the_origin_song(backend: AceStepBackend, pipe: RecordingPipe) -> None:
    first, ctx = run(backend, UDIO, "generate_music", {"gpt_description_prompt": "calm", "lyrics_type": "instrumental"})
    base = {"gpt_description_prompt": "calm", "lyrics_type": "instrumental", "continue_song_id": ctx.task_id}
    output, derived = run(backend, UDIO, "generate_music", base, origin_of(first, ctx, UDIO, "generate_music"))
    song = output["songs"][0]
    assert seconds_of(derived, song["song_path"]) == song["duration"] == SECONDS[UDIO] * 2  # from its end
    assert derived.inputs_read == [("continue_song_id", first["songs"][0]["song_path"])]
    call = pipe.calls[-1]
    assert call["task_type"] == "repaint" and call["repainting_start"] == SECONDS[UDIO]
    assert call["repainting_end"] == call["audio_duration"] == SECONDS[UDIO] * 2
    at = {**base, "continue_at": 2}
    output, derived = run(backend, UDIO, "generate_music", at, origin_of(first, ctx, UDIO, "generate_music"))
    assert seconds_of(derived, output["songs"][0]["song_path"]) == 2 + SECONDS[UDIO]  # cut at continue_at
    assert any(f"continues {ctx.task_id} from 2s" in line for line in derived.logs)
    with pytest.raises(InputRejected, match=r"^continue_song_id: the song 'someone-else' to extend was not found"):
        run(backend, UDIO, "generate_music", {**base, "continue_song_id": "someone-else"}, MemoryRunContext())


def test_suno_extension_records_its_history(backend: AceStepBackend, pipe: RecordingPipe) -> None:
    first, ctx = run(backend, SUNO, "generate_music_custom", {"tags": "lofi", "make_instrumental": True})
    fields = {"prompt": "[Verse]\nand on", "tags": "lofi", "continue_clip_id": ctx.task_id, "continue_at": 3}
    derived_ctx = origin_of(first, ctx, SUNO, "generate_music_custom")
    output, derived = run(backend, SUNO, "generate_music_custom", fields, derived_ctx)
    clip = output["clips"]["extension"]
    assert seconds_of(derived, clip["audio_url"]) == 3 + SECONDS[SUNO]
    assert clip["metadata"]["history"] == [{"id": ctx.task_id, "continue_at": 3, "type": "gen"}]
    assert pipe.calls[-1]["lyrics"] == "[Verse]\nand on" and pipe.calls[-1]["repainting_start"] == 3


def test_music_and_lyrics_are_stand_ins_served_only_when_enabled(backend: AceStepBackend, found: list[Any]) -> None:
    keys = [(UDIO, "generate_music"), (SUNO, "generate_music"), (SUNO, "generate_music_custom")]
    lyrics = [(UDIO, "generate_lyrics"), (SUNO, "generate_lyrics")]
    default = BackendSet(found, CATALOG)
    for key in keys:
        assert not default.can_run(*key) and "GENMILL_STAND_INS=ace-step" in default.why_not(*key)
    for key in lyrics:
        assert not default.can_run(*key) and "GENMILL_STAND_INS=lyrics-llm" in default.why_not(*key)
    enabled = BackendSet(found, CATALOG, stand_ins=StandIns.parse("ace-step,lyrics-llm"))
    assert all(enabled.can_run(*key) for key in keys + lyrics)
    udio = enabled.served_by(UDIO, "generate_music")
    assert udio is not None and udio.stand_in and udio.model.endswith("(stand-in for Udio)")
    assert any("one song per task" in limit for limit in udio.limits)
    assert any(LYRICS_MODEL in limit for limit in udio.limits)
    served = enabled.served_by(SUNO, "generate_lyrics")
    assert served is not None and served.stand_in and LYRICS_MODEL in served.model and "Suno" in served.model


def test_an_extension_runs_through_the_api_on_the_origin_songs_task(
    backend: AceStepBackend, pipe: RecordingPipe, tmp_path: Path
) -> None:
    settings = Settings(data_dir=tmp_path / "data", public_url="http://testserver", workers=1, stand_ins="ace-step")
    runtime = Runtime(settings, backends=[backend])
    account = runtime.store.accounts.create_account("one", credits=10_000_000)
    key, _ = runtime.store.accounts.create_key(account.account_id, "k1")
    song = {"gpt_description_prompt": "calm", "lyrics_type": "instrumental"}
    with TestClient(create_app(settings, runtime=runtime, run_workers=False)) as client:

        def create(fields: dict[str, Any]) -> Any:
            body = {"model": UDIO, "task_type": "generate_music", "input": fields}
            return client.post("/api/v1/task", headers={"X-API-Key": key}, json=body)

        def completed(answer: Any) -> dict[str, Any]:
            assert answer.status_code == 200, answer.text
            task_id = answer.json()["data"]["task_id"]
            assert runtime.workers[0].run_once()
            task: dict[str, Any] = client.get(f"/api/v1/task/{task_id}", headers={"X-API-Key": key}).json()["data"]
            assert task["status"] == "completed", task["error"]
            return task

        first = completed(create(song))  # no continue_song_id: the song stands alone
        assert first["output"]["songs"][0]["id"] == first["task_id"]
        assert "stand-in for Udio" in json.dumps(first["detail"])
        extended = completed(create({**song, "continue_song_id": first["task_id"]}))
        assert extended["output"]["songs"][0]["duration"] == 2 * SECONDS[UDIO]
        assert pipe.calls[-1]["repainting_start"] == SECONDS[UDIO]
        unknown = "00000000-0000-4000-8000-000000000000"
        refused = create({**song, "continue_song_id": unknown})
        assert refused.status_code == 400
        assert refused.json()["message"] == f"input.continue_song_id: no task {unknown} found for this account"
        assert runtime.store.accounts.get(account.account_id).balances.used == 2 * usd(0.05)
    runtime.store.close()
