"""Chat models of the OpenAI-compatible API (`POST /v1/chat/completions`), one catalog entry per model name.

Each call is an ordinary task (`task_type` "chat", family `llm`, `meta.usage.type` "llm") so that it shows in the
history and the active tasks and is billed through the same ledger. Prices are per million input and output
tokens, PiAPI's list by default, and the operator may set their own per model (GENMILL_LLM_PRICES, which may also
add model names of their own). The create freezes a cap: the prompt's tokens counted conservatively (no token is
shorter than one UTF-8 byte) plus `max_tokens` (or GENMILL_LLM_MAX_TOKENS) at the output price; `usage_price`
computes what the answer's `usage` really cost, which is never more than the cap.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from genmill.domain.catalog import IMAGE_RETENTION, USD, CatalogEntry, TaskInput

FAMILY = "llm"
TASK_TYPE = "chat"
DEFAULT_MAX_TOKENS = 4096
"""The output cap of a call that names no `max_tokens` (GENMILL_LLM_MAX_TOKENS overrides it)."""
MESSAGE_OVERHEAD_TOKENS = 8
"""Tokens a chat template adds around each message (role markers, separators): counted into the cap."""
MILLION = 1_000_000


@dataclass(frozen=True)
class TokenPrice:
    """US dollars per million input (prompt) and output (completion) tokens."""

    input_usd: float
    output_usd: float

    def __post_init__(self) -> None:
        if self.input_usd < 0 or self.output_usd < 0:
            raise ValueError("token prices must not be negative")

    def credits(self, prompt_tokens: int, completion_tokens: int) -> int:
        """Credits for these token counts, rounded up to the next whole credit."""
        micro = prompt_tokens * round(self.input_usd * USD) + completion_tokens * round(self.output_usd * USD)
        return -(-micro // MILLION)


PIAPI_PRICES: dict[str, TokenPrice] = {
    "gpt-4o-mini": TokenPrice(0.1125, 0.45),
    "gpt-4o": TokenPrice(1.875, 7.5),
    "o1-mini": TokenPrice(2.25, 9.0),
    "claude-3-5-sonnet": TokenPrice(2.25, 11.25),
    "claude-3-5-haiku": TokenPrice(0.75, 3.75),
}
"""PiAPI's published prices per 1M tokens, the defaults."""


class ChatMessage(BaseModel):
    """One message; `content` is text or OpenAI's list of content parts (text, image_url)."""

    model_config = ConfigDict(extra="allow")

    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[dict[str, Any]] | None = None
    name: str | None = Field(None, max_length=256)


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="allow")

    include_usage: bool = False


class ChatRequest(TaskInput):
    """OpenAI's chat request body. Fields not declared here are kept and forwarded to the model's server."""

    model: str = Field(..., min_length=1, max_length=256)
    messages: list[ChatMessage] = Field(..., min_length=1, max_length=2048)
    max_tokens: int | None = Field(None, ge=1, le=1_000_000)
    max_completion_tokens: int | None = Field(None, ge=1, le=1_000_000)
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, ge=0, le=1)
    presence_penalty: float | None = Field(None, ge=-2, le=2)
    frequency_penalty: float | None = Field(None, ge=-2, le=2)
    n: int = Field(1, ge=1, le=1, description="Only one choice per call is generated.")
    stop: str | list[str] | None = None
    seed: int | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None

    @model_validator(mode="after")
    def _stop_list_is_short(self) -> ChatRequest:
        if isinstance(self.stop, list) and len(self.stop) > 4:
            raise ValueError("stop: at most 4 stop sequences")
        return self

    def output_cap(self, default: int) -> int:
        """The most completion tokens this call may produce: what it asked for, else the operator's default."""
        return self.max_completion_tokens or self.max_tokens or default


def prompt_token_bound(messages: list[ChatMessage]) -> int:
    """An upper bound on the prompt's tokens: every token covers at least one UTF-8 byte, so the bytes of the
    messages' text (non-text parts counted as their JSON) plus each message's template overhead."""
    total = MESSAGE_OVERHEAD_TOKENS
    for message in messages:
        total += MESSAGE_OVERHEAD_TOKENS
        content = message.content
        if isinstance(content, str):
            total += len(content.encode("utf-8"))
        elif isinstance(content, list):
            for part in content:
                text = part.get("text") if part.get("type") == "text" else None
                total += len((text if isinstance(text, str) else json.dumps(part)).encode("utf-8"))
        if message.name:
            total += len(message.name.encode("utf-8"))
    return total


def usage_counts(output: Mapping[str, Any]) -> tuple[int, int]:
    """(prompt_tokens, completion_tokens) of a completion's `usage`; (0, 0) when absent."""
    usage = output.get("usage")
    if not isinstance(usage, Mapping):
        return 0, 0
    prompt = usage.get("prompt_tokens")
    completion = usage.get("completion_tokens")
    return (
        prompt if isinstance(prompt, int) and prompt > 0 else 0,
        completion if isinstance(completion, int) and completion > 0 else 0,
    )


def chat_entry(model: str, price: TokenPrice, *, max_tokens: int = DEFAULT_MAX_TOKENS) -> CatalogEntry:
    """The catalog entry of one chat model: the cap frozen at create, the usage consumed at the end."""
    if max_tokens < 1:
        raise ValueError("max_tokens must be at least 1")

    def cap(inputs: Any) -> int:
        assert isinstance(inputs, ChatRequest)
        return price.credits(prompt_token_bound(inputs.messages), inputs.output_cap(max_tokens))

    def used(inputs: Any, output: dict[str, Any]) -> int:
        return price.credits(*usage_counts(output))

    return CatalogEntry(
        model=model,
        task_type=TASK_TYPE,
        input_model=ChatRequest,
        price=cap,
        family=FAMILY,
        retention=IMAGE_RETENTION,
        description=(
            f"OpenAI-compatible chat completion (POST /v1/chat/completions); ${price.input_usd:g} / "
            f"${price.output_usd:g} per 1M input / output tokens"
        ),
        usage_price=used,
        usage_type="llm",
    )


def llm_entries(
    prices: Mapping[str, TokenPrice] | None = None, *, max_tokens: int = DEFAULT_MAX_TOKENS
) -> list[CatalogEntry]:
    """PiAPI's chat models at PiAPI's prices, with the operator's prices (and extra model names) over them."""
    merged = {**PIAPI_PRICES, **(prices or {})}
    return [chat_entry(model, price, max_tokens=max_tokens) for model, price in merged.items()]


ENTRIES: list[CatalogEntry] = llm_entries()
