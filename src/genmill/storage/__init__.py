"""Where stored bytes live: `build_blob_store` picks the store the settings name (local folder or S3)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from genmill.errors import GenmillError
from genmill.storage.blobstore import BlobStore, LocalBlobStore, MemoryBlobStore

if TYPE_CHECKING:
    from genmill.settings import Settings

__all__ = ["BlobStore", "LocalBlobStore", "MemoryBlobStore", "build_blob_store"]


def build_blob_store(settings: Settings) -> BlobStore:
    """The configured store, built without any network call so that a server starts even while S3 is down.

    boto3 is imported only when S3 is selected, so the default install does not need the `s3` extra.
    """
    if settings.blob_store == "local":
        return LocalBlobStore(settings.blobs_dir())
    if settings.blob_store != "s3":
        raise GenmillError(f"GENMILL_BLOB_STORE must be 'local' or 's3', not {settings.blob_store!r}")
    if not settings.s3_bucket.strip():
        raise GenmillError("GENMILL_BLOB_STORE=s3 needs GENMILL_S3_BUCKET (the bucket name)")
    try:
        from genmill.storage.s3 import S3BlobStore
    except ImportError as exc:
        raise GenmillError("GENMILL_BLOB_STORE=s3 needs boto3: install genmill[s3]") from exc
    return S3BlobStore(
        settings.s3_bucket.strip(),
        endpoint_url=settings.s3_endpoint_url or None,
        region=settings.s3_region or None,
        access_key_id=settings.s3_access_key_id or None,
        secret_access_key=settings.s3_secret_access_key or None,
        prefix=settings.s3_prefix,
        presign=settings.s3_presign,
    )
