"""The MCP server's one way to reach genmill: its HTTP API, with the operator's key.

Every call the tools make goes through `GenmillConnection`, so the server never touches the store, the engine or
a backend: it runs on any machine that can reach a genmill server (or PiAPI-compatible one) and nothing else.
`HttpGenmillConnection` speaks the API with httpx; the protocol keeps it swappable for another client.
Failures become `GenmillAPIError` carrying genmill's own message, which the tools hand to the agent unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import urlsplit

import httpx

DEFAULT_TIMEOUT_SECONDS = 30.0


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


class HttpGenmillConnection:
    """`GenmillConnection` over genmill's HTTP API (docs/api.md), the key sent as `X-API-Key`.

    The key goes only to the server's own origin: a file URL on another host (an S3 bucket, a CDN) is fetched
    without it, so a task's output can never lead the key elsewhere.
    """

    def __init__(self, base_url: str, api_key: str, *, timeout: float = DEFAULT_TIMEOUT_SECONDS) -> None:
        self.base_url = base_url.rstrip("/")
        self._origin = _origin(self.base_url)
        self._key = api_key
        self._http = httpx.AsyncClient(timeout=timeout)

    async def aclose(self) -> None:
        await self._http.aclose()

    async def models(self) -> list[dict[str, Any]]:
        data = await self._call("GET", "/api/v1/models")
        return list(data["models"])

    async def create_task(self, model: str, task_type: str, inputs: dict[str, Any]) -> dict[str, Any]:
        body = {"model": model, "task_type": task_type, "input": inputs}
        return dict(await self._call("POST", "/api/v1/task", json=body))

    async def task(self, task_id: str) -> dict[str, Any]:
        return dict(await self._call("GET", f"/api/v1/task/{_path_segment(task_id)}"))

    async def cancel_task(self, task_id: str) -> dict[str, Any]:
        return dict(await self._call("POST", f"/api/v1/task/{_path_segment(task_id)}/cancel"))

    async def account(self) -> dict[str, Any]:
        return dict(await self._call("GET", "/account/info"))

    async def download(self, url: str, max_bytes: int) -> Download:
        headers = {"X-API-Key": self._key} if _origin(url) == self._origin else {}
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

    async def _call(self, method: str, path: str, json: Any = None) -> Any:
        url = self.base_url + path
        try:
            response = await self._http.request(method, url, json=json, headers={"X-API-Key": self._key})
        except httpx.HTTPError as exc:
            raise GenmillAPIError(f"cannot reach the genmill server at {self.base_url}: {exc}") from exc
        try:
            body = response.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            raise GenmillAPIError(f"{method} {path} answered HTTP {response.status_code} without a JSON envelope")
        if response.status_code != 200 or body.get("code", 200) != 200:
            message = str(body.get("message") or f"HTTP {response.status_code}")
            raise GenmillAPIError(message, response.status_code)
        return body.get("data")


def _origin(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    return (parts.scheme.lower(), parts.netloc.lower())


def _path_segment(task_id: str) -> str:
    """A task id as one path segment: an id with '/' or '?' would otherwise address another endpoint."""
    if not task_id or any(c in task_id for c in "/?#%\\") or task_id in {".", ".."}:
        raise GenmillAPIError(f"task_id: {task_id!r} is not a task id")
    return task_id
