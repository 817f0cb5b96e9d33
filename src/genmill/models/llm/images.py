"""Image models of the OpenAI-compatible API: `POST /v1/images/generations` (gpt-image-1, dall-e-3) and
`gpt-4o-image` (alias `gpt-4o-image-preview`), which answers a chat call with the generated image's URL in the
assistant's markdown.

Both are served by an operator's server that speaks OpenAI's Images API (LocalAI and the like), configured per
model name in GENMILL_LLM_MODELS like the chat models. The images it returns (as `b64_json` or a `url` on that
server) are stored here, owned by the call's account with the entry's retention, so clients get this server's
URLs and never the operator's server address.
"""

from __future__ import annotations

import base64
import binascii
from abc import ABC, abstractmethod
from collections.abc import Iterator
from typing import Any

import httpx

from genmill.backends.base import Availability, ServedBy
from genmill.backends.openai_compat import OpenAICompatClient, OpenAICompatTarget
from genmill.errors import BackendError, InputRejected
from genmill.models.llm.chat import ChatBackend, ChatContext, Chunk, ForwardedModel
from genmill.net.media import sniff_content_type

IMAGE_EXTENSIONS = {"image/png": "png", "image/jpeg": "jpg", "image/webp": "webp"}


class ImageBackend(ABC):
    """One image model name and what draws it."""

    def __init__(self, model: str) -> None:
        self.model = model

    @abstractmethod
    def availability(self) -> Availability: ...

    @abstractmethod
    def served_by(self) -> ServedBy: ...

    @abstractmethod
    def generate(self, prompt: str, n: int, options: dict[str, Any]) -> list[tuple[bytes, str]]:
        """`n` images for the prompt, each as (bytes, content type); `options` are the request's other fields
        (size, quality, ...), passed to the model as they are."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections."""


class OpenAICompatImages(ForwardedModel, ImageBackend):
    """Forwards an image model name to the operator's server of OpenAI's Images API."""

    forwarded_limit = "forwarded: the operator's server at {where} receives the prompt and draws the images"

    def __init__(
        self,
        model: str,
        target: OpenAICompatTarget,
        *,
        timeout: float = 600.0,
        transport: httpx.BaseTransport | None = None,
        stand_in: bool | None = None,
    ) -> None:
        super().__init__(model)
        self.forward_to(target, timeout, transport, stand_in)

    def generate(self, prompt: str, n: int, options: dict[str, Any]) -> list[tuple[bytes, str]]:
        answer = self.client.generate_images({**options, "prompt": prompt, "n": n, "response_format": "b64_json"})
        images: list[tuple[bytes, str]] = []
        for item in answer["data"][:n]:
            data = _image_bytes(item, self.client)
            content_type = sniff_content_type(data)
            if content_type is None or content_type not in IMAGE_EXTENSIONS:
                raise BackendError(
                    "the image model server answered with something that is not a PNG, JPEG or WebP image",
                    raw_message=f"content type {content_type or 'unknown'}",
                )
            images.append((data, content_type))
        if len(images) < n:
            raise BackendError(f"the image model server drew {len(images)} of the {n} images asked for")
        return images

    def close(self) -> None:
        self.client.close()


def _image_bytes(item: Any, client: OpenAICompatClient) -> bytes:
    if not isinstance(item, dict):
        raise BackendError("the image model server gave an unreadable image entry", raw_message=str(item)[:300])
    if isinstance(item.get("b64_json"), str):
        try:
            return base64.b64decode(item["b64_json"], validate=True)
        except (binascii.Error, ValueError):
            raise BackendError("the image model server sent an image that is not base64") from None
    if isinstance(item.get("url"), str):
        return client.download(item["url"])[0]
    raise BackendError("the image model server sent neither b64_json nor url", raw_message=str(item)[:300])


class ImageChat(ChatBackend):
    """`gpt-4o-image`: a chat call whose answer is one generated image, as markdown linking to its stored copy.

    The prompt is the text of the last user message (its text parts); the image is drawn by the configured image
    server, stored as the call's output, and the answer streams as `![image](url)`.
    """

    def __init__(self, model: str, images: ImageBackend) -> None:
        super().__init__(model)
        self.images = images

    def availability(self) -> Availability:
        return self.images.availability()

    def served_by(self) -> ServedBy:
        return self.images.served_by()

    def stream(self, request: dict[str, Any], max_tokens: int, ctx: ChatContext) -> Iterator[Chunk]:
        prompt = last_user_text(request.get("messages") or [])
        yield {"choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}]}
        ((data, content_type),) = self.images.generate(prompt, 1, {})
        url = ctx.save_output(data, ext=IMAGE_EXTENSIONS[content_type], content_type=content_type)
        yield {"choices": [{"index": 0, "delta": {"content": f"![image]({url})"}, "finish_reason": None}]}
        yield {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}

    def close(self) -> None:
        self.images.close()


def last_user_text(messages: list[Any]) -> str:
    """The text of the last user message (its text parts joined); InputRejected when there is none."""
    for index in range(len(messages) - 1, -1, -1):
        message = messages[index]
        if not isinstance(message, dict) or message.get("role") != "user":
            continue
        content = message.get("content")
        if isinstance(content, list):
            content = " ".join(
                str(p.get("text") or "") for p in content if isinstance(p, dict) and p.get("type") == "text"
            )
        if isinstance(content, str) and content.strip():
            return content.strip()
        raise InputRejected(f"messages[{index}].content: the image is drawn from this text, and it has none")
    raise InputRejected("messages: an image model needs a user message with the prompt")
