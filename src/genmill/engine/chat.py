"""Chat completions as tasks the API process runs itself (`engine/inline.py`), while the client waits for the
answer or its stream.

The create freezes the call's cap; the answer completes the task with its `usage`. A client that leaves mid-stream
stops the generation; the task completes with what was generated, billed for the tokens used so far (like the
hosted API), and `finish_reason` "disconnected" in its stored output.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from genmill.backends.base import ServedBy
from genmill.domain.catalog import CatalogEntry
from genmill.domain.records import Account, Claim
from genmill.engine.inline import InlineTasks, LeaseKeeper, invalid
from genmill.errors import NotFound

CHAT_TASK_TYPE = "chat"
CHAT_FAMILIES = ("llm", "gpts")
"""Chat models (`llm`) and the image model that answers in chat (`gpts`: gpt-4o-image)."""


class ChatModel(Protocol):
    """What answers one chat model name (`genmill.models.llm.chat.ChatBackend` and its kin)."""

    model: str

    def served_by(self) -> ServedBy: ...

    def stream(self, request: dict[str, Any], max_tokens: int, ctx: Any) -> Iterator[dict[str, Any]]: ...


@dataclass
class Answer:
    """The answer accumulated from the chunks, as the task stores it and the non-streamed call returns it."""

    text: list[str] = field(default_factory=list)
    role: str = "assistant"
    finish_reason: str | None = None
    usage: dict[str, int] | None = None
    pieces: int = 0
    tool_calls: dict[int, dict[str, Any]] = field(default_factory=dict)
    """Tool calls by their index, their `function.name` and `function.arguments` joined from the deltas."""

    def add(self, chunk: dict[str, Any]) -> None:
        for choice in chunk.get("choices") or ():
            delta = choice.get("delta") or {}
            if isinstance(delta.get("role"), str):
                self.role = delta["role"]
            content = delta.get("content")
            if isinstance(content, str) and content:
                self.text.append(content)
                self.pieces += 1
            for call in delta.get("tool_calls") or ():
                if isinstance(call, dict):
                    self._add_tool_call(call)
            if choice.get("finish_reason"):
                self.finish_reason = str(choice["finish_reason"])
        usage = chunk.get("usage")
        if isinstance(usage, dict) and isinstance(usage.get("completion_tokens"), int):
            self.usage = {
                k: int(usage[k]) for k in ("prompt_tokens", "completion_tokens", "total_tokens") if k in usage
            }

    def _add_tool_call(self, call: dict[str, Any]) -> None:
        held = self.tool_calls.setdefault(
            int(call.get("index") or 0), {"id": "", "type": "function", "function": {"name": "", "arguments": ""}}
        )
        for key in ("id", "type"):
            if isinstance(call.get(key), str) and call[key]:
                held[key] = call[key]
        function: dict[str, Any] = call["function"] if isinstance(call.get("function"), dict) else {}
        for key in ("name", "arguments"):
            if isinstance(function.get(key), str):
                held["function"][key] += function[key]
        self.pieces += 1

    def message(self) -> dict[str, Any]:
        """The assistant message: its text (null beside tool calls when there is none) and its tool calls."""
        text = "".join(self.text)
        message: dict[str, Any] = {
            "role": self.role,
            "content": text or (None if self.tool_calls else ""),
            "refusal": None,
        }
        if self.tool_calls:
            message["tool_calls"] = [self.tool_calls[index] for index in sorted(self.tool_calls)]
        return message

    def settled_usage(self, prompt_bound: int, max_tokens: int) -> dict[str, int]:
        """The server's usage; when it gave none, the cap's prompt bound and one token per streamed piece."""
        prompt, completion = (
            (prompt_bound, self.pieces)
            if self.usage is None
            else (
                self.usage.get("prompt_tokens", prompt_bound),
                self.usage.get("completion_tokens", self.pieces),
            )
        )
        completion = min(completion, max_tokens)
        return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


class ChatEngine:
    """Creates, runs and settles chat-completion tasks for the OpenAI-compatible API."""

    def __init__(
        self,
        inline: InlineTasks,
        models: Mapping[str, ChatModel],
        *,
        max_tokens: int,
        prompt_bound: Callable[[Any], int],
        unavailable: Mapping[str, str] | None = None,
    ) -> None:
        """`models` are the configured, available chat backends by public name; `prompt_bound` counts a validated
        request's prompt tokens from above (the catalog's own count, so the cap and the fallback usage agree);
        `unavailable` says why each configured model left out of `models` cannot answer."""
        self.inline = inline
        self.models = dict(models)
        self.max_tokens = max_tokens
        self.prompt_bound = prompt_bound
        self.unavailable = dict(unavailable or {})

    def listed(self) -> list[tuple[str, ServedBy]]:
        """Every chat model a call may name here, with what answers it."""
        return sorted((name, model.served_by()) for name, model in self.models.items())

    def entry(self, name: object) -> tuple[CatalogEntry, ChatModel]:
        if not isinstance(name, str) or not name:
            raise invalid("required: the model to answer (GET /v1/models lists them)", "model")
        entry = self.inline.catalog.get(name, CHAT_TASK_TYPE)
        model = self.models.get(name)
        if entry is None or entry.family not in CHAT_FAMILIES or model is None:
            served = ", ".join(sorted(self.models)) or "none"
            why = (
                "is not a chat model"
                if entry is None
                else f"is not served: {self.unavailable[name]}"
                if name in self.unavailable
                else "has no language model configured (GENMILL_LLM_MODELS)"
            )
            raise NotFound(f"model: {name!r} {why} here; served: {served}", detail={"param": "model"})
        return entry, model

    def start(self, account: Account, body: Mapping[str, Any]) -> ChatRun:
        """Validate, freeze the cap and lease the task; nothing has been generated yet."""
        entry, model = self.entry(body.get("model"))
        inputs = self.inline.validate(entry, dict(body))
        claim = self.inline.open(account, entry, inputs)
        max_tokens = int(getattr(inputs, "output_cap")(self.max_tokens))  # noqa: B009 - ChatRequest's method
        stored = inputs.model_dump(mode="json", exclude_none=True)
        return ChatRun(self.inline, claim, model, stored, max_tokens, self.prompt_bound(inputs))


class CallContext:
    """What the chat backend answering a call may do: see that the call is over, store a generated file."""

    def __init__(self, run: ChatRun, keeper: LeaseKeeper) -> None:
        self.run = run
        self.keeper = keeper

    def cancelled(self) -> bool:
        return self.run.left.is_set() or self.keeper.lost.is_set()

    def save_output(self, data: bytes, *, ext: str, content_type: str) -> str:
        return self.run.inline.save_output(self.run.claim.task, data, ext=ext, content_type=content_type)


class ChatRun:
    """One leased chat task: its chunks as the client sees them, then its settlement (exactly once)."""

    def __init__(
        self,
        inline: InlineTasks,
        claim: Claim,
        model: ChatModel,
        request: dict[str, Any],
        max_tokens: int,
        prompt_bound: int,
    ) -> None:
        self.inline = inline
        self.claim = claim
        self.model = model
        self.request = request
        self.max_tokens = max_tokens
        self.prompt_bound = prompt_bound
        self.task_id = claim.task.task_id
        self.completion_id = f"chatcmpl-{self.task_id}"
        self.created = int(claim.task.created_at.timestamp())
        self.public_model = claim.task.model
        self.answer = Answer()
        self.served_by = model.served_by()
        self.left = threading.Event()
        self._chunks: Iterator[dict[str, Any]] | None = None
        self._started = False
        self._settled = False

    @property
    def include_usage(self) -> bool:
        options = self.request.get("stream_options")
        return isinstance(options, dict) and bool(options.get("include_usage"))

    def chunks(self) -> Iterator[dict[str, Any]]:
        """The answer as `chat.completion.chunk` objects (the usage chunk last, when asked for); settles the task
        when the stream ends, fails or is closed. Iterate it in a thread: model work blocks."""
        if self._chunks is None:
            self._chunks = self._generate()
        return self._chunks

    def close(self) -> None:
        """The client left: stop generating and settle with what was made (no-op once settled)."""
        self.left.set()
        if self._started and self._chunks is not None:
            self._chunks.close()  # type: ignore[attr-defined]
        self._settle(disconnected=True, error=None)

    def completion(self) -> dict[str, Any]:
        """The whole answer as one `chat.completion` (the non-streamed call)."""
        for _ in self.chunks():
            pass
        return self._output(self.answer.settled_usage(self.prompt_bound, self.max_tokens))

    def _generate(self) -> Iterator[dict[str, Any]]:
        self._started = True
        keeper = self.inline.keep(self.claim)

        produced = self.model.stream(self.request, self.max_tokens, CallContext(self, keeper))
        try:
            for raw in produced:
                self.answer.add(raw)
                chunk = self._public_chunk(raw)
                if chunk is not None:
                    yield chunk
            self._settle(disconnected=False, error=None)
            if self.include_usage:
                usage = self.answer.settled_usage(self.prompt_bound, self.max_tokens)
                yield {**self._chunk_head(), "choices": [], "usage": usage}
        except GeneratorExit:
            self._settle(disconnected=True, error=None)
            raise
        except Exception as exc:
            self._settle(disconnected=False, error=exc)
            raise
        finally:
            left_open = getattr(produced, "close", None)
            if left_open is not None:
                left_open()  # the backend's own cleanup now (its HTTP stream, its generation thread)
            keeper.stop()

    def _chunk_head(self) -> dict[str, Any]:
        return {
            "id": self.completion_id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.public_model,
            "system_fingerprint": None,
        }

    def _public_chunk(self, raw: dict[str, Any]) -> dict[str, Any] | None:
        """The backend's chunk under this task's id and the public model name; usage-only chunks are held back
        (the settled usage goes out last, when the client asked for it)."""
        choices = raw.get("choices")
        if not isinstance(choices, list) or not choices:
            return None
        public = []
        for choice in choices:
            delta = choice.get("delta") if isinstance(choice.get("delta"), dict) else {}
            public.append(
                {
                    "index": int(choice.get("index") or 0),
                    "delta": delta,
                    "logprobs": choice.get("logprobs"),
                    "finish_reason": choice.get("finish_reason"),
                }
            )
        return {**self._chunk_head(), "choices": public}

    def _output(self, usage: dict[str, int], finish_reason: str | None = None) -> dict[str, Any]:
        return {
            "id": self.completion_id,
            "object": "chat.completion",
            "created": self.created,
            "model": self.public_model,
            "choices": [
                {
                    "index": 0,
                    "message": self.answer.message(),
                    "logprobs": None,
                    "finish_reason": finish_reason or self.answer.finish_reason or "stop",
                }
            ],
            "usage": usage,
            "system_fingerprint": None,
        }

    def _settle(self, *, disconnected: bool, error: BaseException | None) -> None:
        """Complete (the answer and its usage) or fail (credits released) the task, once, under its lease."""
        if self._settled:
            return
        self._settled = True
        if error is not None:
            self.inline.fail(self.claim, error, served=self.served_by)
            return
        usage = self.answer.settled_usage(self.prompt_bound, self.max_tokens)
        output = self._output(usage, "disconnected" if disconnected else None)
        logs = ["the client disconnected before the answer ended"] if disconnected else []
        self.inline.complete(self.claim, output, served=self.served_by, logs=logs)
