"""The OpenAI-compatible chat API over real HTTP: genmill on uvicorn on 127.0.0.1 forwarding to a loopback
OpenAI-compatible server, checked in OpenAI's exact shapes, with each call a task billed through the ledger."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.integration.openai_app import POOR_CREDITS, Chat, serve_chat_api
from tests.integration.openai_upstream import PROMPT_TOKENS, TOOL_CALL_DELTAS, WORDS, serve_upstream

from genmill.app import Runtime
from genmill.domain.states import TaskStatus
from genmill.models.llm.catalog import PIAPI_PRICES, ChatMessage, prompt_token_bound
from genmill.settings import Settings

CREDITS = 10_000_000
MINI = PIAPI_PRICES["gpt-4o-mini"]


@pytest.fixture
def chat(tmp_path: Path) -> Iterator[Chat]:
    with serve_upstream() as upstream:
        models = {
            "gpt-4o-mini": {"base_url": upstream.url},
            "claude-3-5-haiku": {"base_url": upstream.url + "/v1", "model": "qwen-tiny"},
        }
        with serve_chat_api(tmp_path, upstream, models, credits=CREDITS) as served:
            yield served


def ask(**extra: Any) -> dict[str, Any]:
    return {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Say hello"}], **extra}


def cap_of(body: dict[str, Any], max_tokens: int = 4096) -> int:
    messages = [ChatMessage.model_validate(m) for m in body["messages"]]
    return MINI.credits(prompt_token_bound(messages), max_tokens)


def sse_events(response: httpx.Response) -> list[str]:
    return [line.removeprefix("data: ") for line in response.iter_lines() if line.startswith("data: ")]


def test_a_plain_answer_in_openais_shape_as_a_completed_task(chat: Chat) -> None:
    r = chat.post(ask())
    assert r.status_code == 200, r.text
    answer = r.json()
    assert set(answer) == {"id", "object", "created", "model", "choices", "usage", "system_fingerprint"}
    assert answer["object"] == "chat.completion" and answer["model"] == "gpt-4o-mini"
    assert answer["choices"] == [
        {
            "index": 0,
            "message": {"role": "assistant", "content": "".join(WORDS), "refusal": None},
            "logprobs": None,
            "finish_reason": "stop",
        }
    ]
    assert answer["usage"] == chat.upstream.usage_object()
    sent = chat.upstream.bodies[0]
    assert sent["model"] == "gpt-4o-mini" and sent["stream"] is True and sent["max_tokens"] == 4096
    assert sent["stream_options"] == {"include_usage": True}
    assert sent["messages"] == [{"role": "user", "content": "Say hello"}]
    task_id = answer["id"].removeprefix("chatcmpl-")
    task = chat.http.get(f"{chat.url}/api/v1/task/{task_id}", headers={"X-API-Key": chat.key}).json()["data"]
    assert task["status"] == "completed" and task["model"] == "gpt-4o-mini" and task["task_type"] == "chat"
    assert task["output"] == answer
    other = chat.http.get(f"{chat.url}/api/v1/task/{task_id}", headers={"X-API-Key": chat.poor_key})
    assert other.status_code == 404  # another account's call is not found, like one that does not exist
    port = chat.upstream.url.rsplit(":", 1)[1]
    assert task["detail"]["served_by"]["model"] == f"gpt-4o-mini at http://127.0.0.1:{port}/v1"
    assert task["detail"]["served_by"]["stand_in"] is False
    available, frozen, used = chat.balances()
    assert frozen == 0 and available + used == CREDITS
    expected = MINI.credits(PROMPT_TOKENS, len(WORDS))  # what the usage says, not the cap
    assert used == task["meta"]["usage"]["consume"] == expected


def test_a_call_consumes_what_its_usage_says_and_releases_the_rest_of_the_cap(chat: Chat) -> None:
    assert chat.post(ask()).status_code == 200
    available, frozen, used = chat.balances()
    expected = MINI.credits(PROMPT_TOKENS, len(WORDS))
    assert expected == 42  # 21 x 1.125 + 4 x 4.5 credits, rounded up
    assert (available, frozen, used) == (CREDITS - expected, 0, expected)


def test_the_history_shows_the_call_as_llm_usage(chat: Chat) -> None:
    task_id = chat.post(ask()).json()["id"].removeprefix("chatcmpl-")
    r = chat.http.get(f"{chat.url}/api/v1/task/{task_id}", headers={"X-API-Key": chat.key})
    assert r.json()["data"]["meta"]["usage"]["type"] == "llm"


def test_the_history_lists_the_call_under_its_family(chat: Chat) -> None:
    task_id = chat.post(ask()).json()["id"].removeprefix("chatcmpl-")
    r = chat.http.get(f"{chat.url}/api/open/tasks/histories", params={"model": "llm"}, headers={"X-API-Key": chat.key})
    assert r.status_code == 200, r.text
    assert task_id in r.text


def test_a_streamed_answer_is_chunks_then_usage_then_done(chat: Chat) -> None:
    body = ask(stream=True, stream_options={"include_usage": True})
    with chat.http.stream("POST", f"{chat.url}/v1/chat/completions", json=body, headers=chat.bearer()) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        events = sse_events(r)
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert {c["object"] for c in chunks} == {"chat.completion.chunk"}
    assert len({c["id"] for c in chunks}) == 1 and chunks[0]["id"].startswith("chatcmpl-")
    assert {c["model"] for c in chunks} == {"gpt-4o-mini"}
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant"}
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
    assert text == "".join(WORDS)
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop"
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"] == chat.upstream.usage_object()
    task = chat.runtime.store.tasks.get(chat.account_id, chunks[0]["id"].removeprefix("chatcmpl-"))
    assert task.status is TaskStatus.COMPLETED and task.output is not None
    assert task.output["choices"][0]["message"]["content"] == "".join(WORDS)


def test_without_include_usage_no_usage_chunk_is_sent(chat: Chat) -> None:
    with chat.http.stream("POST", f"{chat.url}/v1/chat/completions", json=ask(stream=True), headers=chat.bearer()) as r:
        events = sse_events(r)
    chunks = [json.loads(e) for e in events[:-1]]
    assert events[-1] == "[DONE]" and all("usage" not in c for c in chunks)
    assert chat.upstream.bodies[0]["stream_options"] == {"include_usage": True}  # asked upstream all the same


def test_a_short_balance_is_refused_with_402_before_the_model_is_called(chat: Chat) -> None:
    r = chat.post(ask(), key=chat.poor_key)
    assert r.status_code == 402
    error = r.json()["error"]
    assert error["type"] == "insufficient_quota" and error["code"] == "insufficient_quota" and error["message"]
    assert chat.upstream.bodies == []
    poor = next(a for a in chat.runtime.store.accounts.list_accounts() if a.name == "poor")
    assert (poor.balances.available, poor.balances.frozen, poor.balances.used) == (POOR_CREDITS, 0, 0)
    assert chat.runtime.store.tasks.active(poor.account_id) == []


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"model": "gpt-4o-mini"}, "messages"),
        ({"model": "gpt-4o-mini", "messages": []}, "messages"),
        ({"model": "gpt-4o-mini", "messages": [{"role": "robot", "content": "x"}]}, "messages[0].role"),
        (ask(n=2), "n"),
        (ask(temperature=3), "temperature"),
        (ask(max_tokens=0), "max_tokens"),
        ({"messages": [{"role": "user", "content": "x"}]}, "model"),
    ],
)
def test_bad_input_is_an_openai_style_400_naming_the_param(chat: Chat, body: dict[str, Any], param: str) -> None:
    r = chat.post(body)
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert error["type"] == "invalid_request_error" and error["param"] == param
    assert error["message"].startswith(f"{param}: ")
    assert chat.upstream.bodies == [] and chat.balances() == (CREDITS, 0, 0)


def test_keys_models_and_bodies_are_refused_in_openais_shape(chat: Chat) -> None:
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic abc"}):
        r = chat.http.post(f"{chat.url}/v1/chat/completions", json=ask(), headers=headers)
        assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key"
    r = chat.http.post(f"{chat.url}/v1/chat/completions", json=ask(), headers={"X-API-Key": chat.key})
    assert r.status_code == 200  # PiAPI's header works too
    chat.upstream.bodies.clear()
    unknown = chat.post(ask(model="gpt-9"))
    assert unknown.status_code == 404
    assert unknown.json()["error"] | {"message": ""} == {
        "message": "",
        "type": "invalid_request_error",
        "param": "model",
        "code": "model_not_found",
    }
    stand_in = chat.post(ask(model="claude-3-5-haiku"))  # qwen-tiny would answer: a stand-in nobody enabled
    assert stand_in.status_code == 404 and "GENMILL_STAND_INS" in stand_in.json()["error"]["message"]
    not_json = chat.http.post(
        f"{chat.url}/v1/chat/completions",
        content=b"[1, 2]",
        headers={**chat.bearer(), "Content-Type": "application/json"},
    )
    assert not_json.status_code == 400 and not_json.json()["error"]["type"] == "invalid_request_error"
    assert chat.upstream.bodies == []


def test_models_lists_what_answers_each_name(chat: Chat) -> None:
    r = chat.http.get(f"{chat.url}/v1/models", headers=chat.bearer())
    assert r.status_code == 200
    listed = r.json()
    assert listed["object"] == "list"
    assert [m["id"] for m in listed["data"]] == ["gpt-4o-mini"]
    assert listed["data"][0]["object"] == "model" and listed["data"][0]["served_by"]["stand_in"] is False
    assert chat.http.get(f"{chat.url}/v1/models").status_code == 401


def test_an_upstream_failure_is_a_502_and_releases_the_credits(chat: Chat) -> None:
    chat.upstream.status = 503
    r = chat.post(ask())
    assert r.status_code == 502
    assert "the model is overloaded" in r.json()["error"]["message"]
    assert chat.balances() == (CREDITS, 0, 0)
    (task,) = chat.runtime.store.tasks.history(
        chat.account_id, page=1, page_size=10, model=None, start=None, end=None, status=None
    ).tasks
    assert task.status is TaskStatus.FAILED and task.error is not None
    assert "the model is overloaded" in task.error["raw_message"]


def _wait_for(predicate: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_a_client_that_leaves_mid_stream_stops_the_upstream_and_pays_for_what_was_generated(chat: Chat) -> None:
    chat.upstream.hold.clear()  # the upstream sends its first word, then waits
    body = ask(stream=True)
    with chat.http.stream("POST", f"{chat.url}/v1/chat/completions", json=body, headers=chat.bearer()) as r:
        lines = r.iter_lines()
        first = json.loads(next(line for line in lines if line.startswith("data: ")).removeprefix("data: "))
        second = json.loads(next(line for line in lines if line.startswith("data: ")).removeprefix("data: "))
        assert second["choices"][0]["delta"] == {"content": WORDS[0]}
    # the client closed the connection; the rest of the answer is on its way from the upstream
    chat.upstream.hold.set()
    task_id = first["id"].removeprefix("chatcmpl-")

    def settled() -> bool:
        return chat.runtime.store.tasks.get(chat.account_id, task_id).status is TaskStatus.COMPLETED

    _wait_for(settled)
    task = chat.runtime.store.tasks.get(chat.account_id, task_id)
    assert task.output is not None and task.output["choices"][0]["finish_reason"] == "disconnected"
    assert task.output["choices"][0]["message"]["content"].startswith(WORDS[0])
    assert any("disconnected" in line for line in task.logs)
    available, frozen, used = chat.balances()
    assert frozen == 0 and available + used == CREDITS and 0 < used <= cap_of(body)


def test_a_process_that_dies_holding_a_call_has_its_credits_released_by_the_reaper(tmp_path: Path) -> None:
    with serve_upstream() as upstream:
        settings = Settings(
            data_dir=tmp_path,
            workers=0,
            lease_seconds=0.3,
            heartbeat_seconds=0.1,
            llm_models=json.dumps({"gpt-4o-mini": {"base_url": upstream.url}}),
        )
        runtime = Runtime(settings)
        account = runtime.store.accounts.create_account("one", credits=CREDITS)
        run = runtime.chat.start(account, ask())  # created, frozen and leased; then the process "dies"
        task = runtime.store.tasks.get(account.account_id, run.task_id)
        assert task.status is TaskStatus.PROCESSING and task.max_attempts == 1
        time.sleep(0.4)
        runtime.store.leases.sweep_expired_leases()
        task = runtime.store.tasks.get(account.account_id, run.task_id)
        assert task.status is TaskStatus.FAILED
        balances = runtime.store.accounts.get(account.account_id).balances
        assert (balances.available, balances.frozen, balances.used) == (CREDITS, 0, 0)
        assert upstream.bodies == []
        runtime.store.close()


# -- real clients: the openai SDK and PiAPI's own CLI, unchanged ------------------------------------------------


def test_the_openai_sdk_reads_answers_streams_and_errors(chat: Chat) -> None:
    openai = pytest.importorskip("openai")
    client = openai.OpenAI(base_url=f"{chat.url}/v1", api_key=chat.key, max_retries=0)
    answer = client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "Say hello"}])
    assert answer.choices[0].message.content == "".join(WORDS)
    assert answer.usage is not None and answer.usage.prompt_tokens == PROMPT_TOKENS
    stream = client.chat.completions.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": "Say hello"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    pieces: list[str] = []
    usage = None
    for chunk in stream:
        pieces.extend(choice.delta.content or "" for choice in chunk.choices)
        usage = chunk.usage or usage
    assert "".join(pieces) == "".join(WORDS)
    assert usage is not None and usage.completion_tokens == len(WORDS)
    assert [m.id for m in client.models.list()] == ["gpt-4o-mini"]
    assert client.models.retrieve("gpt-4o-mini").id == "gpt-4o-mini"
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("claude-3-5-haiku")  # configured, but a stand-in nobody enabled
    with pytest.raises(openai.BadRequestError) as bad:
        client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "robot", "content": "x"}])
    assert bad.value.param == "messages[0].role"
    with pytest.raises(openai.NotFoundError) as missing:
        client.chat.completions.create(model="gpt-9", messages=[{"role": "user", "content": "x"}])
    assert missing.value.code == "model_not_found"
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=f"{chat.url}/v1", api_key="wrong", max_retries=0).models.list()
    poor = openai.OpenAI(base_url=f"{chat.url}/v1", api_key=chat.poor_key, max_retries=0)
    with pytest.raises(openai.APIStatusError) as short:
        poor.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "x"}])
    assert short.value.status_code == 402 and short.value.code == "insufficient_quota"


@pytest.mark.parametrize("stream", [False, True])
def test_piapis_cli_llm_command_works_unchanged(chat: Chat, stream: bool) -> None:
    pytest.importorskip("piapi_skills")
    env = {**os.environ, "PIAPI_API_KEY": chat.key, "PIAPI_LLM_BASE": f"{chat.url}/v1"}
    command = [sys.executable, "-m", "piapi_skills.cli", "llm", "gpt-4o-mini", "Say hello", "--system", "be brief"]
    done = subprocess.run(
        [*command, *(["--stream"] if stream else [])], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == "".join(WORDS) + "\n"
    assert chat.upstream.bodies[0]["messages"][0] == {"role": "system", "content": "be brief"}


def test_a_call_at_the_concurrency_limit_is_refused_with_429_and_nothing_kept_frozen(chat: Chat) -> None:
    store = chat.runtime.store
    busy = store.accounts.create_account("busy", credits=CREDITS, max_concurrency=1)
    key, _ = store.accounts.create_key(busy.account_id)
    chat.upstream.hold.clear()  # the first call stays mid-answer
    with chat.http.stream("POST", f"{chat.url}/v1/chat/completions", json=ask(stream=True), headers=chat.bearer(key)):
        second = chat.post(ask(), key=key)
        assert second.status_code == 429
        assert (
            second.json()["error"]["code"] == "rate_limit_exceeded"
            and "concurrency" in second.json()["error"]["message"]
        )
        balances = store.accounts.get(busy.account_id).balances
        assert balances.frozen == cap_of(ask(stream=True))  # only the running call's cap
        chat.upstream.hold.set()
    assert len(chat.upstream.bodies) == 1


def test_tool_calls_are_relayed_in_streams_and_assembled_in_answers(chat: Chat) -> None:
    chat.upstream.tool_call = True
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]
    answer = chat.post(ask(tools=tools)).json()
    assert answer["choices"][0]["finish_reason"] == "tool_calls"
    assert answer["choices"][0]["message"] == {
        "role": "assistant",
        "content": None,
        "refusal": None,
        "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}
        ],
    }
    assert chat.upstream.bodies[0]["tools"] == tools  # forwarded as sent
    with chat.http.stream("POST", f"{chat.url}/v1/chat/completions", json=ask(stream=True), headers=chat.bearer()) as r:
        chunks = [json.loads(e) for e in sse_events(r)[:-1]]
    relayed = [c["choices"][0]["delta"]["tool_calls"][0] for c in chunks if "tool_calls" in c["choices"][0]["delta"]]
    assert relayed == list(TOOL_CALL_DELTAS)
