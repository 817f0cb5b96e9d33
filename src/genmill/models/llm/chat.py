"""What answers a chat model name: the backend interface, and the one that forwards to an OpenAI-compatible server.

A chat backend streams OpenAI `chat.completion.chunk`-shaped dicts (`choices[0].delta`, `finish_reason`, and a
last chunk with `usage` when it knows it); the engine gives them the task's id and the public model name, keeps
the task's lease, accumulates the answer and settles the task. A backend is configured for one public model name
(GENMILL_LLM_MODELS), so the model named is the model run: `served_by` says which server or weights answer it.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from typing import Any, ClassVar, Protocol

import httpx

from genmill.backends.base import Availability, ServedBy
from genmill.backends.openai_compat import OpenAICompatClient, OpenAICompatTarget
from genmill.net.media import is_http_url

Chunk = dict[str, Any]


class ChatContext(Protocol):
    """What a running chat backend may ask of the call it answers (implemented by `genmill.engine.chat`)."""

    def cancelled(self) -> bool:
        """True once the client left or the call's lease was lost: stop generating."""

    def save_output(self, data: bytes, *, ext: str, content_type: str) -> str:
        """Store a generated file as the call's output (its account, its retention); returns its URL."""


class ChatBackend(ABC):
    """One public chat model name and what answers it."""

    def __init__(self, model: str) -> None:
        self.model = model

    @abstractmethod
    def availability(self) -> Availability:
        """Whether it can answer here; cheap, never loads a model or contacts a server."""

    @abstractmethod
    def served_by(self) -> ServedBy:
        """What really answers `model`, said before anyone pays (`GET /v1/models`, the task's `detail`)."""

    @abstractmethod
    def stream(self, request: dict[str, Any], max_tokens: int, ctx: ChatContext) -> Iterator[Chunk]:
        """Generate the answer to the validated request as chunks, at most `max_tokens` completion tokens.

        Runs in a thread of the API process; stops early when `ctx.cancelled()` turns true (the client left) or
        when the iterator is closed. Raises `genmill.errors.BackendError` with a clear message when it cannot answer."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections or the loaded model (at shutdown)."""


FORWARDED_LIMIT = "forwarded: the operator's server at {where} receives the messages and generates the answer"


class ForwardedModel:
    """A public model name answered by the operator's OpenAI-compatible server: the chat and the image backends
    that forward share how they are set up, when they can answer and how they say who really answers."""

    model: str
    forwarded_limit: ClassVar[str]
    """What the operator's server receives and does, with `{where}` for its address (for `served_by`)."""

    def forward_to(
        self, target: OpenAICompatTarget, timeout: float, transport: httpx.BaseTransport | None, stand_in: bool | None
    ) -> None:
        """`stand_in` says whether the server's model is another model than the public name; by default it is
        when the server knows it by another name."""
        self.target = target
        self.stand_in = target.upstream_model != self.model if stand_in is None else stand_in
        self.client = OpenAICompatClient(target, timeout=timeout, transport=transport)

    def availability(self) -> Availability:
        if not is_http_url(self.target.base_url):
            return Availability(False, f"{self.model}: base_url must be an http(s) URL (got {self.target.base_url!r})")
        return Availability(True)

    def served_by(self) -> ServedBy:
        where = self.target.public_address
        return ServedBy(
            f"{self.target.upstream_model} at {where}",
            stand_in=self.stand_in,
            limits=(self.forwarded_limit.format(where=where),),
        )


class OpenAICompatChat(ForwardedModel, ChatBackend):
    """Forwards a model name to the operator's OpenAI-compatible server (vLLM, Ollama, llama.cpp, LocalAI),
    relaying its stream chunk by chunk and asking it for the usage that bills the call."""

    forwarded_limit = FORWARDED_LIMIT

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

    def stream(self, request: dict[str, Any], max_tokens: int, ctx: ChatContext) -> Iterator[Chunk]:
        body = {k: v for k, v in request.items() if k not in ("max_completion_tokens", "stream_options")}
        body["max_tokens"] = max_tokens
        body["stream_options"] = {"include_usage": True}
        chunks = self.client.stream_chat(body)
        try:
            for chunk in chunks:
                yield chunk
                if ctx.cancelled():
                    return
        finally:
            chunks.close()  # type: ignore[attr-defined]

    def close(self) -> None:
        self.client.close()
