"""The legacy face swap routes: `POST /api/face_swap/v1/async` and `POST /api/face_swap/v1/fetch`.

Both answer PiAPI's envelope `{code, data, message}` (errors too, through the app's handlers). The mapping is
`genmill.domain.legacy.faceswap`; here the output image is read back for `result_type` base64.
"""

from __future__ import annotations

import base64
from typing import Any

from fastapi import APIRouter
from starlette.concurrency import run_in_threadpool

from genmill.api.deps import AccountDep, CreatingAccountDep, Services, ServicesDep
from genmill.api.envelope import ok
from genmill.api.legacy.common import create_unified, read_task, refused
from genmill.api.openapi import KEYED, errors
from genmill.domain.legacy import faceswap
from genmill.errors import GenmillError

router = APIRouter(tags=["legacy: face swap"], responses=errors(*KEYED, 413))


@router.post(
    "/api/face_swap/v1/async",
    summary="Create an image, multi-face or video face swap (legacy)",
    responses=errors(402, 403),
)
async def face_swap_async(
    body: faceswap.FaceSwapRequest, account: CreatingAccountDep, services: ServicesDep
) -> dict[str, Any]:
    try:
        create = faceswap.to_create(body)
    except ValueError as exc:
        raise refused(exc) from exc
    return ok({"task_id": await create_unified(services, account, create)})


@router.post("/api/face_swap/v1/fetch", summary="Get a face swap task (legacy)", responses=errors(404))
async def face_swap_fetch(body: faceswap.FetchRequest, account: AccountDep, services: ServicesDep) -> dict[str, Any]:
    task = await read_task(services, account, body.task_id, faceswap.ENTRIES)
    inline = await run_in_threadpool(output_base64, services, task) if faceswap.wants_base64(task) else None
    return ok(faceswap.fetch_view(task, inline))


def output_base64(services: Services, task: dict[str, Any]) -> str | None:
    """The completed task's output image as base64, or None when it has none or its file is gone (fetch then
    answers the URL, which says why when opened)."""
    url = (task.get("output") or {}).get("image_url")
    key = services.files.key_from_url(url) if task.get("status") == "completed" and isinstance(url, str) else None
    if key is None:
        return None
    try:
        return base64.b64encode(services.files.open(key).data).decode()
    except GenmillError:
        return None
