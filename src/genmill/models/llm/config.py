"""GENMILL_LLM_MODELS and GENMILL_LLM_PRICES: which chat model names are answered by what, and at what price.

Both are JSON objects keyed by the public model name, parsed and validated when the server starts (a typo stops
it with the name of the bad item rather than failing calls later):

    GENMILL_LLM_MODELS='{"gpt-4o-mini": {"base_url": "http://127.0.0.1:8000/v1", "model": "qwen2.5-7b-instruct",
                         "api_key": "...", "timeout": 600},
                         "claude-3-5-haiku": {"path": "/models/qwen2.5-0.5b-instruct", "device": "cuda:0"}}'
    GENMILL_LLM_PRICES='{"gpt-4o-mini": {"input": 0.1125, "output": 0.45}, "my-model": {"input": 0, "output": 0}}'

A model entry has either `base_url` (an OpenAI-compatible server; `model` is its name there, the public name by
default) or `path` (a local transformers folder); `stand_in` says whether it is another model than the name says
(by default: a server model of another name, and any local folder). Prices are US dollars per million tokens;
a name that is not PiAPI's becomes a catalog entry of its own.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from genmill.models.llm.catalog import TokenPrice


class ModelSetting(BaseModel):
    model_config = ConfigDict(extra="forbid")

    base_url: str | None = Field(None, min_length=1)
    model: str | None = Field(None, min_length=1)
    api_key: str = ""
    timeout: float = Field(600.0, gt=0)
    path: Path | None = None
    device: str = "cpu"
    stand_in: bool | None = None

    @model_validator(mode="after")
    def _one_source(self) -> ModelSetting:
        if (self.base_url is None) == (self.path is None):
            raise ValueError("give exactly one of base_url (an OpenAI-compatible server) or path (a local model)")
        if self.base_url is not None and not self.base_url.startswith(("http://", "https://")):
            raise ValueError("base_url must be an http:// or https:// URL")
        return self


class PriceSetting(BaseModel):
    """A chat model's `input` and `output` dollars per million tokens, or an image model's `per_image` dollars."""

    model_config = ConfigDict(extra="forbid")

    input: float | None = Field(None, ge=0, le=10_000)
    output: float | None = Field(None, ge=0, le=10_000)
    per_image: float | None = Field(None, ge=0, le=1_000)

    @model_validator(mode="after")
    def _one_kind(self) -> PriceSetting:
        tokens = self.input is not None and self.output is not None
        if tokens == (self.per_image is not None) or (self.input is None) != (self.output is None):
            raise ValueError("give input and output (a chat model, per 1M tokens) or per_image (an image model)")
        return self


def _object(text: str, setting: str) -> dict[str, Any]:
    if not text.strip():
        return {}
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise ValueError(f"{setting}: not valid JSON ({exc})") from None
    if not isinstance(value, dict):
        raise ValueError(f"{setting}: must be a JSON object keyed by model name")
    return value


def _item(model_type: type[BaseModel], name: str, raw: Any, setting: str) -> Any:
    if not name.strip() or len(name) > 256:
        raise ValueError(f"{setting}: {name!r} is not a model name (1 to 256 characters)")
    try:
        return model_type.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ValueError(f"{setting}: {name}{'.' + where if where else ''}: {first['msg']}") from None


def parse_model_settings(text: str) -> dict[str, ModelSetting]:
    """GENMILL_LLM_MODELS as model name → setting; ValueError naming the bad item."""
    return {
        name: _item(ModelSetting, name, raw, "GENMILL_LLM_MODELS")
        for name, raw in _object(text, "GENMILL_LLM_MODELS").items()
    }


def _price_settings(text: str) -> dict[str, PriceSetting]:
    raw = _object(text, "GENMILL_LLM_PRICES")
    return {name: _item(PriceSetting, name, value, "GENMILL_LLM_PRICES") for name, value in raw.items()}


def parse_prices(text: str) -> dict[str, TokenPrice]:
    """The chat models' prices of GENMILL_LLM_PRICES (per 1M tokens); ValueError naming a bad item."""
    return {
        name: TokenPrice(p.input, p.output)
        for name, p in _price_settings(text).items()
        if p.input is not None and p.output is not None
    }


def parse_image_prices(text: str) -> dict[str, float]:
    """The image models' prices of GENMILL_LLM_PRICES (dollars per image); ValueError naming a bad item."""
    return {name: p.per_image for name, p in _price_settings(text).items() if p.per_image is not None}
