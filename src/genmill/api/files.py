"""Ephemeral uploads and serving stored files at the URLs the API hands out.

Files are served from the API's own origin, so a file must never act as a page there: every answer carries
`nosniff` (the browser keeps the declared type) and a sandboxing CSP (no script, no plugin, an opaque origin even
if opened), and only the media types in `genmill.domain.media_types.INLINE_TYPES` are served inline; anything
else (octet-stream, 3-D models, and whatever a file stored before the output rule says) is an attachment.
"""

from __future__ import annotations

import re
from typing import Any

from fastapi import APIRouter
from fastapi.responses import Response

from genmill.api.deps import CreatingAccountDep, ServicesDep
from genmill.api.envelope import ok
from genmill.api.openapi import KEYED, errors
from genmill.api.schemas import UploadCreate
from genmill.domain.catalog import UPLOAD_RETENTION
from genmill.domain.media_types import served_inline, served_type
from genmill.errors import FetchError, InvalidRequest, PayloadTooLarge
from genmill.net.media import content_type_for_extension, decode_inline, safe_file_name, sniff_content_type

router = APIRouter(tags=["files"])

BAD_UPLOAD = "Invalid request parameters"

FILE_CSP = "default-src 'none'; img-src 'self'; media-src 'self'; style-src 'unsafe-inline'; sandbox"
"""Nothing loads or runs but the file itself: the browser's own viewer of an image or a video shows the file
(img-src, media-src) with its built-in styles; `sandbox` (no allow-scripts) gives any document an opaque origin."""

_UNSAFE_NAME = re.compile(r"[^A-Za-z0-9._-]")


@router.post("/api/ephemeral_resource", summary="Upload a file kept for 24 hours", responses=errors(*KEYED, 413))
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


@router.get(
    "/files/{key:path}",
    summary="Download a stored file",
    response_class=Response,
    responses={
        200: {"description": "The file's bytes, with its media type", "content": {"*/*": {}}},
        **errors(404, 410),
    },
)
def download(key: str, services: ServicesDep) -> Response:
    stored = services.files.open(key)
    seconds = max(0, int((stored.blob.expires_at - stored.blob.created_at).total_seconds()))
    return Response(
        stored.data,
        media_type=served_type(stored.blob.content_type),
        headers=file_headers(stored.blob.key, stored.blob.content_type, seconds),
    )


def file_headers(key: str, content_type: str, max_age: int) -> dict[str, str]:
    """The headers of a stored file: cached privately for its lifetime, never sniffed, sandboxed, and inline only
    for the allow-listed media types (an attachment, named after the key, otherwise)."""
    name = _UNSAFE_NAME.sub("_", key.rsplit("/", 1)[-1]) or "file"
    disposition = "inline" if served_inline(content_type) else f'attachment; filename="{name}"'
    return {
        "Cache-Control": f"private, max-age={max_age}",
        "X-Content-Type-Options": "nosniff",
        "Content-Security-Policy": FILE_CSP,
        "Content-Disposition": disposition,
    }
