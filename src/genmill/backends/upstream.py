"""Forward tasks to another PiAPI-compatible endpoint (the hosted service or another genmill).

A deployment that cannot run a model itself (no GPU, no weights) can still offer it: this backend creates the
same task upstream with the operator's key, follows it, relays its logs and progress, and copies the finished
files into this server's storage, so clients see ordinary local output URLs with this server's retention and
never learn the upstream's address or key.

Four things keep that honest:

* Inputs that name this server's own files are unreachable from the upstream (they may sit on a private
  network, or be relative `/files/…` links), so they are read through `ctx.read_input` and sent inline as data
  URIs. Base64 and public URLs are forwarded unchanged: the upstream can read them itself.
* Output files are downloaded through a `GuardedFetcher`, like every other URL this server fetches. The
  operator chooses the upstream, so `allow_private` is theirs to set (a second genmill on the same LAN).
* An upstream that refuses or fails the task fails the local task with the upstream's words in `raw_message`;
  the worker then releases the local credits, so a client never pays for work that did not happen.
* An operation on an earlier task (upscale, variation, extend: its entry has `derived_from`) names that task by
  its id, which means nothing upstream. Every forwarded task keeps its upstream id in its own `detail`
  (`upstream_task_id`), and a derived task sends its origin's upstream id in its place; an origin that did not run
  upstream fails the derived task before anything is sent.

Output files are found by the rule of `genmill.domain.output_files` (keys `url`/`urls`, `*_url`/`*_urls`,
`resource`/`resource_*`, which covers Qubico's, Midjourney's, Kling's, Luma's and Suno's output shapes); each
distinct URL is copied once, however many keys name it.
"""

from __future__ import annotations

import base64
import logging
import time
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit

import httpx

from genmill.backends.base import Availability, Backend, RunContext, ServedBy
from genmill.domain.catalog import Catalog, CatalogEntry, TaskInput
from genmill.domain.failures import FailureCode
from genmill.domain.output_files import is_file_key
from genmill.errors import BackendError, GenmillError
from genmill.net.fetch import GuardedFetcher
from genmill.net.media import OCTET_STREAM, content_type_for_extension, is_http_url
from genmill.storage.files import FILES_PREFIX

log = logging.getLogger("genmill.backends.upstream")

PENDING_STATES = frozenset({"pending", "staged"})
"""Upstream states in which a cancel still takes effect (PiAPI cancels only tasks that have not started)."""

UPSTREAM_TASK_ID = "upstream_task_id"
"""The key of a forwarded task's `detail` that holds its task id upstream."""

MAX_POLL_FAILURES = 5
"""Consecutive failed polls tolerated before giving up: the upstream task exists, so one network blip must not
throw it away."""

_EXTENSIONS = ("png", "jpg", "webp", "gif", "mp4", "mov", "webm", "mp3", "wav", "m4a", "flac", "ogg", "glb")
_EXTENSION_BY_TYPE = {content_type_for_extension(ext): ext for ext in reversed(_EXTENSIONS)}


def parse_upstream_models(spec: str, catalog: Catalog) -> tuple[list[tuple[str, str]], list[str]]:
    """Turn `GENMILL_UPSTREAM_MODELS` into catalog keys; also return the items that name nothing.

    Each comma-separated item is either a model (every task type of it) or `model/task_type`. Model names
    contain a slash themselves (`Qubico/flux1-dev`), so an item is first tried as a whole model name and only
    then split at its last slash.
    """
    entries: list[tuple[str, str]] = []
    unknown: list[str] = []
    models = catalog.models()
    for raw in spec.split(","):
        item = raw.strip()
        if not item:
            continue
        if item in models:
            found = [(item, task_type) for task_type in catalog.task_types(item)]
        else:
            model, _, task_type = item.rpartition("/")
            found = [(model, task_type)] if (model, task_type) in catalog else []
        if not found:
            unknown.append(item)
        entries.extend(key for key in found if key not in entries)
    return entries, unknown


class UpstreamBackend(Backend):
    """Runs catalog entries on a PiAPI-compatible upstream and stores the results locally."""

    name = "upstream"
    device = "cpu"

    def __init__(
        self,
        *,
        base_url: str,
        api_key: str,
        entries: Iterable[tuple[str, str]],
        poll_interval: float = 2.0,
        timeout: float = 3600.0,
        allow_private: bool = False,
        local_url: str = "",
        request_timeout: float = 30.0,
        max_output_bytes: int = 512 * 1024 * 1024,
        fetch_timeout: float = 300.0,
        client: httpx.Client | None = None,
        transport: httpx.BaseTransport | None = None,
        fetch_transport: httpx.BaseTransport | None = None,
        unknown_models: Iterable[str] = (),
    ) -> None:
        """`entries` are the (model, task_type) pairs to forward; `timeout` bounds one upstream task end to end.

        `local_url` is this server's public base URL: input URLs under it are this server's files and are sent
        inline. `client`/`transport` replace the HTTP client used for the API calls (tests);
        `fetch_transport` is handed to the guarded fetcher that downloads outputs. `unknown_models` are items of
        the setting that named no catalog entry, reported by `availability` so a typo is visible.
        """
        if poll_interval <= 0 or timeout <= 0 or request_timeout <= 0:
            raise ValueError("poll_interval, timeout and request_timeout must be positive")
        self.base_url = base_url.strip().rstrip("/")
        self.api_key = api_key
        self.entries = tuple(dict.fromkeys(entries))
        self.poll_interval = poll_interval
        self.timeout = timeout
        self.local_url = local_url.strip().rstrip("/")
        self.request_timeout = request_timeout
        self.unknown_models = tuple(unknown_models)
        self._transport = transport
        self._client = client
        self._owns_client = client is None
        self.fetcher = GuardedFetcher(
            max_bytes=max_output_bytes, allow_private=allow_private, timeout=fetch_timeout, transport=fetch_transport
        )

    # -- Backend interface -------------------------------------------------------------------------------------

    def availability(self) -> Availability:
        """Configured or not; never contacts the upstream, so a slow upstream cannot delay startup."""
        if not self.base_url:
            return Availability(False, "GENMILL_UPSTREAM_URL is not set")
        if not is_http_url(self.base_url):
            return Availability(False, f"GENMILL_UPSTREAM_URL must be an http(s) URL (got {self.base_url!r})")
        if not self.api_key:
            return Availability(False, "GENMILL_UPSTREAM_API_KEY is not set")
        if not self.entries:
            if self.unknown_models:
                unknown = ", ".join(self.unknown_models)
                return Availability(False, f"GENMILL_UPSTREAM_MODELS names no catalog entry (unknown: {unknown})")
            return Availability(False, "GENMILL_UPSTREAM_MODELS is empty: no model is forwarded")
        return Availability(True)

    def served_by(self, entry: CatalogEntry) -> ServedBy:
        """The upstream runs the model named; clients learn that their inputs go there (scheme, host and path
        only: never credentials or a query put into the URL)."""
        parts = urlsplit(self.base_url)
        where = f"{parts.scheme}://{parts.hostname or ''}{f':{parts.port}' if parts.port else ''}{parts.path}"
        return ServedBy(
            f"upstream: {where}",
            limits=(f"forwarded: {where} runs the task and receives its inputs; its outputs are copied here",),
        )

    def load(self) -> None:
        """Open the HTTP client once; connections to the upstream are then pooled across tasks."""
        if self._client is None:
            self._client = httpx.Client(transport=self._transport, timeout=self.request_timeout, trust_env=False)

    def unload(self) -> None:
        """Close the client only if this backend created it (a caller's client is the caller's to close)."""
        if self._owns_client and self._client is not None:
            self._client.close()
            self._client = None

    def run(self, entry: CatalogEntry, inputs: TaskInput, ctx: RunContext) -> dict[str, Any]:
        """Create the task upstream, follow it to the end, and return its output with local URLs."""
        self.load()
        payload = inputs.model_dump(mode="json", by_alias=True, exclude_unset=True)
        if entry.derived_from is not None:
            payload[entry.derived_from.field] = self._upstream_origin(ctx)
        body = {"model": entry.model, "task_type": entry.task_type, "input": self._portable(payload, ctx, "input")}
        created = self._call("POST", "/api/v1/task", json=body, action="create the task")
        upstream_id = str(created.get("task_id") or "")
        if not upstream_id:
            raise BackendError("the upstream provider did not return a task id", raw_message=str(created)[:500])
        ctx.remember(UPSTREAM_TASK_ID, upstream_id)
        ctx.log(f"forwarded to upstream task {upstream_id}")
        task = self._follow(upstream_id, created, ctx)
        output = task.get("output")
        if not isinstance(output, dict):
            raise BackendError(
                "the upstream provider completed the task without an output",
                raw_message=str(output)[:500],
                detail={"upstream_task_id": upstream_id},
            )
        localized = self._localize(output, ctx, "output", {})
        assert isinstance(localized, dict)
        return localized

    @staticmethod
    def _upstream_origin(ctx: RunContext) -> str:
        """The upstream's id of the origin task a derived task works on: what the upstream knows it by."""
        origin = ctx.origin()
        if origin is None:
            raise BackendError("the origin task of this operation is not available to this worker")
        upstream_id = (origin.detail or {}).get(UPSTREAM_TASK_ID)
        if not isinstance(upstream_id, str) or not upstream_id:
            raise BackendError(
                f"origin {origin.task_id} did not run upstream, so the upstream provider cannot work on it",
                code=FailureCode.INPUT_REJECTED,
            )
        return upstream_id

    # -- upstream API ------------------------------------------------------------------------------------------

    def _call(self, method: str, path: str, *, action: str, json: Any = None) -> dict[str, Any]:
        """One API call; the envelope's `data` on success, else a `BackendError` carrying the upstream's words."""
        assert self._client is not None
        try:
            response = self._client.request(
                method, self.base_url + path, json=json, headers={"X-API-Key": self.api_key}
            )
        except httpx.HTTPError as exc:
            reason = f"{type(exc).__name__}: {exc}".strip()
            raise BackendError(f"could not reach the upstream provider to {action}", raw_message=reason) from None
        try:
            envelope = response.json()
        except ValueError:
            envelope = None
        if not isinstance(envelope, dict):
            raw = f"HTTP {response.status_code}: {response.text[:300]}"
            raise BackendError(f"the upstream provider gave an unreadable answer to {action}", raw_message=raw)
        message = str(envelope.get("message") or "")
        code = envelope.get("code", response.status_code)
        if response.status_code >= 400 or (isinstance(code, int) and code >= 400):
            raw = message or f"HTTP {response.status_code}"
            raise BackendError(f"the upstream provider refused to {action}: {raw}", raw_message=raw)
        data = envelope.get("data")
        return data if isinstance(data, dict) else {}

    def _follow(self, upstream_id: str, first: dict[str, Any], ctx: RunContext) -> dict[str, Any]:
        """Poll until the upstream task ends, relaying logs and progress; cancel upstream when stopped here."""
        deadline = time.monotonic() + self.timeout
        task = first
        relayed = 0
        failures = 0
        while True:
            status = str(task.get("status", "")).lower()
            relayed = self._relay(task, ctx, relayed)
            if status == "completed":
                return task
            if status == "failed":
                raise self._failure(upstream_id, task)
            if status in ("cancelled", "canceled"):
                raise BackendError(
                    "the upstream task was cancelled", detail={"upstream_task_id": upstream_id}, code=10000
                )
            if ctx.cancelled():
                self._cancel(upstream_id, status, ctx)
                raise BackendError("cancelled", raw_message=f"stopped while upstream task {upstream_id} was {status}")
            if time.monotonic() >= deadline:
                self._cancel(upstream_id, status, ctx)
                raise BackendError(
                    f"the upstream task did not finish within {self.timeout:g}s",
                    detail={"upstream_task_id": upstream_id},
                )
            time.sleep(min(self.poll_interval, max(0.0, deadline - time.monotonic())))
            try:
                task = self._call("GET", f"/api/v1/task/{upstream_id}", action="report the task")
                failures = 0
            except BackendError as exc:
                failures += 1
                if failures >= MAX_POLL_FAILURES:
                    raise
                ctx.log(f"upstream poll failed ({exc.raw_message}); retrying")

    @staticmethod
    def _relay(task: dict[str, Any], ctx: RunContext, relayed: int) -> int:
        """Copy log lines not yet relayed, and the upstream's progress, into this task."""
        logs = task.get("logs")
        if isinstance(logs, list):
            if len(logs) < relayed:  # the upstream trimmed its logs; start over rather than skip new lines
                relayed = 0
            for line in logs[relayed:]:
                ctx.log(f"upstream: {line}")
            relayed = len(logs)
        detail = task.get("detail")
        if isinstance(detail, dict) and isinstance(detail.get("progress"), int | float):
            ctx.progress(float(detail["progress"]), str(detail.get("note") or ""))
        return relayed

    @staticmethod
    def _failure(upstream_id: str, task: dict[str, Any]) -> BackendError:
        error = task.get("error") if isinstance(task.get("error"), dict) else {}
        assert isinstance(error, dict)
        message = str(error.get("message") or error.get("raw_message") or "no reason given")
        code = error.get("code")
        return BackendError(
            f"the upstream provider failed the task: {message}",
            raw_message=message,
            code=code if isinstance(code, int) and code > 0 else 10000,
            detail={"upstream_task_id": upstream_id, "upstream_error": error},
        )

    def _cancel(self, upstream_id: str, status: str, ctx: RunContext) -> None:
        """Cancel upstream when that can still work; a started upstream task runs to its end there."""
        if status not in PENDING_STATES:
            ctx.log(f"upstream task {upstream_id} is {status or 'running'}; it cannot be cancelled there")
            return
        try:
            self._call("DELETE", f"/api/v1/task/{upstream_id}", action="cancel the task")
            ctx.log(f"cancelled upstream task {upstream_id}")
        except BackendError as exc:
            ctx.log(f"could not cancel upstream task {upstream_id}: {exc.raw_message}")

    # -- inputs and outputs ------------------------------------------------------------------------------------

    def _is_local_file(self, value: str) -> bool:
        """A link to this server's own storage, which the upstream cannot be expected to reach."""
        ref = value.strip()
        if ref.startswith(FILES_PREFIX):
            return True
        return bool(self.local_url) and ref.startswith(self.local_url + FILES_PREFIX)

    def _portable(self, value: Any, ctx: RunContext, field: str) -> Any:
        """The input with every local file link replaced by a data URI of its bytes (read via the context)."""
        if isinstance(value, str) and self._is_local_file(value):
            found = ctx.read_input(value, field=field.removeprefix("input."))
            content_type = found.content_type or OCTET_STREAM
            return f"data:{content_type};base64,{base64.b64encode(found.data).decode('ascii')}"
        if isinstance(value, dict):
            return {k: self._portable(v, ctx, f"{field}.{k}") for k, v in value.items()}
        if isinstance(value, list):
            return [self._portable(v, ctx, f"{field}[{i}]") for i, v in enumerate(value)]
        return value

    def _localize(self, value: Any, ctx: RunContext, field: str, copied: dict[str, str], key: str = "") -> Any:
        """The output with every file URL (by `is_file_key`) replaced by a local copy, each URL copied once; other
        values unchanged."""
        if isinstance(value, dict):
            return {k: self._localize(v, ctx, f"{field}.{k}", copied, str(k)) for k, v in value.items()}
        if isinstance(value, list):
            return [self._localize(v, ctx, f"{field}[{i}]", copied, key) for i, v in enumerate(value)]
        if isinstance(value, str) and is_file_key(key) and is_http_url(value):
            if value not in copied:
                copied[value] = self._copy(value, ctx, field)
            return copied[value]
        return value

    def _copy(self, url: str, ctx: RunContext, field: str) -> str:
        """Download one upstream file through the guarded fetcher and store it as this task's output."""
        try:
            found = self.fetcher.fetch(url, field=field)
        except GenmillError as exc:
            raise BackendError(
                "could not copy an output file from the upstream provider", raw_message=exc.message
            ) from None
        ext = _EXTENSION_BY_TYPE.get(found.content_type) or _extension_from_name(found.name) or "bin"
        return ctx.save_output(found.data, ext=ext, content_type=found.content_type or OCTET_STREAM)


def _extension_from_name(name: str) -> str:
    """The file name's extension when it is short and plain (a hint only; the content type is checked)."""
    _, dot, ext = name.rpartition(".")
    return ext.lower() if dot and ext.isalnum() and len(ext) <= 5 else ""
