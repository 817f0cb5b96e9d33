"""A small client for OpenAI-compatible servers the operator runs (vLLM, Ollama, llama.cpp server, LocalAI).

Families that need a language model (the OpenAI-compatible chat API, Udio's lyrics) call the operator's own
server through this one client rather than each speaking HTTP themselves: the request is OpenAI's chat body, the
answer a `chat.completion` object, or with `stream: true` the `chat.completion.chunk` objects of its server-sent
events up to `data: [DONE]`. Every failure (unreachable, an HTTP error, an unreadable answer) becomes a
`BackendError` carrying the upstream's own words, so the task fails with a clear message and its credits are
released. The operator chooses the server, so no address policy applies here (a LAN or 127.0.0.1 is normal).
Servers that also speak OpenAI's Images API (LocalAI) answer `generate_images`.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx

from genmill.errors import BackendError


@dataclass(frozen=True)
class OpenAICompatTarget:
    """Where one model name is served: the server's base URL (ending in `/v1` or not), its key, and the model
    name that server knows it by (often different from the public name, e.g. `qwen2.5:7b` for `gpt-4o-mini`)."""

    base_url: str
    upstream_model: str
    api_key: str = ""

    @property
    def endpoint_base(self) -> str:
        """The base under which `/chat/completions` lives: `/v1` is added when the operator left it out."""
        url = httpx.URL(self.base_url.strip())
        path = url.path.rstrip("/")
        return str(url.copy_with(path=path if path.endswith("/v1") else path + "/v1"))

    @property
    def public_address(self) -> str:
        """The server's address without credentials or query, for `served_by` and logs."""
        url = httpx.URL(self.endpoint_base)
        port = f":{url.port}" if url.port else ""
        return f"{url.scheme}://{url.host}{port}{url.path}"


class OpenAICompatClient:
    """Calls `/chat/completions` on one OpenAI-compatible server, plainly or streamed.

    `transport` replaces the HTTP transport (tests); `timeout` bounds connecting and each read, so a server that
    stops sending is abandoned rather than holding a task forever.
    """

    def __init__(
        self, target: OpenAICompatTarget, *, timeout: float = 600.0, transport: httpx.BaseTransport | None = None
    ) -> None:
        if timeout <= 0:
            raise ValueError("timeout must be positive")
        self.target = target
        headers = {"Authorization": f"Bearer {target.api_key}"} if target.api_key else {}
        self._client = httpx.Client(
            base_url=target.endpoint_base, headers=headers, timeout=timeout, transport=transport, trust_env=False
        )

    def close(self) -> None:
        self._client.close()

    def _body(self, body: dict[str, Any], *, stream: bool) -> dict[str, Any]:
        """The request as the upstream must see it: its own model name, and the stream flag set explicitly."""
        sent = {**body, "model": self.target.upstream_model, "stream": stream}
        if not stream:
            sent.pop("stream_options", None)
        return sent

    def _post(self, path: str, body: dict[str, Any], *, listed: str, server: str) -> dict[str, Any]:
        """POST `body` and return the JSON object answered, which must hold a list under `listed`; every failure
        is a `BackendError` naming the `server` ("language model", "image model") in the user's words."""
        try:
            response = self._client.post(path, json=body)
        except httpx.HTTPError as exc:
            raise _unreachable(self.target, exc) from None
        if response.status_code >= 400:
            raise _refused(self.target, response.status_code, response.text)
        try:
            answer = response.json()
        except ValueError:
            answer = None
        if not isinstance(answer, dict) or not isinstance(answer.get(listed), list):
            raise BackendError(
                f"the {server} server gave an unreadable answer",
                raw_message=f"HTTP {response.status_code}: {response.text[:300]}",
            )
        return answer

    def chat(self, body: dict[str, Any]) -> dict[str, Any]:
        """One non-streamed completion: the upstream's `chat.completion` object."""
        return self._post(
            "/chat/completions", self._body(body, stream=False), listed="choices", server="language model"
        )

    def stream_chat(self, body: dict[str, Any]) -> Iterator[dict[str, Any]]:
        """The upstream's `chat.completion.chunk` objects as they arrive; ends at `data: [DONE]` (or when the
        server closes the stream). Closing the iterator early closes the connection, which stops the upstream's
        generation on servers that notice (vLLM, llama.cpp)."""
        try:
            with self._client.stream("POST", "/chat/completions", json=self._body(body, stream=True)) as response:
                if response.status_code >= 400:
                    response.read()
                    raise _refused(self.target, response.status_code, response.text)
                yield from _sse_objects(response.iter_lines())
        except httpx.HTTPError as exc:
            raise _unreachable(self.target, exc) from None

    def generate_images(self, body: dict[str, Any]) -> dict[str, Any]:
        """One `POST /images/generations` (LocalAI, and other servers of OpenAI's Images API): its answer,
        `{created, data: [{b64_json | url}]}`."""
        sent = {**body, "model": self.target.upstream_model}
        return self._post("/images/generations", sent, listed="data", server="image model")

    def download(self, url: str, *, max_bytes: int = 64 * 1024 * 1024) -> tuple[bytes, str]:
        """A file the operator's server links to in its answer (an image's `url`), with its content type."""
        try:
            with self._client.stream("GET", url) as response:
                if response.status_code >= 400:
                    raise BackendError(f"could not download {url}: HTTP {response.status_code}")
                data = b""
                for piece in response.iter_bytes():
                    data += piece
                    if len(data) > max_bytes:
                        raise BackendError(f"the file at {url} is larger than {max_bytes} bytes")
                return data, response.headers.get("content-type", "")
        except httpx.HTTPError as exc:
            raise _unreachable(self.target, exc) from None


def message_text(completion: dict[str, Any]) -> str:
    """The first choice's assistant text of a `chat.completion` ("" when there is none)."""
    choices = completion.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        return ""
    message = choices[0].get("message")
    content = message.get("content") if isinstance(message, dict) else None
    return content if isinstance(content, str) else ""


def _sse_objects(lines: Iterator[str]) -> Iterator[dict[str, Any]]:
    """Parse server-sent events: `data:` lines joined per event, a blank line ends an event, `[DONE]` the
    stream; comments (`:`) and other fields are skipped. An event that is not a JSON object is an error."""
    data: list[str] = []
    for line in lines:
        if line.startswith("data:"):
            data.append(line[5:].removeprefix(" "))
            continue
        if line.strip() or not data:
            continue
        payload = "\n".join(data)
        data = []
        if payload.strip() == "[DONE]":
            return
        yield _chunk(payload)
    if data and "\n".join(data).strip() != "[DONE]":
        yield _chunk("\n".join(data))


def _chunk(payload: str) -> dict[str, Any]:
    try:
        value = json.loads(payload)
    except ValueError:
        value = None
    if not isinstance(value, dict):
        raise BackendError("the language model server sent an unreadable stream event", raw_message=payload[:300])
    if isinstance(value.get("error"), dict):
        message = str(value["error"].get("message") or "no reason given")
        raise BackendError(f"the language model server failed: {message}", raw_message=message)
    return value


def _unreachable(target: OpenAICompatTarget, exc: httpx.HTTPError) -> BackendError:
    reason = f"{type(exc).__name__}: {exc}".strip()
    return BackendError(f"could not reach the language model server at {target.public_address}", raw_message=reason)


def _refused(target: OpenAICompatTarget, status: int, text: str) -> BackendError:
    """The upstream's HTTP error, with its OpenAI-style `error.message` when it sent one."""
    message = text[:300]
    try:
        parsed = json.loads(text)
    except ValueError:
        parsed = None
    if isinstance(parsed, dict):
        error = parsed.get("error")
        if isinstance(error, dict) and error.get("message"):
            message = str(error["message"])
        elif isinstance(error, str):
            message = error
    return BackendError(
        f"the language model server at {target.public_address} refused the request (HTTP {status}): {message}",
        raw_message=message or f"HTTP {status}",
    )
