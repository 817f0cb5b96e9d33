"""Resolve media references in task inputs to bytes, through exactly one guarded path.

Files stored on this server are read from storage directly (never over HTTP); inline base64 and data URIs are
decoded with a size cap; anything else goes through the `GuardedFetcher` (size cap, content type, no private
destinations unless allowed, and one total deadline, `GENMILL_FETCH_TIMEOUT`, that no peer can stretch by
dripping its answer). A download that misses the deadline raises `FetchError`, which the worker turns into a
failed task with code 10001 and its credits released; so a stuck URL holds a worker, in process or remote, for
at most the deadline, and the worker's next task (any account's) runs after it.
"""

from __future__ import annotations

from genmill.domain.records import InputFile
from genmill.errors import FetchError, GenmillError
from genmill.net.fetch import GuardedFetcher
from genmill.net.media import decode_inline
from genmill.storage.files import FileService


class InputResolver:
    def __init__(self, files: FileService, fetcher: GuardedFetcher, *, max_bytes: int) -> None:
        self.files = files
        self.fetcher = fetcher
        self.max_bytes = max_bytes

    def resolve(self, ref: str, *, field: str) -> InputFile:
        if not isinstance(ref, str) or not ref.strip():
            raise FetchError(f"input.{field}: expected a URL or base64 data")
        ref = ref.strip()
        key = self.files.key_from_url(ref)
        if key is not None:
            try:
                stored = self.files.open(key)
            except GenmillError as exc:
                raise FetchError(f"input.{field}: {exc.message}") from exc
            return InputFile(stored.data, stored.blob.content_type, key.rsplit("/", 1)[-1])
        inline = decode_inline(ref, field=f"input.{field}", max_bytes=self.max_bytes)
        if inline is not None:
            return inline
        return self.fetcher.fetch(ref, field=f"input.{field}")
