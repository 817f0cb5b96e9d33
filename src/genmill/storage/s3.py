"""An S3-compatible `BlobStore` (AWS S3, MinIO, Ceph, R2, …) with presigned download URLs.

Expiry works exactly as with the local store: genmill's reaper deletes objects when their `BlobIndex` row
expires, so S3 needs no configuration for correctness. An optional bucket lifecycle rule is a safety net for
objects a crash orphaned between `put` and the index write (see `lifecycle_rule_hint`).

boto3 is synchronous and its clients are thread-safe, which suits the callers: worker threads and sync FastAPI
handlers. botocore exceptions never leave this module except as `__cause__` of a `StorageError`, so the API and
the worker keep seeing only genmill errors.
"""

from __future__ import annotations

import json
from typing import Any, NoReturn
from urllib.parse import unquote, urlsplit

import boto3
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    NoCredentialsError,
    PartialCredentialsError,
)
from botocore.exceptions import ConnectionError as BotoConnectionError

from genmill.errors import GenmillError

MAX_PRESIGN_SECONDS = 7 * 24 * 3600
"""S3 refuses SigV4 presigned URLs that live longer than 7 days."""

DEFAULT_LIFECYCLE_DAYS = 4
"""One day beyond the longest retention (3 days), so the rule never races the reaper."""

_MISSING_KEY_CODES = frozenset({"NoSuchKey", "404", "NotFound"})
_MISSING_BUCKET_CODES = frozenset({"NoSuchBucket"})
_ACCESS_CODES = frozenset(
    {
        "AccessDenied",
        "AllAccessDisabled",
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "InvalidToken",
        "ExpiredToken",
        "AccountProblem",
        "403",
        "Forbidden",
    }
)
_REGION_CODES = frozenset({"PermanentRedirect", "AuthorizationHeaderMalformed", "IllegalLocationConstraintException"})


class StorageError(GenmillError):
    """Object storage failed or could not be reached; retrying later may help (503)."""

    status_code = 503


class StorageConfigError(StorageError):
    """Object storage refused us for a reason only the operator can fix: bucket, credentials, region (500)."""

    status_code = 500


class S3BlobStore:
    """Blobs as objects `<prefix><key>` in one bucket.

    `prefix` lets several deployments share a bucket; it is treated as a folder (a trailing `/` is added).
    Pass `client` to reuse a configured boto3 client; otherwise one is built from the arguments, and empty
    credentials fall through to boto3's normal chain (environment, shared config, instance role).
    """

    def __init__(
        self,
        bucket: str,
        *,
        endpoint_url: str | None = None,
        region: str | None = None,
        access_key_id: str | None = None,
        secret_access_key: str | None = None,
        prefix: str = "",
        presign: bool = True,
        client: Any | None = None,
    ) -> None:
        if not bucket:
            raise StorageConfigError("the S3 bucket name is empty")
        self.bucket = bucket
        self.prefix = _normalise_prefix(prefix)
        self.presign = presign
        if client is None:
            session = boto3.session.Session(
                aws_access_key_id=access_key_id or None,
                aws_secret_access_key=secret_access_key or None,
                region_name=region or None,
            )
            config = Config(
                # SigV4 everywhere: SigV2 presigned URLs are refused by newer regions and most S3 clones.
                signature_version="s3v4",
                # Custom endpoints (MinIO, moto, a host:port) rarely resolve bucket subdomains.
                s3={"addressing_style": "path" if endpoint_url else "auto"},
                retries={"mode": "standard", "max_attempts": 3},
                connect_timeout=10,
                read_timeout=60,
            )
            client = session.client("s3", endpoint_url=endpoint_url or None, config=config)
        self.client: Any = client
        endpoint = str(client.meta.endpoint_url)
        self._hosts = _endpoint_hosts(endpoint, str(client.meta.region_name or ""), endpoint_url)
        self._base_path = urlsplit(endpoint).path.rstrip("/")

    # -- BlobStore ---------------------------------------------------------------------------------------------

    def put(self, key: str, data: bytes, content_type: str) -> None:
        """Upload in one request; S3 writes are atomic, so readers never see a partial object."""
        object_key = self._object_key(key)
        try:
            self.client.put_object(Bucket=self.bucket, Key=object_key, Body=data, ContentType=content_type)
        except (ClientError, BotoCoreError) as exc:
            self._raise("store", key, exc)

    def read(self, key: str) -> bytes | None:
        object_key = self._object_key(key)
        try:
            response = self.client.get_object(Bucket=self.bucket, Key=object_key)
            body = response["Body"]
            try:
                data = body.read()
            finally:
                body.close()
        except ClientError as exc:
            if _error_code(exc) in _MISSING_KEY_CODES:
                return None
            self._raise("read", key, exc)
        except BotoCoreError as exc:
            self._raise("read", key, exc)
        return data if isinstance(data, bytes) else bytes(data)

    def delete(self, key: str) -> None:
        """S3 answers 204 for a missing key already; some clones answer NoSuchKey, which is success here too."""
        object_key = self._object_key(key)
        try:
            self.client.delete_object(Bucket=self.bucket, Key=object_key)
        except ClientError as exc:
            if _error_code(exc) in _MISSING_KEY_CODES:
                return
            self._raise("delete", key, exc)
        except BotoCoreError as exc:
            self._raise("delete", key, exc)

    # -- optional capabilities used by FileService ---------------------------------------------------------------

    def presigned_url(self, key: str, expires_in: int) -> str | None:
        """A GET URL that works without credentials for `expires_in` seconds, or None when presigning is off.

        Signing is local (no request is made). The lifetime is clamped to 1..604800 seconds because S3 refuses
        longer SigV4 signatures; expiry of the object itself is still decided by the blob index.
        """
        if not self.presign:
            return None
        object_key = self._object_key(key)
        seconds = max(1, min(MAX_PRESIGN_SECONDS, int(expires_in)))
        try:
            url = self.client.generate_presigned_url(
                "get_object", Params={"Bucket": self.bucket, "Key": object_key}, ExpiresIn=seconds
            )
        except (ClientError, BotoCoreError) as exc:
            self._raise("sign a URL for", key, exc)
        return str(url)

    def key_from_url(self, url: str) -> str | None:
        """The blob key when `url` addresses an object of this store (presigned or plain), else None.

        Both path style (`endpoint/bucket/prefix+key`) and virtual-host style (`bucket.endpoint/prefix+key`) are
        recognised; query strings (signatures) are ignored. The signature is not verified: like a `/files/`
        URL, the random part of the key is the capability, and FileService still checks the index for expiry.
        """
        try:
            parts = urlsplit(url.strip())
            port = parts.port
        except ValueError:
            return None
        if parts.scheme not in ("http", "https") or not parts.hostname:
            return None
        host = parts.hostname.lower()
        port = port or (443 if parts.scheme == "https" else 80)
        path = parts.path
        if (host, port) in self._hosts:
            bucket_prefix = f"{self._base_path}/{self.bucket}/"
            if not path.startswith(bucket_prefix):
                return None
            path = path[len(bucket_prefix) :]
        elif any(host == f"{self.bucket}.{h}".lower() and port == p for h, p in self._hosts):
            path = path[1:]
        else:
            return None
        object_key = unquote(path)
        if not object_key.startswith(self.prefix):
            return None
        key = object_key[len(self.prefix) :]
        return key if _valid_key(key) else None

    def ensure_bucket(self) -> None:
        """Create the bucket when it does not exist, for development and tests; production buckets are made by
        whoever owns the account (with their policies), so `genmill serve` never calls this on its own."""
        try:
            self.client.head_bucket(Bucket=self.bucket)
            return
        except ClientError as exc:
            if _error_code(exc) not in _MISSING_KEY_CODES | _MISSING_BUCKET_CODES:
                self._raise("check", None, exc)
        except BotoCoreError as exc:
            self._raise("check", None, exc)
        params: dict[str, Any] = {"Bucket": self.bucket}
        region = str(self.client.meta.region_name or "")
        if region and region != "us-east-1":
            params["CreateBucketConfiguration"] = {"LocationConstraint": region}
        try:
            self.client.create_bucket(**params)
        except ClientError as exc:
            if _error_code(exc) in ("BucketAlreadyOwnedByYou",):
                return
            self._raise("create", None, exc)
        except BotoCoreError as exc:
            self._raise("create", None, exc)

    def lifecycle_rule(self, days: int = DEFAULT_LIFECYCLE_DAYS) -> dict[str, Any]:
        """A `put_bucket_lifecycle_configuration` body expiring this store's objects after `days` days."""
        return {
            "Rules": [
                {
                    "ID": "genmill-expiry-safety-net",
                    "Status": "Enabled",
                    "Filter": {"Prefix": self.prefix},
                    "Expiration": {"Days": days},
                    "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 1},
                }
            ]
        }

    def lifecycle_rule_hint(self, days: int = DEFAULT_LIFECYCLE_DAYS) -> str:
        """How to add the optional lifecycle rule, as text for operators (genmill never changes bucket policy).

        Expiry is enforced by genmill's reaper through the blob index either way; the rule only removes objects
        the index never learnt about (a crash between upload and index write). Keep `days` above the longest
        retention (3 days) so the rule never deletes a file whose URL is still valid.
        """
        body = json.dumps(self.lifecycle_rule(days), indent=2)
        return (
            f"Optional safety net: expire objects under s3://{self.bucket}/{self.prefix} after {days} days.\n"
            f"aws s3api put-bucket-lifecycle-configuration --bucket {self.bucket} "
            f"--lifecycle-configuration file://lifecycle.json\n"
            f"with lifecycle.json:\n{body}\n"
        )

    # -- internals ---------------------------------------------------------------------------------------------

    def _object_key(self, key: str) -> str:
        if not _valid_key(key):
            raise ValueError(f"blob key {key!r} is not a relative path")
        return self.prefix + key

    def _raise(self, action: str, key: str | None, exc: Exception) -> NoReturn:
        """Translate a botocore error into a genmill error with a message an operator can act on."""
        where = f"s3://{self.bucket}/{self.prefix}{key}" if key is not None else f"S3 bucket {self.bucket!r}"
        if isinstance(exc, ClientError):
            code = _error_code(exc)
            if code in _MISSING_BUCKET_CODES:
                raise StorageConfigError(f"S3 bucket {self.bucket!r} does not exist") from exc
            if code in _ACCESS_CODES:
                raise StorageConfigError(
                    f"S3 refused access to {where} ({code}): check the credentials and bucket policy"
                ) from exc
            if code in _REGION_CODES:
                raise StorageConfigError(
                    f"S3 bucket {self.bucket!r} is in another region or endpoint ({code})"
                ) from exc
            raise StorageError(f"could not {action} {where}: S3 answered {code or 'an error'}") from exc
        if isinstance(exc, NoCredentialsError | PartialCredentialsError):
            raise StorageConfigError("no usable S3 credentials were found (settings or the AWS chain)") from exc
        if isinstance(exc, BotoConnectionError):
            raise StorageError(f"could not {action} {where}: the S3 endpoint is unreachable") from exc
        raise StorageError(f"could not {action} {where}: {type(exc).__name__}") from exc


def _error_code(exc: ClientError) -> str:
    error = exc.response.get("Error") or {}
    code = str(error.get("Code") or "")
    if not code:
        status = (exc.response.get("ResponseMetadata") or {}).get("HTTPStatusCode")
        code = str(status or "")
    return code


def _valid_key(key: str) -> bool:
    """Keys are relative paths made by genmill; refusing `.`/`..` segments keeps URLs and local copies unambiguous."""
    if not key or key.startswith("/") or "\\" in key or "\x00" in key:
        return False
    return all(part not in ("", ".", "..") for part in key.split("/"))


def _normalise_prefix(prefix: str) -> str:
    prefix = prefix.strip().strip("/")
    if prefix and not _valid_key(prefix):
        raise StorageConfigError(f"the S3 prefix {prefix!r} is not a relative path")
    return f"{prefix}/" if prefix else ""


def _endpoint_hosts(endpoint: str, region: str, custom: str | None) -> frozenset[tuple[str, int]]:
    """The (host, port) pairs this store's URLs use: the client's endpoint, plus AWS's aliases without one."""
    parts = urlsplit(endpoint)
    default_port = 443 if parts.scheme == "https" else 80
    hosts = {((parts.hostname or "").lower(), parts.port or default_port)}
    if not custom and (parts.hostname or "").endswith("amazonaws.com"):
        aliases = ["s3.amazonaws.com"]
        if region:
            aliases += [
                f"s3.{region}.amazonaws.com",
                f"s3-{region}.amazonaws.com",
                f"s3.dualstack.{region}.amazonaws.com",
            ]
        hosts.update((alias, 443) for alias in aliases)
    return frozenset(hosts)
