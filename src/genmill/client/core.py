"""What `Client` and `AsyncClient` share, free of I/O: how each call becomes a request, how an answer becomes a
result or an exception, when to retry and how long to sleep, how Server-Sent Events are read, and how output files
are named. The two clients only send requests and sleep, so they cannot drift apart on any of these decisions.

Everything here is PiAPI's wire: the core path uses no genmill-only call. genmill's additions are used only where
they are harmless elsewhere: the task's event stream (a 404 or a non-stream answer falls back to polling) and the
`Idempotency-Key` header (ignored by a server that does not know it).
"""

from __future__ import annotations

import base64
import json
import os
import random
import re
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import unquote, urlsplit

from genmill.client.errors import ProtocolError, TaskFailed, error_for
from genmill.client.models import Task

TASK_PATH = "/api/v1/task"
EVENTS_UNAVAILABLE = frozenset({404, 405, 406, 501})
"""Answers to the events request meaning "this server has no event stream" (the task was seen to exist first)."""
DEFAULT_URL = "http://127.0.0.1:8000"


@dataclass(frozen=True)
class RequestSpec:
    """One HTTP request, before any client sends it. `idempotent`: safe to send again after a lost answer."""

    method: str
    path: str
    params: dict[str, str | int] | None = None
    json: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    idempotent: bool = True


def settings_from_env(base_url: str | None, api_key: str | None) -> tuple[str, str]:
    """The base URL and key given, else `GENMILL_URL` / `GENMILL_API_KEY`; the URL without a trailing slash."""
    url = base_url or os.environ.get("GENMILL_URL") or DEFAULT_URL
    key = api_key if api_key is not None else os.environ.get("GENMILL_API_KEY", "")
    return url.rstrip("/"), key


def new_idempotency_key() -> str:
    return f"genmill-client-{uuid.uuid4()}"


def create_request(
    model: str,
    task_type: str,
    input: Mapping[str, Any],
    *,
    config: Mapping[str, Any] | None = None,
    webhook: str | None = None,
    webhook_secret: str | None = None,
    idempotency_key: str | None = None,
) -> RequestSpec:
    body: dict[str, Any] = {"model": model, "task_type": task_type, "input": dict(input)}
    merged = dict(config or {})
    if webhook is not None:
        hook = {"endpoint": webhook, **({"secret": webhook_secret} if webhook_secret is not None else {})}
        merged["webhook_config"] = {**dict(merged.get("webhook_config") or {}), **hook}
    if merged:
        body["config"] = merged
    headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
    return RequestSpec("POST", TASK_PATH, json=body, headers=headers, idempotent=idempotency_key is not None)


def get_request(task_id: str) -> RequestSpec:
    return RequestSpec("GET", f"{TASK_PATH}/{task_id}")


def cancel_request(task_id: str) -> RequestSpec:
    """PiAPI's `DELETE /api/v1/task/{id}`: cancelling twice is refused, never doubled, so it may be retried."""
    return RequestSpec("DELETE", f"{TASK_PATH}/{task_id}")


def events_headers(last_event_id: int | None) -> dict[str, str]:
    headers = {"Accept": "text/event-stream"}
    if last_event_id is not None:
        headers["Last-Event-ID"] = str(last_event_id)
    return headers


def events_path(task_id: str) -> str:
    return f"{TASK_PATH}/{task_id}/events"


def account_request() -> RequestSpec:
    return RequestSpec("GET", "/account/info")


def history_request(
    page: int,
    page_size: int,
    *,
    model: str | None = None,
    status: str | None = None,
    start_time: int | None = None,
    end_time: int | None = None,
) -> RequestSpec:
    params: dict[str, str | int] = {"page": page, "page_size": page_size}
    for name, value in (("model", model), ("status", status), ("start_time", start_time), ("end_time", end_time)):
        if value is not None:
            params[name] = value
    return RequestSpec("GET", "/api/open/tasks/histories", params=params)


MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"\x89PNG", "png"),
    (b"\xff\xd8\xff", "jpg"),
    (b"GIF8", "gif"),
    (b"RIFF", "wav"),  # WEBP also starts RIFF: told apart below
    (b"ID3", "mp3"),
    (b"\xff\xfb", "mp3"),
    (b"fLaC", "flac"),
    (b"OggS", "ogg"),
)


def guess_extension(data: bytes) -> str | None:
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    if data[4:8] == b"ftyp":
        return "mp4"
    for magic, ext in MAGIC:
        if data.startswith(magic):
            return ext
    return None


def upload_request(data: bytes, file_name: str | None) -> RequestSpec:
    """PiAPI's `POST /api/ephemeral_resource` with the file as base64; a name is guessed from the bytes if absent."""
    if not file_name:
        ext = guess_extension(data)
        if ext is None:
            raise ValueError("file_name: needed when the bytes are not a recognised image or audio/video file")
        file_name = f"upload.{ext}"
    body = {"file_name": file_name, "file_data": base64.b64encode(data).decode("ascii")}
    # A repeated upload stores a second copy of the same bytes; nothing is billed, so retrying is harmless.
    return RequestSpec("POST", "/api/ephemeral_resource", json=body, idempotent=True)


def parse_answer(status: int, headers: Mapping[str, str], content: bytes) -> Any:
    """The envelope's `data`, or the `APIError` the answer means (raised)."""
    lowered = {k.lower(): v for k, v in headers.items()}
    try:
        body = json.loads(content) if content else None
    except ValueError:
        body = None
    if not isinstance(body, dict):
        if status >= 400:
            text = content[:300].decode("utf-8", "replace").strip()
            raise error_for(status, status, text or f"HTTP {status}", headers=lowered)
        raise ProtocolError(f"HTTP {status}: the answer is not a JSON envelope: {content[:200]!r}")
    code = body.get("code")
    code = code if isinstance(code, int) and not isinstance(code, bool) else status
    message = str(body.get("message") or body.get("detail") or "") if status >= 400 or code >= 400 else ""
    if status >= 400 or code >= 400:
        detail = body.get("detail") if isinstance(body.get("detail"), dict) else None
        raise error_for(status if status >= 400 else code, code, message, detail, lowered)
    return body.get("data")


def parse_task(data: Any) -> Task:
    return Task.from_wire(data)


def parse_cancel(data: Any) -> Task | None:
    """genmill answers the cancelled task; PiAPI documents only a message, so None means "GET it"."""
    if isinstance(data, dict) and isinstance(data.get("task_id"), str):
        return Task.from_wire(data)
    return None


def parse_upload(data: Any) -> str:
    if isinstance(data, dict) and isinstance(data.get("url"), str):
        return str(data["url"])
    raise ProtocolError(f"expected the uploaded file's url, got {str(data)[:200]!r}")


@dataclass(frozen=True)
class HistoryPage:
    tasks: list[Task]
    total: int | None


def parse_history(data: Any) -> HistoryPage:
    if not isinstance(data, dict) or not isinstance(data.get("data"), list):
        raise ProtocolError(f"expected a history page, got {str(data)[:200]!r}")
    total = data.get("total")
    return HistoryPage([Task.from_wire(item) for item in data["data"]], total if isinstance(total, int) else None)


def more_pages(page: HistoryPage, number: int, page_size: int) -> bool:
    """Another page may hold tasks: this one was full and, where the total is known, not the last."""
    if len(page.tasks) < page_size:
        return False
    return page.total is None or number * page_size < page.total


def raise_unless_completed(task: Task) -> None:
    """The rule of `run()`: a task that ended `failed` or `cancelled` raises `TaskFailed` carrying it."""
    if task.status.value != "completed":
        raise TaskFailed(task)


def unexpected(status: int, url: str) -> ProtocolError:
    return ProtocolError(f"GET {url}: unexpected HTTP {status}")


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with full jitter. `max_retries` extra attempts; 429's `Retry-After` is honoured."""

    max_retries: int = 3
    base_delay: float = 0.5
    max_delay: float = 8.0

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        """Seconds to sleep before attempt `attempt + 1` (attempt counts from 0)."""
        ceiling = min(self.max_delay, self.base_delay * (2**attempt))
        jittered = random.uniform(ceiling / 2, ceiling)
        if retry_after is not None:
            return min(max(retry_after, jittered), 60.0)
        return jittered

    def retry_status(self, status: int, idempotent: bool) -> bool:
        """A 429 is a refusal that changed nothing: always retried. A 5xx only when sending again is safe."""
        return status == 429 or (idempotent and status in (500, 502, 503, 504))


def retry_after_seconds(headers: Mapping[str, str]) -> float | None:
    for name, value in headers.items():
        if name.lower() == "retry-after":
            try:
                return max(0.0, float(value))
            except ValueError:
                return None
    return None


def poll_delays(first: float = 0.5, factor: float = 1.5, ceiling: float = 5.0) -> Iterator[float]:
    """Polling intervals: grow from `first` to `ceiling`, each jittered by ±20% so clients do not poll in step."""
    delay = first
    while True:
        yield delay * random.uniform(0.8, 1.2)
        delay = min(ceiling, delay * factor)


@dataclass
class SseEvent:
    event: str = "message"
    data: str = ""
    id: str | None = None


class SseDecoder:
    """The text/event-stream format, a line at a time: a blank line ends an event; `:` lines are comments."""

    def __init__(self) -> None:
        self._event = "message"
        self._data: list[str] = []
        self._id: str | None = None

    def feed(self, line: str) -> SseEvent | None:
        line = line.rstrip("\r\n")
        if not line:
            if not self._data:
                self._event = "message"
                return None
            event = SseEvent(self._event, "\n".join(self._data), self._id)
            self._event, self._data, self._id = "message", [], None
            return event
        if line.startswith(":"):
            return None
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "event":
            self._event = value
        elif name == "data":
            self._data.append(value)
        elif name == "id":
            self._id = value
        return None


def task_from_event(event: SseEvent) -> tuple[int | None, Task | None]:
    """(the event's id, the task it carries): genmill's `status` and `progress` events carry the whole task."""
    event_id = int(event.id) if event.id is not None and event.id.isdigit() else None
    if event.event not in ("status", "progress"):
        return event_id, None
    try:
        return event_id, Task.from_wire(json.loads(event.data))
    except (ValueError, ProtocolError):
        return event_id, None


def is_event_stream(headers: Mapping[str, str]) -> bool:
    return any(k.lower() == "content-type" and "text/event-stream" in v for k, v in headers.items())


def same_origin(url: str, base_url: str) -> bool:
    """Whether `url` is on the server the key belongs to: the key is never sent to another host."""
    a, b = urlsplit(url), urlsplit(base_url)
    return (a.scheme, a.netloc.lower()) == (b.scheme, b.netloc.lower())


SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")


def file_name_for(url: str, taken: set[str]) -> str:
    """A safe local name from the URL's last path segment, made unique among `taken` (which it joins)."""
    base = SAFE_NAME.sub("_", PurePosixPath(unquote(urlsplit(url).path)).name).strip("._") or "output"
    stem, dot, ext = base.rpartition(".")
    if not dot:
        stem, ext = base, ""
    name, n = base, 1
    while name in taken:
        name = f"{stem}-{n}.{ext}" if ext else f"{stem}-{n}"
        n += 1
    taken.add(name)
    return name


def local_paths(value: Any) -> list[Path]:
    """Every `Path` in an input (at any depth): `run()` and `create()` upload them and send their URLs."""
    if isinstance(value, Path):
        return [value]
    if isinstance(value, dict):
        return [p for item in value.values() for p in local_paths(item)]
    if isinstance(value, list | tuple):
        return [p for item in value for p in local_paths(item)]
    return []


def replace_paths(value: Any, urls: Mapping[Path, str]) -> Any:
    if isinstance(value, Path):
        return urls[value]
    if isinstance(value, dict):
        return {k: replace_paths(v, urls) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [replace_paths(v, urls) for v in value]
    return value
