"""The MCP server's one way to reach genmill: its HTTP API, with the operator's key.

Every call the tools make goes through `GenmillConnection`, so the server never touches the store, the engine or
a backend: it runs on any machine that can reach a genmill server (or PiAPI-compatible one) and nothing else.
`ClientGenmillConnection` speaks the API through genmill's SDK (`genmill.client`).
Failures become `GenmillAPIError` carrying genmill's own message, which the tools hand to the agent unchanged.
"""

from __future__ import annotations

from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

import httpx

from genmill.client import APIError, AsyncClient, ConnectionFailed, GenmillClientError, core

DEFAULT_TIMEOUT_SECONDS = 30.0
T = TypeVar("T")


class GenmillAPIError(Exception):
    """A genmill answer that is not a success, or a server that cannot be reached; `message` is for people."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


@dataclass(frozen=True)
class Download:
    """The first bytes of a file (at most the limit asked for) and what the server said it is."""

    data: bytes
    content_type: str
    complete: bool
    """False when the file is larger than the limit: `data` is then empty and only the type is known."""


class GenmillConnection(Protocol):
    """What the MCP tools need from a genmill server."""

    base_url: str

    async def models(self) -> list[dict[str, Any]]: ...

    async def create_task(self, model: str, task_type: str, inputs: dict[str, Any]) -> dict[str, Any]: ...

    async def task(self, task_id: str) -> dict[str, Any]: ...

    async def cancel_task(self, task_id: str) -> dict[str, Any]: ...

    async def account(self) -> dict[str, Any]: ...

    async def download(self, url: str, max_bytes: int) -> Download: ...

    async def aclose(self) -> None: ...


class ClientGenmillConnection:
    """`GenmillConnection` on the SDK's `genmill.client.AsyncClient` (retries, envelopes, typed errors).

    The SDK has no call yet for the catalog or for reading a file into memory up to a limit, so those two go
    through a plain httpx client here, read with the SDK's own envelope parser. The key goes only to the server's
    own origin: a file URL on another host (an S3 bucket, a CDN) is fetched without it, so a task's output can
    never lead the key elsewhere.
    """

    def __init__(
        self, base_url: str, api_key: str, *, timeout: float = DEFAULT_TIMEOUT_SECONDS, max_retries: int = 3
    ) -> None:
        self._client = AsyncClient(base_url, api_key, timeout=timeout, max_retries=max_retries)
        self.base_url = self._client.base_url
        self._key = api_key
        self._http = httpx.AsyncClient(timeout=timeout)

    async def aclose(self) -> None:
        await self._client.close()
        await self._http.aclose()

    async def models(self) -> list[dict[str, Any]]:
        async def call() -> Any:
            response = await self._http.get(f"{self.base_url}/api/v1/models", headers={"X-API-Key": self._key})
            return core.parse_answer(response.status_code, response.headers, response.content)

        data = await _translated(call())
        return list(data["models"])

    async def create_task(self, model: str, task_type: str, inputs: dict[str, Any]) -> dict[str, Any]:
        return (await _translated(self._client.create(model, task_type, inputs))).raw

    async def task(self, task_id: str) -> dict[str, Any]:
        return (await _translated(self._client.get(_path_segment(task_id)))).raw

    async def cancel_task(self, task_id: str) -> dict[str, Any]:
        return (await _translated(self._client.cancel(_path_segment(task_id)))).raw

    async def account(self) -> dict[str, Any]:
        return (await _translated(self._client.account())).raw

    async def download(self, url: str, max_bytes: int) -> Download:
        headers = {"X-API-Key": self._key} if core.same_origin(url, self.base_url) else {}
        try:
            async with self._http.stream("GET", url, headers=headers) as response:
                if response.status_code != 200:
                    raise GenmillAPIError(f"{url} answered HTTP {response.status_code}", response.status_code)
                content_type = response.headers.get("content-type", "").split(";")[0].strip()
                declared = response.headers.get("content-length")
                if declared is not None and declared.isdigit() and int(declared) > max_bytes:
                    return Download(b"", content_type, complete=False)
                chunks: list[bytes] = []
                size = 0
                async for chunk in response.aiter_bytes():
                    size += len(chunk)
                    if size > max_bytes:
                        return Download(b"", content_type, complete=False)
                    chunks.append(chunk)
                return Download(b"".join(chunks), content_type, complete=True)
        except httpx.HTTPError as exc:
            raise GenmillAPIError(f"cannot fetch {url}: {exc}") from exc


async def _translated(call: Awaitable[T]) -> T:
    """The SDK's errors as `GenmillAPIError` with genmill's own message (`invalid API key`, `input.scale: ...`)."""
    try:
        return await call
    except APIError as exc:
        raise GenmillAPIError(exc.message or str(exc), exc.status) from exc
    except ConnectionFailed as exc:
        raise GenmillAPIError(f"cannot reach the genmill server: {exc}") from exc
    except GenmillClientError as exc:
        raise GenmillAPIError(str(exc)) from exc
    except httpx.HTTPError as exc:
        raise GenmillAPIError(f"cannot reach the genmill server: {exc}") from exc


def _path_segment(task_id: str) -> str:
    """A task id as one path segment: an id with '/' or '?' would otherwise address another endpoint."""
    if not task_id or any(c in task_id for c in "/?#%\\") or task_id in {".", ".."}:
        raise GenmillAPIError(f"task_id: {task_id!r} is not a task id")
    return task_id
