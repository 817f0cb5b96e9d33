"""`AsyncClient`: `Client` (sync.py) line for line with `await`, on httpx's AsyncClient. Every decision is in
`genmill.client.core`; keep the two modules side by side when changing either."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx

from genmill import __version__
from genmill.client import core
from genmill.client.errors import APIError, ConnectionFailed, WaitTimeout
from genmill.client.models import Account, Task

OnUpdate = Callable[[Task], None]
"""Called with each new state of a waited task (a plain function, also here)."""


class AsyncClient:
    """The asyncio PiAPI Unified API client; see `Client` for the rules.

    `base_url` and `api_key` default to `GENMILL_URL` and `GENMILL_API_KEY`. Reads and cancels are retried on
    connection errors and 5xx (`max_retries` times, exponential backoff with jitter); a create is retried only
    with an `Idempotency-Key` (`retry=True` generates one). `transport` replaces httpx's (tests, proxies).
    """

    def __init__(
        self,
        base_url: str | None = None,
        api_key: str | None = None,
        *,
        timeout: float = 30.0,
        max_retries: int = 3,
        use_events: bool = True,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.base_url, self.api_key = core.settings_from_env(base_url, api_key)
        self.retry = core.RetryPolicy(max_retries=max_retries)
        self.use_events = use_events
        self._http = httpx.AsyncClient(
            base_url=self.base_url,
            timeout=timeout,
            transport=transport,
            headers={"User-Agent": f"genmill-client/{__version__}"},
        )

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        await self._http.aclose()

    def _key_headers(self) -> dict[str, str]:
        return {"X-API-Key": self.api_key} if self.api_key else {}

    async def _call(self, spec: core.RequestSpec) -> Any:
        attempt = 0
        while True:
            try:
                response = await self._http.request(
                    spec.method,
                    spec.path,
                    params=spec.params,
                    json=spec.json,
                    headers={**self._key_headers(), **spec.headers},
                )
            except httpx.TransportError as exc:
                if not spec.idempotent or attempt >= self.retry.max_retries:
                    raise ConnectionFailed(f"{spec.method} {spec.path}: {exc!r}") from exc
                await asyncio.sleep(self.retry.delay(attempt))
                attempt += 1
                continue
            if attempt < self.retry.max_retries and self.retry.retry_status(response.status_code, spec.idempotent):
                await asyncio.sleep(self.retry.delay(attempt, core.retry_after_seconds(response.headers)))
                attempt += 1
                continue
            return core.parse_answer(response.status_code, response.headers, response.content)

    # --- tasks -------------------------------------------------------------------------------------------------

    async def create(
        self,
        model: str,
        task_type: str,
        input: Mapping[str, Any],
        *,
        config: Mapping[str, Any] | None = None,
        webhook: str | None = None,
        webhook_secret: str | None = None,
        idempotency_key: str | None = None,
        retry: bool = False,
    ) -> Task:
        """Create a task. `Path` values in `input` are uploaded first and replaced by their URLs."""
        paths = core.local_paths(input)
        if paths:
            urls = {p: await self.upload(p) for p in dict.fromkeys(paths)}
            input = core.replace_paths(input, urls)
        key = idempotency_key or (core.new_idempotency_key() if retry else None)
        spec = core.create_request(
            model, task_type, input, config=config, webhook=webhook, webhook_secret=webhook_secret, idempotency_key=key
        )
        return core.parse_task(await self._call(spec))

    async def get(self, task_id: str) -> Task:
        return core.parse_task(await self._call(core.get_request(task_id)))

    async def cancel(self, task_id: str) -> Task:
        """Cancel a pending or staged task; the task as it is afterwards."""
        return core.parse_cancel(await self._call(core.cancel_request(task_id))) or await self.get(task_id)

    async def wait(self, task_id: str, *, timeout: float | None = None, on_update: OnUpdate | None = None) -> Task:
        """Block until the task ends and return it, whatever its status (`failed` is returned, not raised).

        Follows the server's event stream when it has one, else polls; `on_update` sees every new state.
        Raises `WaitTimeout` (with the last task seen) after `timeout` seconds.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        task = await self.get(task_id)
        if not task.is_terminal and self.use_events:
            # The stream replays the task's events from its creation, so `on_update` sees them in order.
            task = await self._follow_events(task, deadline, timeout, on_update)
        elif on_update:
            on_update(task)
        delays = core.poll_delays()
        while not task.is_terminal:
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                raise WaitTimeout(task, timeout or 0.0)
            await asyncio.sleep(min(next(delays), remaining) if remaining is not None else next(delays))
            seen, task = task, await self.get(task_id)
            if on_update and task.raw != seen.raw:
                on_update(task)
        return task

    async def _follow_events(
        self, task: Task, deadline: float | None, timeout: float | None, on_update: OnUpdate | None
    ) -> Task:
        """Read the task's event stream until a terminal event; reconnects with `Last-Event-ID`. Returns the task
        as last seen (not terminal when the server has no stream, or it kept failing: the caller polls on)."""
        last_id: int | None = None
        failures = 0
        delivered = False
        while failures <= self.retry.max_retries:
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                raise WaitTimeout(task, timeout or 0.0)
            read = 30.0 if remaining is None else min(30.0, remaining)
            got_event = False
            try:
                async with self._http.stream(
                    "GET",
                    core.events_path(task.task_id),
                    headers={**self._key_headers(), **core.events_headers(last_id)},
                    timeout=httpx.Timeout(self._http.timeout.connect, read=read),
                ) as response:
                    if response.status_code in core.EVENTS_UNAVAILABLE or (
                        response.status_code == 200 and not core.is_event_stream(response.headers)
                    ):
                        if on_update and not delivered:
                            on_update(task)
                        return task
                    if response.status_code != 200:
                        await response.aread()
                        core.parse_answer(response.status_code, response.headers, response.content)
                    decoder = core.SseDecoder()
                    async for line in response.aiter_lines():
                        event = decoder.feed(line)
                        if event is None:
                            continue
                        event_id, seen = core.task_from_event(event)
                        last_id = event_id if event_id is not None else last_id
                        if seen is not None:
                            got_event, delivered, task = True, True, seen
                            if on_update:
                                on_update(task)
                            if task.is_terminal:
                                return task
            except (httpx.TransportError, APIError):
                pass
            failures = 0 if got_event else failures + 1
            if failures:
                await asyncio.sleep(self.retry.delay(failures - 1))
        if on_update and not delivered:
            on_update(task)
        return task

    async def run(
        self,
        model: str,
        task_type: str,
        input: Mapping[str, Any],
        *,
        config: Mapping[str, Any] | None = None,
        output_dir: str | Path | None = None,
        timeout: float | None = None,
        on_update: OnUpdate | None = None,
    ) -> Task:
        """Create (retried safely with an Idempotency-Key), wait, and download the outputs into `output_dir`
        (the task's `files`). Raises `TaskFailed` when the task ends failed or cancelled."""
        task = await self.create(model, task_type, input, config=config, retry=True)
        task = await self.wait(task.task_id, timeout=timeout, on_update=on_update)
        core.raise_unless_completed(task)
        if output_dir is None:
            return task
        taken: set[str] = set()
        files = tuple([await self.download(url, output_dir, _taken=taken) for url in task.output_urls])
        return replace(task, files=files)

    # --- files, account, history -------------------------------------------------------------------------------

    async def upload(self, file: str | Path | bytes, *, file_name: str | None = None) -> str:
        """Upload a file (kept 24 hours) and return its URL, to pass as a task input."""
        if isinstance(file, bytes):
            return core.parse_upload(await self._call(core.upload_request(file, file_name)))
        path = Path(file)
        return core.parse_upload(await self._call(core.upload_request(path.read_bytes(), file_name or path.name)))

    async def download(self, url: str, directory: str | Path, *, _taken: set[str] | None = None) -> Path:
        """Save a file into `directory` (created if missing) under its URL's name; the key goes only to this server."""
        folder = Path(directory)
        folder.mkdir(parents=True, exist_ok=True)
        target = folder / core.file_name_for(url, _taken if _taken is not None else set())
        headers = self._key_headers() if core.same_origin(url, self.base_url) else {}
        attempt = 0
        while True:
            try:
                async with self._http.stream("GET", url, headers=headers) as response:
                    if response.status_code == 200:
                        with target.open("wb") as out:
                            async for chunk in response.aiter_bytes():
                                out.write(chunk)
                        return target
                    await response.aread()
                    if attempt < self.retry.max_retries and self.retry.retry_status(response.status_code, True):
                        delay = self.retry.delay(attempt, core.retry_after_seconds(response.headers))
                    else:
                        core.parse_answer(response.status_code, response.headers, response.content)
                        raise core.unexpected(response.status_code, url)
            except httpx.TransportError as exc:
                if attempt >= self.retry.max_retries:
                    raise ConnectionFailed(f"GET {url}: {exc!r}") from exc
                delay = self.retry.delay(attempt)
            await asyncio.sleep(delay)
            attempt += 1

    async def account(self) -> Account:
        return Account.from_wire(await self._call(core.account_request()))

    async def history(
        self,
        *,
        model: str | None = None,
        status: str | None = None,
        start_time: int | None = None,
        end_time: int | None = None,
        page_size: int = 50,
        limit: int | None = None,
    ) -> AsyncIterator[Task]:
        """The account's tasks, newest first, fetching page after page as the iteration goes (at most `limit`)."""
        seen: set[str] = set()
        page = 1
        while True:
            spec = core.history_request(
                page, page_size, model=model, status=status, start_time=start_time, end_time=end_time
            )
            result = core.parse_history(await self._call(spec))
            for task in result.tasks:
                if task.task_id in seen:
                    continue  # a task created while paging shifts the pages by one
                seen.add(task.task_id)
                yield task
                if limit is not None and len(seen) >= limit:
                    return
            if not core.more_pages(result, page, page_size):
                return
            page += 1
