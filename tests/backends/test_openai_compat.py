"""The shared OpenAI-compatible client: plain and streamed completions, and upstream failures as BackendErrors."""

from __future__ import annotations

import json
import re

import httpx
import pytest

from genmill.backends.openai_compat import OpenAICompatClient, OpenAICompatTarget, message_text
from genmill.errors import BackendError

TARGET = OpenAICompatTarget(base_url="http://127.0.0.1:9/", upstream_model="tiny-local", api_key="sk-up")


def _client(handler: httpx.MockTransport) -> OpenAICompatClient:
    return OpenAICompatClient(TARGET, transport=handler)


def test_chat_sends_the_upstream_model_name_and_key_and_returns_the_completion() -> None:
    seen: list[httpx.Request] = []

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"object": "chat.completion", "choices": [{"message": {"content": "hi"}}]})

    client = _client(httpx.MockTransport(handle))
    answer = client.chat({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "x"}]})
    assert message_text(answer) == "hi"
    assert str(seen[0].url) == "http://127.0.0.1:9/v1/chat/completions"
    assert seen[0].headers["authorization"] == "Bearer sk-up"
    sent = json.loads(seen[0].content)
    assert sent["model"] == "tiny-local"
    assert sent["stream"] is False


def test_stream_yields_each_chunk_and_stops_at_done() -> None:
    events = [{"id": "c", "choices": [{"delta": {"content": word}}]} for word in ("a", "b")]
    body = "".join(f"data: {json.dumps(e)}\n\n" for e in events) + ": keep-alive\n\ndata: [DONE]\n\n"

    def handle(request: httpx.Request) -> httpx.Response:
        assert json.loads(request.content)["stream"] is True
        return httpx.Response(200, text=body, headers={"content-type": "text/event-stream"})

    chunks = list(_client(httpx.MockTransport(handle)).stream_chat({"messages": []}))
    assert [c["choices"][0]["delta"]["content"] for c in chunks] == ["a", "b"]


def test_an_http_error_carries_the_upstreams_message() -> None:
    def handle(request: httpx.Request) -> httpx.Response:
        return httpx.Response(400, json={"error": {"message": "context too long", "type": "invalid_request_error"}})

    with pytest.raises(BackendError) as caught:
        _client(httpx.MockTransport(handle)).chat({"messages": []})
    assert caught.value.raw_message == "context too long"
    assert "HTTP 400" in caught.value.message


def test_an_unreachable_server_and_an_unreadable_event_fail_clearly() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused")

    with pytest.raises(
        BackendError, match=re.escape("could not reach the language model server at http://127.0.0.1:9/v1")
    ):
        list(_client(httpx.MockTransport(refuse)).stream_chat({"messages": []}))

    def garbage(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, text="data: not json\n\n")

    with pytest.raises(BackendError, match="unreadable stream event"):
        list(_client(httpx.MockTransport(garbage)).stream_chat({"messages": []}))


def test_a_base_url_that_already_ends_in_v1_is_kept() -> None:
    assert OpenAICompatTarget("http://h:1/v1/", "m").endpoint_base == "http://h:1/v1"
    assert OpenAICompatTarget("http://user:pw@h:1/x?k=1", "m").public_address == "http://h:1/x/v1"
