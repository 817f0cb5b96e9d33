"""Udio's and Suno's `generate_lyrics` on the operator's OpenAI-compatible chat model (a stand-in), against a fake
chat server on 127.0.0.1; the settings that name it; and the music entries' refusal at creation without it."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from tests.backends.fake_chat_server import FakeChatServer, fake_chat_server

from genmill.backends.openai_compat import OpenAICompatTarget
from genmill.backends.registry import configured_backends, lyrics_target
from genmill.catalog import build_catalog
from genmill.domain.catalog import CatalogEntry
from genmill.errors import INPUT_ERROR_CODE, BackendError, InputRejected
from genmill.models.audio import music_services
from genmill.models.audio.lyrics import LyricsBackend, LyricsPair, LyricsWriter, parse_lyrics, title_from
from genmill.models.audio.suno_catalog import SUNO
from genmill.models.audio.udio_catalog import UDIO
from genmill.settings import Settings
from genmill.testing import MemoryRunContext
from genmill.worker.backendset import BackendSet, StandIns

CATALOG = build_catalog()
MODEL = "qwen2.5:7b-instruct"
WINTER = "[Verse]\nSnowflakes falling skies so dim\n[Chorus]\nWinter wind where do you blow"


@pytest.fixture(scope="module")
def chat() -> Iterator[FakeChatServer]:
    with fake_chat_server() as server:
        yield server


@pytest.fixture
def backend(chat: FakeChatServer) -> LyricsBackend:
    chat.status, chat.answer = 200, ""
    return LyricsBackend(LyricsWriter(OpenAICompatTarget(chat.base_url, MODEL, "secret")))


def entry(model: str, task_type: str) -> CatalogEntry:
    found = CATALOG.get(model, task_type)
    assert found is not None
    return found


def test_generate_lyrics_answers_two_lyrics_pairs(backend: LyricsBackend, chat: FakeChatServer) -> None:
    pairs = [{"title": "Winter Wind", "text": WINTER}, {"title": "Winter Wind", "text": "[Verse]\nSnowflakes dance"}]
    chat.answer = "```json\n" + json.dumps({"lyrics_pairs": pairs}) + "\n```"  # fenced, as chat models often do
    for model in (UDIO, SUNO):
        lyrics = entry(model, "generate_lyrics")
        ctx = MemoryRunContext()
        output = backend.run(lyrics, lyrics.input_model.model_validate({"prompt": "White egrets fly"}), ctx)
        assert output == {"lyrics_pairs": pairs} and ctx.fractions[-1] == 1.0
        request = chat.requests[-1]
        assert request["path"] == "/v1/chat/completions" and request["model"] == MODEL and request["stream"] is False
        assert "exactly 2 item(s)" in request["messages"][0]["content"]
        assert request["messages"][1] == {"role": "user", "content": "White egrets fly"}
        assert any(MODEL in line for line in ctx.logs)


def test_an_answer_that_is_not_the_json_asked_for_is_one_songs_lyrics(
    backend: LyricsBackend, chat: FakeChatServer
) -> None:
    chat.answer = WINTER
    lyrics = entry(UDIO, "generate_lyrics")
    output = backend.run(lyrics, lyrics.input_model.model_validate({"prompt": "winter snow, folk"}), MemoryRunContext())
    assert output == {"lyrics_pairs": [{"title": "Winter Snow Folk", "text": WINTER}]}
    assert parse_lyrics("", fallback_title="X") == []
    assert parse_lyrics('{"lyrics_pairs": [{"text": "la"}]}', fallback_title="Rain") == [LyricsPair("Rain", "la")]
    assert title_from("   ") == "Untitled" and title_from("don't stop, the rain!") == "Don't Stop The Rain"


def test_a_failing_or_silent_chat_server_fails_the_task_with_its_words(
    backend: LyricsBackend, chat: FakeChatServer
) -> None:
    lyrics = entry(SUNO, "generate_lyrics")
    inputs = lyrics.input_model.model_validate({"prompt": "egrets"})
    chat.status = 503
    with pytest.raises(BackendError, match=r"refused the request \(HTTP 503\): model is overloaded"):
        backend.run(lyrics, inputs, MemoryRunContext())
    chat.status, chat.answer = 200, "   "
    with pytest.raises(BackendError, match=f"the lyrics model {MODEL} answered no lyrics"):
        backend.run(lyrics, inputs, MemoryRunContext())


def test_lyrics_are_a_stand_in_served_only_when_enabled(backend: LyricsBackend) -> None:
    keys = [(UDIO, "generate_lyrics"), (SUNO, "generate_lyrics")]
    default = BackendSet([backend], CATALOG)
    assert all("GENMILL_STAND_INS=lyrics-llm" in default.why_not(*key) for key in keys)
    enabled = BackendSet([backend], CATALOG, stand_ins=StandIns.parse("lyrics-llm"))
    for model, service in ((UDIO, "Udio"), (SUNO, "Suno")):
        served = enabled.served_by(model, "generate_lyrics")
        assert served is not None and served.stand_in
        assert served.model.startswith(MODEL) and served.model.endswith(f"(stand-in for {service}'s lyrics model)")
        assert "secret" not in served.model


def test_the_lyrics_model_comes_from_settings(chat: FakeChatServer) -> None:
    assert lyrics_target(Settings()) is None
    settings = Settings(lyrics_base_url=chat.base_url, lyrics_model=MODEL, lyrics_api_key="k")
    assert lyrics_target(settings) == OpenAICompatTarget(chat.base_url, MODEL, "k")
    names = [b.name for b in configured_backends(settings, CATALOG)]
    assert "lyrics-llm" in names and "lyrics-llm" not in [b.name for b in configured_backends(Settings(), CATALOG)]
    half = configured_backends(Settings(lyrics_base_url=chat.base_url), CATALOG)
    lyrics = next(b for b in half if isinstance(b, LyricsBackend))
    assert not lyrics.availability().ok and "GENMILL_LYRICS_MODEL" in lyrics.availability().reason


@pytest.mark.parametrize(
    ("model", "task_type", "fields", "field"),
    [
        (UDIO, "generate_music", {"gpt_description_prompt": "rain", "lyrics_type": "generate"}, "lyrics_type"),
        (SUNO, "generate_music", {"gpt_description_prompt": "rain"}, "make_instrumental"),
    ],
)
def test_songs_whose_lyrics_must_be_written_are_refused_without_a_lyrics_model(
    model: str, task_type: str, fields: dict[str, object], field: str, backend: LyricsBackend
) -> None:
    music = entry(model, task_type)
    inputs = music.input_model.model_validate(fields)
    with pytest.raises(InputRejected, match=f"^{field}: .*GENMILL_LYRICS_BASE_URL") as caught:
        music_services.check(music, inputs, None)
    assert caught.value.code == INPUT_ERROR_CODE
    music_services.check(music, inputs, backend.writer)  # with a lyrics model: accepted
    for others in ({"lyrics_type": "instrumental"}, {"lyrics_type": "user", "lyrics": "la"}, {"make_instrumental": 1}):
        if set(others) <= set(music.input_model.model_fields):
            music_services.check(music, music.input_model.model_validate({**fields, **others}), None)
