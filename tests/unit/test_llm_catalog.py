"""The OpenAI-compatible API's catalog: token prices and the cap frozen at create, what a usage costs, the
settings that configure models and prices (refused at start when wrong), and how the answer's usage is settled."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from genmill.catalog import build_catalog
from genmill.domain.catalog import usd
from genmill.engine.chat import Answer
from genmill.engine.inline import param_of
from genmill.models.llm.catalog import (
    DEFAULT_MAX_TOKENS,
    MESSAGE_OVERHEAD_TOKENS,
    PIAPI_PRICES,
    ChatMessage,
    ChatRequest,
    TokenPrice,
    prompt_token_bound,
)
from genmill.models.llm.config import parse_image_prices, parse_model_settings, parse_prices
from genmill.settings import Settings


def test_token_prices_are_piapis_and_round_up_to_whole_credits() -> None:
    mini = PIAPI_PRICES["gpt-4o-mini"]
    assert (mini.input_usd, mini.output_usd) == (0.1125, 0.45)
    assert mini.credits(1_000_000, 0) == usd(0.1125) and mini.credits(0, 1_000_000) == usd(0.45)
    assert mini.credits(1, 0) == 2  # 1.125 credits, rounded up
    assert mini.credits(0, 0) == 0
    with pytest.raises(ValueError, match="negative"):
        TokenPrice(-1, 1)


def test_the_prompt_bound_never_counts_fewer_tokens_than_bytes() -> None:
    messages = [
        ChatMessage(role="system", content="be brief"),
        ChatMessage(role="user", content=[{"type": "text", "text": "héllo"}, {"type": "image_url", "image_url": {}}]),
    ]
    image_part = len(json.dumps({"type": "image_url", "image_url": {}}))
    expected = MESSAGE_OVERHEAD_TOKENS * 3 + len("be brief") + len("héllo".encode()) + image_part
    assert prompt_token_bound(messages) == expected


def test_the_entry_freezes_the_cap_and_prices_the_usage() -> None:
    catalog = build_catalog()
    entry = catalog.get("gpt-4o", "chat")
    assert entry is not None and entry.family == "llm" and entry.usage_type == "llm" and entry.usage_price
    request = ChatRequest.model_validate({"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]})
    gpt4o = PIAPI_PRICES["gpt-4o"]
    bound = prompt_token_bound(request.messages)
    assert entry.price_of(request) == gpt4o.credits(bound, DEFAULT_MAX_TOKENS)
    capped = request.model_copy(update={"max_tokens": 10})
    assert entry.price_of(capped) == gpt4o.credits(bound, 10)
    used = entry.usage_price(request, {"usage": {"prompt_tokens": 5, "completion_tokens": 7}})
    assert used == gpt4o.credits(5, 7) < entry.price_of(request)
    assert entry.usage_price(request, {}) == 0


def test_operator_prices_override_piapis_and_add_models() -> None:
    prices = json.dumps(
        {"gpt-4o": {"input": 1, "output": 2}, "my-model": {"input": 0, "output": 0}, "sd": {"per_image": 0.5}}
    )
    catalog = build_catalog(llm_prices=prices, llm_max_tokens=100)
    mine, gpt4o, sd = (
        catalog.get("my-model", "chat"),
        catalog.get("gpt-4o", "chat"),
        catalog.get("sd", "image_generation"),
    )
    assert mine is not None and gpt4o is not None and sd is not None
    request = ChatRequest.model_validate({"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]})
    assert mine.price_of(request) == 0
    assert gpt4o.price_of(request) == TokenPrice(1, 2).credits(prompt_token_bound(request.messages), 100)
    assert catalog.get("gpt-4o-mini", "chat") is not None  # PiAPI's others stay
    assert sd.family == "gpts" and parse_image_prices(prices) == {"sd": 0.5}


@pytest.mark.parametrize(
    ("models", "prices", "says"),
    [
        ("{not json", "", "GENMILL_LLM_MODELS: not valid JSON"),
        ("[1]", "", "GENMILL_LLM_MODELS: must be a JSON object"),
        ('{"m": {"base_url": "http://h", "path": "/x"}}', "", "exactly one of base_url"),
        ('{"m": {"base_url": "ftp://h"}}', "", "http:// or https://"),
        ('{"m": {"base_url": "http://h", "colour": "red"}}', "", "m.colour"),
        ("", '{"m": {"input": 1}}', "give input and output"),
        ("", '{"m": {"input": -1, "output": 1}}', "m.input"),
    ],
)
def test_bad_settings_stop_the_server_at_start_naming_the_item(models: str, prices: str, says: str) -> None:
    with pytest.raises(ValidationError, match=says.replace("(", r"\(")):
        Settings(llm_models=models, llm_prices=prices)


def test_model_settings_parse() -> None:
    parsed = parse_model_settings(
        '{"a": {"base_url": "http://h/v1", "model": "up", "api_key": "k"}, "b": {"path": "/w"}}'
    )
    assert parsed["a"].model == "up" and parsed["a"].stand_in is None and str(parsed["b"].path) == "/w"
    assert parse_prices("") == {} and parse_model_settings("  ") == {}


def test_a_server_without_usage_is_billed_at_the_prompt_bound_and_one_token_per_piece() -> None:
    answer = Answer()
    for piece in ("a", "b", "c"):
        answer.add({"choices": [{"index": 0, "delta": {"content": piece}}]})
    assert answer.settled_usage(prompt_bound=40, max_tokens=2) == {
        "prompt_tokens": 40,
        "completion_tokens": 2,
        "total_tokens": 42,
    }
    answer.add({"choices": [], "usage": {"prompt_tokens": 9, "completion_tokens": 3, "total_tokens": 12}})
    assert answer.settled_usage(prompt_bound=40, max_tokens=100)["prompt_tokens"] == 9


def test_params_are_named_as_openai_names_them() -> None:
    assert param_of(("messages", 0, "content", 1, "text")) == "messages[0].content[1].text"
    assert param_of(("n",)) == "n" and param_of(()) == ""
