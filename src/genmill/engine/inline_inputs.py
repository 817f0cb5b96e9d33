"""Media sent inline in a task's input (base64, `data:` URIs) is stored as an upload when the task is created, and
the task's stored input names the file's URL instead: polls, the history, event streams and webhooks then carry
a short URL, not megabytes of base64, and the worker reads it like any other file of this server.

The order keeps a refused create from leaving anything behind: `plan` decodes and checks every inline value and
decides each file's key and URL without storing anything (a bad value is a 400 naming its field), so the stored
input is final before the quotas and the store see it; `save` stores the files only once everything that can be
checked first has passed, and `discard` deletes them again when the create transaction refuses (credits, a
disabled account, the staged limit) or answers an idempotent replay (whose task already names its own files).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

from genmill.domain.catalog import UPLOAD_RETENTION, TaskInput
from genmill.domain.media_inputs import InlineMedia, inline_media, replace_at
from genmill.domain.media_types import output_type_refusal, parse_media_type
from genmill.domain.records import Blob, InputFile
from genmill.errors import FetchError, InvalidRequest, PayloadTooLarge
from genmill.net.media import OCTET_STREAM, decode_inline, extension_for_content_type
from genmill.storage.files import FileService


@dataclass(frozen=True)
class PlannedFile:
    """One inline value, decoded, with the key and URL it will be stored under."""

    media: InlineMedia
    file: InputFile
    key: str
    url: str
    name: str
    ext: str


@dataclass
class InlinePlan:
    """The input as it will be stored (inline values replaced by URLs) and the files to store for it."""

    stored_input: dict[str, Any]
    files: list[PlannedFile] = field(default_factory=list)


class InlineInputs:
    def __init__(self, files: FileService, *, max_bytes: int) -> None:
        self.files = files
        self.max_bytes = max_bytes
        """The decoded size cap of one inline file: the ephemeral upload's (GENMILL_MAX_UPLOAD_BYTES)."""

    def plan(self, inputs: TaskInput, dumped: dict[str, Any], account_id: str) -> InlinePlan:
        """Decode every inline media value of `inputs` (refusing a malformed or oversized one with a 400 that
        names its field) and return `dumped` with each replaced by the URL its file will have. Stores nothing."""
        found = inline_media(inputs)
        if not found:
            return InlinePlan(dumped)
        stored = copy.deepcopy(dumped)
        planned = []
        for media in found:
            decoded = self._decode(media)
            content_type = parse_media_type(decoded.content_type) or OCTET_STREAM
            if output_type_refusal(content_type) is not None:
                content_type = OCTET_STREAM  # served back only as an attachment, never as a page
            ext = extension_for_content_type(content_type)
            leaf = next((part for part in reversed(media.path) if isinstance(part, str)), "input")
            name = f"{leaf}.{ext}"
            key = self.files.new_key(kind="upload", ext=ext, account_id=account_id, name=name)
            url = self.files.server_url(key)
            replace_at(stored, media.path, url)
            planned.append(PlannedFile(media, InputFile(decoded.data, content_type, name), key, url, name, ext))
        return InlinePlan(stored, planned)

    def _decode(self, media: InlineMedia) -> InputFile:
        field_name = f"input.{media.field}"
        try:
            decoded = decode_inline(media.value, field=field_name, max_bytes=self.max_bytes)
        except (FetchError, PayloadTooLarge) as exc:
            raise InvalidRequest(exc.message) from exc
        if decoded is None:  # not inline after all (inline_media only yields inline values)
            raise InvalidRequest(f"{field_name}: expected base64 data or a data: URI")
        return decoded

    def save(self, plan: InlinePlan, account_id: str) -> list[Blob]:
        """Store the planned files as the account's uploads (kept as long as uploads are); all or none."""
        saved: list[Blob] = []
        try:
            for planned in plan.files:
                saved.append(
                    self.files.save(
                        planned.file.data,
                        kind="upload",
                        ext=planned.ext,
                        content_type=planned.file.content_type,
                        retention=UPLOAD_RETENTION,
                        account_id=account_id,
                        name=planned.name,
                        key=planned.key,
                    )
                )
        except BaseException:
            self.discard(saved)
            raise
        return saved

    def discard(self, saved: list[Blob]) -> None:
        """Delete files stored for a create that did not make a task (or replayed one that names its own)."""
        for blob in saved:
            self.files.discard(blob)
