"""A chat model name answered by a transformers causal language model loaded from a local folder.

The folder is what `save_pretrained` writes (config, weights, tokenizer with a chat template); it is loaded once,
on first use, with `from_pretrained`. The prompt is the tokenizer's chat template over the messages; `generate`
runs in its own thread and a `TextIteratorStreamer` hands the text to the caller piece by piece, so the client
sees tokens as they are made. A stopping criterion watches for the client leaving, so a closed stream stops the
generation rather than burning the device. Token counts are the tokenizer's own, so `usage` is exact.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from genmill.backends.base import Availability, ServedBy
from genmill.errors import BackendError, InputRejected
from genmill.models.llm.chat import ChatBackend, ChatContext, Chunk

GENERATION_FIELDS = ("temperature", "top_p", "seed")


class TransformersChat(ChatBackend):
    """Serves one model name from a local transformers checkpoint; one generation at a time per backend."""

    def __init__(self, model: str, path: Path, *, device: str = "cpu", stand_in: bool = True) -> None:
        """`stand_in` is True unless the operator declared these weights to be the model the name says."""
        super().__init__(model)
        self.path = path
        self.device = device
        self.stand_in = stand_in
        self._lock = threading.Lock()
        self._loaded: tuple[Any, Any] | None = None

    def availability(self) -> Availability:
        try:
            import transformers  # noqa: F401
        except ImportError:
            return Availability(False, f"{self.model}: the transformers package is not installed")
        if not (self.path / "config.json").is_file():
            return Availability(False, f"{self.model}: no model at {self.path} (config.json is missing)")
        return Availability(True)

    def served_by(self) -> ServedBy:
        return ServedBy(
            f"transformers: {self.path.name}", stand_in=self.stand_in, limits=("one choice; no tool calls",)
        )

    def load(self) -> tuple[Any, Any]:
        """The tokenizer and model, loaded once (idempotent, thread-safe)."""
        with self._lock:
            if self._loaded is None:
                import transformers

                # Any-typed handles: these loaders are untyped, which strict mypy refuses to call.
                tokenizer_class: Any = transformers.AutoTokenizer
                model_class: Any = transformers.AutoModelForCausalLM
                try:
                    tokenizer = tokenizer_class.from_pretrained(str(self.path))
                    model = model_class.from_pretrained(str(self.path))
                except (OSError, ValueError, KeyError) as exc:
                    raise BackendError(
                        f"{self.model}: the model at {self.path} could not be loaded", raw_message=str(exc)
                    ) from exc
                self._loaded = (tokenizer, model.to(self.device).eval())
            return self._loaded

    def close(self) -> None:
        with self._lock:
            self._loaded = None

    def stream(self, request: dict[str, Any], max_tokens: int, ctx: ChatContext) -> Iterator[Chunk]:
        import torch
        from transformers import StoppingCriteria, StoppingCriteriaList, TextIteratorStreamer

        tokenizer, model = self.load()
        messages = [_plain_message(i, m) for i, m in enumerate(request["messages"])]
        try:
            prompt = tokenizer.apply_chat_template(
                messages, add_generation_prompt=True, tokenize=True, return_dict=True
            )
        except (ValueError, TypeError) as exc:
            raise BackendError(
                f"{self.model}: the chat template could not format the messages", raw_message=str(exc)
            ) from None
        input_ids = torch.tensor([prompt["input_ids"]], device=self.device)
        prompt_tokens = int(input_ids.shape[1])
        streamer = TextIteratorStreamer(tokenizer, skip_prompt=True, skip_special_tokens=True, timeout=600.0)
        stop = threading.Event()

        class _Stop(StoppingCriteria):
            def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> bool:
                return stop.is_set() or ctx.cancelled()

        sampling = request.get("temperature") not in (None, 0, 0.0)
        options: dict[str, Any] = {"do_sample": sampling, "max_new_tokens": max_tokens}
        if sampling:
            options["temperature"] = float(request["temperature"])
            if request.get("top_p") is not None:
                options["top_p"] = float(request["top_p"])
        if request.get("seed") is not None:
            torch.manual_seed(int(request["seed"]))
        generated: list[Any] = []
        failure: list[BaseException] = []

        def generate() -> None:
            try:
                with torch.inference_mode():
                    out = model.generate(
                        input_ids,
                        attention_mask=torch.ones_like(input_ids),
                        streamer=streamer,
                        stopping_criteria=StoppingCriteriaList([_Stop()]),
                        pad_token_id=tokenizer.pad_token_id or tokenizer.eos_token_id,
                        **options,
                    )
                generated.append(out)
            except BaseException as exc:  # reported to the caller's thread below
                failure.append(exc)
                streamer.end()

        worker = threading.Thread(target=generate, name=f"generate-{self.model}", daemon=True)
        worker.start()
        try:
            yield {"choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}]}
            for text in streamer:
                if text:
                    yield {"choices": [{"index": 0, "delta": {"content": text}, "finish_reason": None}]}
            worker.join()
        finally:
            stop.set()
        if failure:
            raise BackendError(f"{self.model}: generation failed", raw_message=repr(failure[0])[:500])
        completion_tokens = int(generated[0].shape[1]) - prompt_tokens if generated else 0
        finish = "length" if completion_tokens >= max_tokens else "stop"
        yield {"choices": [{"index": 0, "delta": {}, "finish_reason": finish}]}
        yield {
            "choices": [],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            },
        }


def _plain_message(index: int, message: dict[str, Any]) -> dict[str, str]:
    """A message as a chat template takes it: role and text; image parts cannot be read by a text model."""
    content = message.get("content")
    if isinstance(content, list):
        texts = []
        for part in content:
            if part.get("type") != "text":
                raise InputRejected(f"messages[{index}].content: this model reads text parts only")
            texts.append(str(part.get("text") or ""))
        content = "".join(texts)
    return {"role": str(message["role"]), "content": content or ""}
