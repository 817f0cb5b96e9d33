"""Image models of the OpenAI-compatible API, family `gpts`: `gpt-image-1` through `POST /v1/images/generations`
(task_type "image_generation"), and `gpt-4o-image` / `gpt-4o-image-preview`, which answer a chat call with
the image (task_type "chat"). Priced per image: PiAPI's $0.02 by default, the operator's own per model in
GENMILL_LLM_PRICES (`{"per_image": dollars}`), which may also add image model names of its own.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from pydantic import Field

from genmill.domain.catalog import IMAGE_RETENTION, CatalogEntry, TaskInput, usd
from genmill.models.llm.catalog import TASK_TYPE as CHAT_TASK_TYPE
from genmill.models.llm.catalog import ChatRequest

FAMILY = "gpts"
IMAGE_TASK_TYPE = "image_generation"
IMAGE_CHAT_MODELS = ("gpt-4o-image", "gpt-4o-image-preview")
"""Answer chat calls with one generated image (PiAPI: "stream only"; genmill also answers them unstreamed)."""
PIAPI_IMAGE_PRICES: dict[str, float] = {"gpt-image-1": 0.02, "gpt-4o-image": 0.02, "gpt-4o-image-preview": 0.02}
"""US dollars per image: PiAPI's $0.02 for gpt-4o-image; the same for gpt-image-1, whose own figure is not
published on PiAPI's pages."""
MAX_IMAGES = 4


class ImageRequest(TaskInput):
    """OpenAI's Images API body. Fields not declared here (quality, style, background, ...) are kept and passed
    to the model's server as they are."""

    model: str = Field(..., min_length=1, max_length=256)
    prompt: str = Field(..., min_length=1, max_length=32_000)
    n: int = Field(1, ge=1, le=MAX_IMAGES)
    size: str | None = Field(None, pattern=r"^(auto|\d{2,4}x\d{2,4})$", description="`auto` or WIDTHxHEIGHT.")
    response_format: Literal["url", "b64_json"] = "url"


def image_entry(model: str, dollars: float) -> CatalogEntry:
    """An Images API model at `dollars` per image."""
    per_image = usd(dollars)

    def price(inputs: Any) -> int:
        assert isinstance(inputs, ImageRequest)
        return per_image * inputs.n

    return CatalogEntry(
        model=model,
        task_type=IMAGE_TASK_TYPE,
        input_model=ImageRequest,
        price=price,
        family=FAMILY,
        retention=IMAGE_RETENTION,
        description=f"OpenAI Images API (POST /v1/images/generations); ${dollars:g} per image",
        usage_type="llm",
    )


def image_chat_entry(model: str, dollars: float) -> CatalogEntry:
    """A chat model whose answer is one generated image, at `dollars` per call."""
    per_image = usd(dollars)

    def price(inputs: Any) -> int:
        return per_image

    return CatalogEntry(
        model=model,
        task_type=CHAT_TASK_TYPE,
        input_model=ChatRequest,
        price=price,
        family=FAMILY,
        retention=IMAGE_RETENTION,
        description=f"An image in a chat answer (POST /v1/chat/completions); ${dollars:g} per image",
        usage_type="llm",
    )


def image_entries(prices: Mapping[str, float] | None = None) -> list[CatalogEntry]:
    """PiAPI's image models at PiAPI's prices, with the operator's per-image prices (and extra names) over them."""
    merged = {**PIAPI_IMAGE_PRICES, **(prices or {})}
    return [
        image_chat_entry(model, dollars) if model in IMAGE_CHAT_MODELS else image_entry(model, dollars)
        for model, dollars in merged.items()
    ]


ENTRIES: list[CatalogEntry] = image_entries()
