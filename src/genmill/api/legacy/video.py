"""The legacy video routes: Dream Machine (`/api/luma/v1/video`, its extend and fetch) and Kling
(`/api/kling/v1/video` and its fetch), in PiAPI's `{code, data, message}` envelope, errors included."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from genmill.api.deps import AccountDep, CreatingAccountDep, ServicesDep
from genmill.api.envelope import ok
from genmill.api.legacy.common import create_unified, read_task
from genmill.api.openapi import KEYED, errors
from genmill.domain.legacy import kling, luma

router = APIRouter(responses=errors(*KEYED))
CREATE_ERRORS = errors(402, 403, 413)


@router.post(
    "/api/luma/v1/video",
    summary="Dream Machine text or image to video (legacy)",
    tags=["legacy: luma"],
    responses=CREATE_ERRORS,
)
async def luma_video(body: luma.LumaVideoRequest, account: CreatingAccountDep, services: ServicesDep) -> dict[str, Any]:
    return ok({"task_id": await create_unified(services, account, luma.to_create(body), luma.RENAMES)})


@router.post(
    "/api/luma/v1/video/{task_id}/extend",
    summary="Continue a Dream Machine video (legacy)",
    tags=["legacy: luma"],
    responses={**CREATE_ERRORS, **errors(404)},
)
async def luma_extend(
    task_id: str, body: luma.LumaExtendRequest, account: CreatingAccountDep, services: ServicesDep
) -> dict[str, Any]:
    """The video in the path must be one of the account's Luma tasks (404 otherwise, as for its fetch); the
    unified create then checks it like any `origin_task_id` (completed, within the origin window)."""
    await read_task(services, account, task_id, luma.ENTRIES)
    return ok({"task_id": await create_unified(services, account, luma.to_extend(task_id, body), luma.RENAMES)})


@router.get(
    "/api/luma/v1/video/{task_id}",
    summary="Get a Dream Machine task (legacy)",
    tags=["legacy: luma"],
    responses=errors(404),
)
async def luma_fetch(task_id: str, account: AccountDep, services: ServicesDep) -> dict[str, Any]:
    return ok(luma.fetch_view(await read_task(services, account, task_id, luma.ENTRIES)))


@router.post(
    "/api/kling/v1/video",
    summary="Kling text or image to video (legacy)",
    tags=["legacy: kling"],
    responses=CREATE_ERRORS,
)
async def kling_video(
    body: kling.KlingVideoRequest, account: CreatingAccountDep, services: ServicesDep
) -> dict[str, Any]:
    return ok({"task_id": await create_unified(services, account, kling.to_create(body), kling.RENAMES)})


@router.post(
    "/api/kling/v1/video/{task_id}/extend",
    summary="Extend a Kling video by about 4.5 s (legacy)",
    tags=["legacy: kling"],
    responses={**CREATE_ERRORS, **errors(404)},
)
async def kling_extend(
    task_id: str, body: kling.KlingExtendRequest, account: CreatingAccountDep, services: ServicesDep
) -> dict[str, Any]:
    """The video in the path must be one of the account's Kling tasks (404 otherwise, as for its fetch)."""
    await read_task(services, account, task_id, kling.ENTRIES)
    return ok({"task_id": await create_unified(services, account, kling.to_extend(task_id, body), kling.RENAMES)})


@router.get(
    "/api/kling/v1/video/{task_id}", summary="Get a Kling task (legacy)", tags=["legacy: kling"], responses=errors(404)
)
async def kling_fetch(task_id: str, account: AccountDep, services: ServicesDep) -> dict[str, Any]:
    return ok(kling.fetch_view(await read_task(services, account, task_id, kling.ENTRIES)))
