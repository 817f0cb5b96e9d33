"""Stored files: bytes in a `BlobStore`, ownership and expiry in the `BlobIndex`, URLs under `/files/`.

This is the only module that turns a key into a public URL and back, so that inputs pointing at this server are
read from storage directly (never over HTTP) and expired objects answer 410.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from genmill.domain.records import Blob
from genmill.domain.retention import expires_at, is_expired
from genmill.domain.timefmt import utcnow
from genmill.errors import Gone, NotFound
from genmill.storage.blobstore import BlobStore

if TYPE_CHECKING:  # a remote worker imports FILES_PREFIX (through the upstream backend) and never the store
    from genmill.store.blobs import BlobIndex

FILES_PREFIX = "/files/"


@dataclass(frozen=True)
class StoredFile:
    blob: Blob
    data: bytes


class FileService:
    def __init__(self, blobs: BlobStore, index: BlobIndex, base_url: str) -> None:
        self.blobs = blobs
        self.index = index
        self.base_url = base_url.rstrip("/")

    def url_for(self, key: str, expires_at: datetime | None = None) -> str:
        """The URL clients download the object from: presigned by the blob store when it can (S3), valid until
        the object expires; otherwise this server's `/files/` route."""
        presign = getattr(self.blobs, "presigned_url", None)
        if presign is not None and expires_at is not None:
            seconds = int((expires_at - utcnow()).total_seconds())
            url = presign(key, max(1, seconds))
            if url:
                return str(url)
        return f"{self.base_url}{FILES_PREFIX}{key}"

    def blob_url(self, blob: Blob) -> str:
        return self.url_for(blob.key, blob.expires_at)

    def key_from_url(self, url: str) -> str | None:
        """The blob key when `url` points at a file this server stored (its route or its store), else None."""
        own = getattr(self.blobs, "key_from_url", None)
        if own is not None:
            key = own(url)
            if key:
                return str(key)
        for prefix in (self.base_url + FILES_PREFIX, FILES_PREFIX):
            if url.startswith(prefix):
                key = url[len(prefix) :].split("?", 1)[0]
                return key or None
        return None

    def save(
        self,
        data: bytes,
        *,
        kind: str,
        ext: str,
        content_type: str,
        retention: timedelta,
        account_id: str | None,
        task_id: str | None = None,
        name: str = "",
        key: str | None = None,
    ) -> Blob:
        """Store bytes first, then index them: an index row always points at bytes that exist.

        `key` is one `new_key` made earlier (when the caller needs the file's URL before storing it)."""
        now = utcnow()
        key = key or self.new_key(kind=kind, ext=ext, account_id=account_id, task_id=task_id, name=name)
        self.blobs.put(key, data, content_type)
        blob = Blob(key, account_id, task_id, kind, content_type, len(data), now, expires_at(now, retention), None)
        self.index.record(blob)
        return blob

    @staticmethod
    def new_key(*, kind: str, ext: str, account_id: str | None, task_id: str | None = None, name: str = "") -> str:
        """A fresh key for a file of `kind` owned by the task (else the account): `<kind>s/<owner>/<unique>...`."""
        owner = task_id or account_id or "anonymous"
        stem = f"{uuid.uuid4().hex}-{name}" if name else f"{uuid.uuid4().hex}.{ext.lstrip('.')}"
        return f"{kind}s/{owner}/{stem}"

    def server_url(self, key: str) -> str:
        """The file's URL on this server's `/files/` route (never a presigned one, which would expire): what a
        stored task input names, read back from storage directly by `key_from_url`."""
        return f"{self.base_url}{FILES_PREFIX}{key}"

    def discard(self, blob: Blob) -> None:
        """Delete a file stored for a request that was then refused (its bytes, then its row), leaving nothing.

        Bytes go first: a crash in between leaves a row whose bytes are gone, which `open` answers as gone and the
        reaper clears when it expires; never bytes that no row points at."""
        self.blobs.delete(blob.key)
        self.index.forget(blob.key)

    def open(self, key: str, *, now: datetime | None = None) -> StoredFile:
        blob = self.index.get(key)
        if blob is None:
            raise NotFound("file not found")
        if blob.deleted_at is not None or is_expired(blob.expires_at, now or utcnow()):
            raise Gone("this file has expired and was deleted")
        data = self.blobs.read(key)
        if data is None:
            raise Gone("this file is no longer stored")
        return StoredFile(blob, data)

    def reap(self, *, now: datetime | None = None, limit: int = 500) -> list[str]:
        """Delete expired objects and mark their tasks; returns the deleted keys."""
        moment = now or utcnow()
        deleted = []
        for blob in self.index.due_for_deletion(moment, limit=limit):
            self.blobs.delete(blob.key)
            self.index.mark_deleted(blob, moment)
            deleted.append(blob.key)
        return deleted
