"""The local transformers chat backend, on a tiny random Llama saved and loaded with `from_pretrained`: its stream
is the model's own greedy answer token by token, its usage the tokenizer's exact counts, and through the API a
call to it is a task billed from those counts."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("transformers")

import torch
from fastapi.testclient import TestClient
from tests.backends.tiny_chat import save_tiny_chat_model

from genmill.app import Runtime, create_app
from genmill.errors import InputRejected
from genmill.models.llm.catalog import TokenPrice
from genmill.models.llm.local import TransformersChat
from genmill.settings import Settings

pytestmark = [pytest.mark.backends]

MESSAGES = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "say the sky is blue"}]


class Leaving:
    """A chat context whose client leaves when `gone()` says so; this text model stores no files."""

    def __init__(self, gone: Callable[[], bool] | None = None, *, never: bool = False) -> None:
        self.gone = None if never else gone

    def cancelled(self) -> bool:
        return self.gone is not None and self.gone()

    def save_output(self, data: bytes, *, ext: str, content_type: str) -> str:
        raise AssertionError("a text model stores no files")


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_chat_model(tmp_path_factory.mktemp("tiny-chat") / "tiny-chat")


def greedy_reference(folder: Path, max_new_tokens: int) -> tuple[int, str]:
    """The prompt's token count and the greedy answer, computed here with the model's own calls."""
    import transformers

    # Any-typed handles, as in the backend: these loaders are untyped for strict mypy.
    tokenizer: Any = transformers.AutoTokenizer.from_pretrained(str(folder))
    model: Any = transformers.AutoModelForCausalLM.from_pretrained(str(folder))
    ids = tokenizer.apply_chat_template(MESSAGES, add_generation_prompt=True, tokenize=True, return_dict=True)
    prompt = torch.tensor([ids["input_ids"]])
    out = model.generate(prompt, attention_mask=torch.ones_like(prompt), do_sample=False, max_new_tokens=max_new_tokens)
    return int(prompt.shape[1]), str(tokenizer.decode(out[0][prompt.shape[1] :], skip_special_tokens=True))


def test_the_stream_is_the_models_greedy_answer_with_exact_usage(tiny_folder: Path) -> None:
    backend = TransformersChat("tiny-chat", tiny_folder, stand_in=False)
    assert backend.availability().ok
    chunks = list(backend.stream({"messages": MESSAGES}, 5, Leaving(never=True)))
    pieces = [c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"]]
    prompt_tokens, expected = greedy_reference(tiny_folder, 5)
    assert "".join(pieces) == expected and len([p for p in pieces if p]) == 5
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert chunks[-2]["choices"][0]["finish_reason"] == "length"
    assert chunks[-1] == {
        "choices": [],
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": 5, "total_tokens": prompt_tokens + 5},
    }
    assert backend.served_by().model == "transformers: tiny-chat" and not backend.served_by().stand_in


def test_a_client_that_leaves_stops_the_generation(tiny_folder: Path) -> None:
    backend = TransformersChat("tiny-chat", tiny_folder)
    seen: list[str] = []
    last: dict[str, Any] = {}
    for chunk in backend.stream({"messages": MESSAGES}, 50, Leaving(lambda: len(seen) >= 2)):
        if chunk["choices"] and chunk["choices"][0]["delta"].get("content"):
            seen.append(chunk["choices"][0]["delta"]["content"])
        last = chunk
    assert 2 <= last["usage"]["completion_tokens"] < 50


def test_image_parts_and_missing_weights_are_refused_clearly(tiny_folder: Path, tmp_path: Path) -> None:
    backend = TransformersChat("tiny-chat", tiny_folder)
    parts = [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "http://x/y.png"}}]}]
    with pytest.raises(InputRejected, match=r"messages\[0\]\.content: this model reads text parts only"):
        next(iter(backend.stream({"messages": parts}, 5, Leaving(never=True))))
    missing = TransformersChat("tiny-chat", tmp_path / "nothing").availability()
    assert not missing.ok and "config.json is missing" in missing.reason


@pytest.fixture
def local_api(tmp_path: Path, tiny_folder: Path) -> Iterator[tuple[TestClient, Runtime, str, str]]:
    settings = Settings(
        data_dir=tmp_path,
        workers=0,
        llm_models=json.dumps({"tiny-chat": {"path": str(tiny_folder), "stand_in": False}}),
        llm_prices=json.dumps({"tiny-chat": {"input": 1.0, "output": 2.0}}),
        llm_max_tokens=8,
    )
    runtime = Runtime(settings)
    account = runtime.store.accounts.create_account("one", credits=1_000_000)
    key, _ = runtime.store.accounts.create_key(account.account_id)
    with TestClient(create_app(settings, runtime=runtime, run_workers=False)) as client:
        yield client, runtime, key, account.account_id
    runtime.store.close()


def test_a_call_to_the_local_model_through_the_api_is_a_billed_task(
    local_api: tuple[TestClient, Runtime, str, str], tiny_folder: Path
) -> None:
    client, runtime, key, account_id = local_api
    body: dict[str, Any] = {"model": "tiny-chat", "messages": MESSAGES, "max_tokens": 4}
    r = client.post("/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {key}"})
    assert r.status_code == 200, r.text
    answer = r.json()
    prompt_tokens, expected = greedy_reference(tiny_folder, 4)
    assert answer["choices"][0]["message"]["content"] == expected
    assert answer["choices"][0]["finish_reason"] == "length"
    assert answer["usage"] == {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": 4,
        "total_tokens": prompt_tokens + 4,
    }
    task = runtime.store.tasks.get(account_id, answer["id"].removeprefix("chatcmpl-"))
    assert task.family == "llm" and task.detail is not None
    assert task.detail["served_by"]["model"] == "transformers: tiny-chat"
    usage_credits = TokenPrice(1.0, 2.0).credits(prompt_tokens, 4)
    assert usage_credits == -(-(prompt_tokens * 10_000_000 + 4 * 20_000_000) // 1_000_000)
    balances = runtime.store.accounts.get(account_id).balances
    assert balances.frozen == 0 and balances.used == task.consumed_credits
    assert usage_credits <= task.consumed_credits  # the cap until the usage settlement lands, then exactly this

    streamed = {**body, "stream": True, "stream_options": {"include_usage": True}}
    with client.stream("POST", "/v1/chat/completions", json=streamed, headers={"X-API-Key": key}) as s:
        events = [line.removeprefix("data: ") for line in s.iter_lines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
    assert text == expected and chunks[-1]["usage"]["completion_tokens"] == 4


def test_local_weights_under_another_models_name_are_a_stand_in_nobody_enabled(
    tmp_path: Path, tiny_folder: Path
) -> None:
    settings = Settings(
        data_dir=tmp_path, workers=0, llm_models=json.dumps({"gpt-4o-mini": {"path": str(tiny_folder)}})
    )
    runtime = Runtime(settings)
    assert runtime.chat.listed() == []
    assert "GENMILL_STAND_INS" in runtime.chat.unavailable["gpt-4o-mini"]
    enabled = Runtime(settings.model_copy(update={"stand_ins": "gpt-4o-mini"}))
    ((name, served),) = enabled.chat.listed()
    assert name == "gpt-4o-mini" and served.stand_in
    runtime.store.close()
    enabled.store.close()
