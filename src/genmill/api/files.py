"""Ephemeral uploads and serving stored files at the URLs the API hands out."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import Response

from genmill.api.deps import CreatingAccountDep, ServicesDep
from genmill.api.envelope import ok
from genmill.api.schemas import UploadCreate
from genmill.domain.catalog import UPLOAD_RETENTION
from genmill.errors import FetchError, InvalidRequest, PayloadTooLarge
from genmill.net.media import content_type_for_extension, decode_inline, safe_file_name, sniff_content_type

router = APIRouter(tags=["files"])

BAD_UPLOAD = "Invalid request parameters"


@router.post("/api/ephemeral_resource", summary="Upload a file kept for 24 hours")
def upload(body: UploadCreate, account: CreatingAccountDep, services: ServicesDep) -> dict[str, Any]:
    try:
        name = safe_file_name(body.file_name)
    except InvalidRequest as exc:
        raise InvalidRequest(f"{BAD_UPLOAD}: {exc.message}") from exc
    if body.file_data.strip().lower().startswith(("http://", "https://")):
        raise InvalidRequest(f"{BAD_UPLOAD}: file_data: must be base64 or a data: URI, not a URL")
    try:
        decoded = decode_inline(body.file_data, field="file_data", max_bytes=services.max_upload_bytes)
    except PayloadTooLarge as exc:
        raise InvalidRequest(f"{BAD_UPLOAD}: {exc.message}") from exc
    except FetchError as exc:
        raise InvalidRequest(f"{BAD_UPLOAD}: {exc.message}") from exc
    assert decoded is not None
    ext = name.rsplit(".", 1)[-1].lower()
    declared = content_type_for_extension(ext)
    sniffed = sniff_content_type(decoded.data)
    if sniffed is None:
        raise InvalidRequest(f"{BAD_UPLOAD}: file_data: the content is not a recognised media file")
    if sniffed.split("/")[0] != declared.split("/")[0] and not declared.startswith("model/"):
        raise InvalidRequest(f"{BAD_UPLOAD}: file_data: the content is {sniffed} but the name says .{ext} ({declared})")
    blob = services.files.save(
        decoded.data,
        kind="upload",
        ext=ext,
        content_type=sniffed,
        retention=UPLOAD_RETENTION,
        account_id=account.account_id,
        name=name,
    )
    return ok({"url": services.files.blob_url(blob)})


@router.get("/files/{key:path}", summary="Download a stored file", include_in_schema=True)
def download(key: str, services: ServicesDep) -> Response:
    stored = services.files.open(key)
    seconds = max(0, int((stored.blob.expires_at - stored.blob.created_at).total_seconds()))
    return Response(
        stored.data,
        media_type=stored.blob.content_type,
        headers={"Cache-Control": f"private, max-age={seconds}", "X-Content-Type-Options": "nosniff"},
    )
