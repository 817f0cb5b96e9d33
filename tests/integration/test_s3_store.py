"""Every BlobStore passes the same behaviour suite; the S3 store runs against moto's real S3-protocol server."""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

import httpx
import pytest
from botocore.exceptions import ClientError
from moto.server import ThreadedMotoServer

from genmill.errors import GenmillError
from genmill.settings import Settings
from genmill.storage import build_blob_store
from genmill.storage.blobstore import BlobStore, LocalBlobStore, MemoryBlobStore
from genmill.storage.s3 import MAX_PRESIGN_SECONDS, S3BlobStore, StorageConfigError, StorageError

CREDENTIALS: dict[str, Any] = {"access_key_id": "testing", "secret_access_key": "testing", "region": "us-east-1"}
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    """moto's S3 server on a free loopback port, with the developer's AWS configuration out of reach."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AWS_CONFIG_FILE", os.devnull)
        mp.setenv("AWS_SHARED_CREDENTIALS_FILE", os.devnull)
        mp.setenv("AWS_EC2_METADATA_DISABLED", "true")
        for name in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
            mp.delenv(name, raising=False)
        for name in (
            "AWS_SESSION_TOKEN",
            "AWS_DEFAULT_REGION",
            "AWS_REGION",
            "AWS_ENDPOINT_URL",
            "AWS_ENDPOINT_URL_S3",
            "AWS_WEB_IDENTITY_TOKEN_FILE",
            "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
            "AWS_CONTAINER_CREDENTIALS_FULL_URI",
        ):
            mp.delenv(name, raising=False)
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        server.start()
        host, port = server.get_host_and_port()
        try:
            yield f"http://{host}:{port}"
        finally:
            server.stop()


@pytest.fixture
def make_s3(s3_endpoint: str) -> Callable[..., S3BlobStore]:
    """Build a store on a fresh bucket (created) unless told otherwise."""

    def make(bucket: str | None = None, *, create: bool = True, **kwargs: Any) -> S3BlobStore:
        store = S3BlobStore(
            bucket or f"genmill-{uuid.uuid4().hex[:12]}", endpoint_url=s3_endpoint, **{**CREDENTIALS, **kwargs}
        )
        if create:
            store.ensure_bucket()
        return store

    return make


@pytest.fixture(params=["local", "memory", "s3"])
def blobs(request: pytest.FixtureRequest, tmp_path: Path) -> BlobStore:
    if request.param == "local":
        return LocalBlobStore(tmp_path / "blobs")
    if request.param == "memory":
        return MemoryBlobStore()
    make: Callable[..., S3BlobStore] = request.getfixturevalue("make_s3")
    return make(prefix="deploy-a")


# -- the same behaviour for every store ----------------------------------------------------------------------------


def test_put_read_round_trip_and_overwrite(blobs: BlobStore) -> None:
    blobs.put("outputs/t1/a.png", PNG, "image/png")
    assert blobs.read("outputs/t1/a.png") == PNG
    blobs.put("outputs/t1/a.png", b"second", "text/plain")
    assert blobs.read("outputs/t1/a.png") == b"second"


def test_missing_read_is_none(blobs: BlobStore) -> None:
    assert blobs.read("outputs/nobody/missing.png") is None


def test_delete_is_idempotent(blobs: BlobStore) -> None:
    blobs.put("uploads/acct/x.png", PNG, "image/png")
    blobs.delete("uploads/acct/x.png")
    assert blobs.read("uploads/acct/x.png") is None
    blobs.delete("uploads/acct/x.png")
    blobs.delete("uploads/acct/never-existed.png")


def test_keys_with_slashes_are_independent(blobs: BlobStore) -> None:
    blobs.put("outputs/task-1/deep/er/one.png", b"one", "image/png")
    blobs.put("outputs/task-1/two.png", b"two", "image/png")
    blobs.put("outputs/task-2/one.png", b"other", "image/png")
    assert blobs.read("outputs/task-1/deep/er/one.png") == b"one"
    assert blobs.read("outputs/task-1/two.png") == b"two"
    assert blobs.read("outputs/task-2/one.png") == b"other"
    assert blobs.read("outputs/task-1/deep") is None  # a "folder" is not an object
    blobs.delete("outputs/task-1/two.png")
    assert blobs.read("outputs/task-1/deep/er/one.png") == b"one"


def test_large_object(blobs: BlobStore) -> None:
    data = os.urandom(6 * 1024 * 1024 + 123)
    blobs.put("outputs/big/video.mp4", data, "video/mp4")
    assert blobs.read("outputs/big/video.mp4") == data


def test_concurrent_writers(blobs: BlobStore) -> None:
    def work(i: int) -> bytes | None:
        blobs.put(f"outputs/par/{i}.bin", str(i).encode(), "application/octet-stream")
        return blobs.read(f"outputs/par/{i}.bin")

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(work, range(24)))
    assert results == [str(i).encode() for i in range(24)]


# -- S3 only -------------------------------------------------------------------------------------------------------


def test_presigned_url_downloads_with_content_type(make_s3: Callable[..., S3BlobStore]) -> None:
    store = make_s3(prefix="deploy-a")
    key = "uploads/acct/0a1b-my photo+1é.png"
    store.put(key, PNG, "image/png")
    url = store.presigned_url(key, 3600)
    assert url is not None
    assert "X-Amz-Signature=" in url
    response = httpx.get(url)
    assert response.status_code == 200
    assert response.content == PNG
    assert response.headers["content-type"] == "image/png"


def test_presign_disabled_gives_none(make_s3: Callable[..., S3BlobStore]) -> None:
    store = make_s3(presign=False)
    store.put("outputs/t/a.png", PNG, "image/png")
    assert store.presigned_url("outputs/t/a.png", 60) is None


@pytest.mark.parametrize(
    ("asked", "expected"),
    [(3600, 3600), (0, 1), (-50, 1), (MAX_PRESIGN_SECONDS, 604800), (10**9, 604800)],
)
def test_presign_expiry_is_clamped(make_s3: Callable[..., S3BlobStore], asked: int, expected: int) -> None:
    url = make_s3(create=False).presigned_url("outputs/t/a.png", asked)
    assert url is not None
    assert parse_qs(urlsplit(url).query)["X-Amz-Expires"] == [str(expected)]


def test_key_from_url_round_trips_presigned_and_plain_urls(
    make_s3: Callable[..., S3BlobStore], s3_endpoint: str
) -> None:
    store = make_s3(prefix="/deploy-a/")
    assert store.prefix == "deploy-a/"
    for key in ("outputs/t1/a.png", "uploads/acct/0a1b-my photo+1é.png"):
        url = store.presigned_url(key, 600)
        assert url is not None
        assert store.key_from_url(url) == key
        plain = f"{s3_endpoint}/{store.bucket}/deploy-a/{quote(key)}"
        assert store.key_from_url(plain) == key
    port = urlsplit(s3_endpoint).port
    assert store.key_from_url(f"http://{store.bucket}.127.0.0.1:{port}/deploy-a/outputs/t1/a.png") == "outputs/t1/a.png"


def test_key_from_url_virtual_host_style_on_aws() -> None:
    """Without an endpoint the store signs AWS virtual-host URLs; signing is local, so no network is needed."""
    store = S3BlobStore("my-bucket", region="eu-west-1", access_key_id="a", secret_access_key="b", prefix="p")
    url = store.presigned_url("outputs/t/a b.png", 60)
    assert url is not None
    host = urlsplit(url).hostname or ""
    assert host.startswith("my-bucket.s3.") and host.endswith(".amazonaws.com")
    assert store.key_from_url(url) == "outputs/t/a b.png"
    for alias in (
        "https://my-bucket.s3.amazonaws.com/p/outputs/t/a.png",
        "https://s3.eu-west-1.amazonaws.com/my-bucket/p/outputs/t/a.png",
        "https://s3.amazonaws.com/my-bucket/p/outputs/t/a.png?X-Amz-Expires=5",
    ):
        assert store.key_from_url(alias) == "outputs/t/a.png"
    assert store.key_from_url("https://other.s3.amazonaws.com/p/outputs/t/a.png") is None
    assert store.key_from_url("https://s3.amazonaws.com/other/p/outputs/t/a.png") is None


def test_key_from_url_refuses_foreign_urls(make_s3: Callable[..., S3BlobStore], s3_endpoint: str) -> None:
    store = make_s3(prefix="deploy-a")
    bucket = store.bucket
    port = urlsplit(s3_endpoint).port
    other_port = port + 1 if port and port < 65535 else 1
    foreign = [
        f"{s3_endpoint}/other-bucket/deploy-a/outputs/t/a.png",
        f"{s3_endpoint}/{bucket}/deploy-b/outputs/t/a.png",
        f"{s3_endpoint}/{bucket}/outputs/t/a.png",
        f"{s3_endpoint}/{bucket}/deploy-a/",
        f"{s3_endpoint}/{bucket}/deploy-a/outputs/../secret.png",
        f"http://127.0.0.1:{other_port}/{bucket}/deploy-a/outputs/t/a.png",
        f"http://example.com/{bucket}/deploy-a/outputs/t/a.png",
        f"ftp://127.0.0.1:{port}/{bucket}/deploy-a/outputs/t/a.png",
        "/files/outputs/t/a.png",
        "data:image/png;base64,AAAA",
        "http://[::1",
        "",
    ]
    for url in foreign:
        assert store.key_from_url(url) is None, url


def test_prefix_keeps_deployments_apart(make_s3: Callable[..., S3BlobStore]) -> None:
    a = make_s3(prefix="deploy-a")
    b = S3BlobStore(a.bucket, endpoint_url=str(a.client.meta.endpoint_url), prefix="deploy-b", **CREDENTIALS)
    a.put("outputs/t/a.png", b"from a", "image/png")
    assert b.read("outputs/t/a.png") is None
    listed = a.client.list_objects_v2(Bucket=a.bucket)["Contents"]
    assert [item["Key"] for item in listed] == ["deploy-a/outputs/t/a.png"]


def test_invalid_keys_are_refused(make_s3: Callable[..., S3BlobStore]) -> None:
    store = make_s3(create=False)
    for key in ("", "/abs.png", "a/../b.png", "a//b.png", "./a.png"):
        with pytest.raises(ValueError):
            store.put(key, b"x", "text/plain")


def test_missing_bucket_becomes_a_genmill_error(make_s3: Callable[..., S3BlobStore]) -> None:
    store = make_s3("genmill-does-not-exist", create=False)
    operations: list[Callable[[], object]] = [
        lambda: store.put("outputs/t/a.png", PNG, "image/png"),
        lambda: store.read("outputs/t/a.png"),
        lambda: store.delete("outputs/t/a.png"),
    ]
    for operation in operations:
        with pytest.raises(GenmillError) as caught:
            operation()
        assert isinstance(caught.value, StorageConfigError)
        assert "genmill-does-not-exist" in caught.value.message
        assert isinstance(caught.value.__cause__, ClientError)


def test_unreachable_endpoint_becomes_a_genmill_error() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    store = S3BlobStore("b", endpoint_url=f"http://127.0.0.1:{port}", **CREDENTIALS)
    with pytest.raises(StorageError) as caught:
        store.read("outputs/t/a.png")
    assert "unreachable" in caught.value.message
    assert caught.value.status_code == 503


def test_ensure_bucket_is_idempotent_and_lifecycle_rule_applies(make_s3: Callable[..., S3BlobStore]) -> None:
    store = make_s3(prefix="deploy-a")
    store.ensure_bucket()
    hint = store.lifecycle_rule_hint()
    assert "put-bucket-lifecycle-configuration" in hint
    assert '"Days": 4' in hint
    store.client.put_bucket_lifecycle_configuration(Bucket=store.bucket, LifecycleConfiguration=store.lifecycle_rule())
    rules = store.client.get_bucket_lifecycle_configuration(Bucket=store.bucket)["Rules"]
    assert rules[0]["Expiration"] == {"Days": 4}
    assert rules[0]["Filter"] == {"Prefix": "deploy-a/"}


def test_build_blob_store_from_settings(tmp_path: Path, s3_endpoint: str) -> None:
    assert isinstance(build_blob_store(Settings(data_dir=tmp_path, blob_store="local")), LocalBlobStore)
    with pytest.raises(GenmillError, match="GENMILL_S3_BUCKET"):
        build_blob_store(Settings(data_dir=tmp_path, blob_store="s3", s3_bucket=""))
    settings = Settings(
        data_dir=tmp_path,
        blob_store="s3",
        s3_bucket=f"genmill-{uuid.uuid4().hex[:12]}",
        s3_endpoint_url=s3_endpoint,
        s3_region="us-east-1",
        s3_access_key_id="testing",
        s3_secret_access_key="testing",
        s3_prefix="cfg",
        s3_presign=False,
    )
    assert "testing" not in repr(settings).replace("s3_access_key_id='testing'", "")
    store = build_blob_store(settings)
    assert isinstance(store, S3BlobStore)
    assert (store.prefix, store.presign) == ("cfg/", False)
    store.ensure_bucket()
    store.put("outputs/t/a.png", PNG, "image/png")
    assert store.read("outputs/t/a.png") == PNG


def test_missing_credentials_become_a_configuration_error(s3_endpoint: str) -> None:
    """With no arguments and no AWS configuration (the fixture hides it), boto3's chain finds nothing."""
    store = S3BlobStore("b", endpoint_url=s3_endpoint, region="us-east-1")
    with pytest.raises(StorageConfigError, match="credentials"):
        store.read("outputs/t/a.png")
    with pytest.raises(StorageConfigError, match="credentials"):
        store.presigned_url("outputs/t/a.png", 60)


def test_ensure_bucket_outside_us_east_1(make_s3: Callable[..., S3BlobStore]) -> None:
    store = make_s3(region="eu-west-1")
    store.put("outputs/t/a.png", PNG, "image/png")
    assert store.read("outputs/t/a.png") == PNG


def test_key_from_url_with_an_endpoint_under_a_path() -> None:
    """Some gateways serve S3 below a path; signing is local, so the host need not exist."""
    store = S3BlobStore("b", endpoint_url="http://minio.internal:9000/s3", **CREDENTIALS)
    url = store.presigned_url("outputs/x y.png", 60)
    assert url is not None
    assert url.startswith("http://minio.internal:9000/s3/b/outputs/x%20y.png?")
    assert store.key_from_url(url) == "outputs/x y.png"
    assert store.key_from_url("http://minio.internal:9000/b/outputs/x.png") is None


def test_the_api_serves_outputs_and_uploads_from_s3(make_s3: Callable[..., S3BlobStore], tmp_path: Path) -> None:
    """Through the whole task path: uploads land in S3, inputs pointing at them are read from the store, outputs
    are handed out as presigned URLs that download directly from S3."""
    import base64

    from fastapi.testclient import TestClient
    from tests.support import PillowUpscale, png_bytes

    from genmill.app import Runtime, create_app
    from genmill.settings import Settings

    store = make_s3()
    settings = Settings(data_dir=tmp_path, public_url="http://testserver", workers=1)
    runtime = Runtime(settings, blobs=store, backends=[PillowUpscale()])
    account = runtime.store.accounts.create_account("a", credits=10**9)
    key, _ = runtime.store.accounts.create_key(account.account_id)
    headers = {"X-API-Key": key}
    with TestClient(create_app(settings, runtime=runtime, run_workers=False)) as client:
        data = base64.b64encode(png_bytes(5, 3)).decode()
        upload = client.post("/api/ephemeral_resource", headers=headers, json={"file_name": "a.png", "file_data": data})
        url = upload.json()["data"]["url"]
        assert url.startswith(str(store.client.meta.endpoint_url)) and "X-Amz-Signature" in url
        body = {"model": "Qubico/image-toolkit", "task_type": "upscale", "input": {"image": url, "scale": 2}}
        task_id = client.post("/api/v1/task", headers=headers, json=body).json()["data"]["task_id"]
        assert runtime.workers[0].run_once()
        task = client.get(f"/api/v1/task/{task_id}", headers=headers).json()["data"]
        assert task["status"] == "completed", task["error"]
        output = httpx.get(task["output"]["image_url"])
        assert output.status_code == 200 and output.headers["content-type"] == "image/png"
        from io import BytesIO

        from PIL import Image

        assert Image.open(BytesIO(output.content)).size == (10, 6)
    runtime.store.close()
