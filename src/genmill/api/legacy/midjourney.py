"""The legacy Midjourney routes, `/mj/v2/*`: the ten creates, fetch, multi_fetch and cancel.

GoAPI's Midjourney API answered bare objects rather than the `{code, data, message}` envelope: a create
`{task_id, status: "success", message}`, a fetch the task object (`genmill.domain.legacy.midjourney`). Its
errors carried `status: "failed"` and a `message`; so that a client reading either the legacy or the unified
shape understands them, an error here is the envelope with `status: "failed"` and `task_id: ""` added
(`MidjourneyRoute`), at the HTTP status the unified API uses.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from starlette.concurrency import run_in_threadpool

from genmill.api.deps import AccountDep, CreatingAccountDep, Services, ServicesDep
from genmill.api.errors import validation_message
from genmill.api.legacy.common import create_unified, read_task, refused
from genmill.api.openapi import KEYED, errors
from genmill.domain.legacy import midjourney as mj
from genmill.domain.records import Account
from genmill.errors import GenmillError, NotFound

ENTRIES = {(mj.MODEL, task_type) for task_type in mj.TASK_TYPES}


def failed(status: int, message: str, retry_after: int | None = None) -> JSONResponse:
    """A legacy Midjourney error: the envelope plus GoAPI's `status: "failed"` and an empty `task_id`."""
    body = {"code": status, "data": None, "message": message, "status": "failed", "task_id": ""}
    headers = None if retry_after is None else {"Retry-After": str(retry_after)}
    return JSONResponse(body, status_code=status, headers=headers)


class MidjourneyRoute(APIRoute):
    """A route whose refusals (bad body, bad key, genmill's own errors) read as GoAPI's failed answer."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def legacy_errors(request: Request) -> Response:
            try:
                return await handler(request)
            except RequestValidationError as exc:
                return failed(400, validation_message(exc))
            except GenmillError as exc:
                return failed(exc.status_code, exc.message, exc.retry_after)

        return legacy_errors


router = APIRouter(tags=["legacy: midjourney"], responses=errors(*KEYED, 413), route_class=MidjourneyRoute)
CREATE_ERRORS = errors(402, 403)


async def create(task_type: str, body: mj.Webhook, account: Account, services: Services) -> dict[str, Any]:
    try:
        legacy = mj.to_create(task_type, body)
    except ValueError as exc:
        raise refused(exc) from exc
    return mj.created(await create_unified(services, account, legacy))


@router.post("/mj/v2/imagine", summary="Midjourney imagine (legacy)", responses=CREATE_ERRORS)
async def imagine(body: mj.ImagineRequest, account: CreatingAccountDep, services: ServicesDep) -> dict[str, Any]:
    return await create("imagine", body, account, services)


@router.post("/mj/v2/upscale", summary="Midjourney upscale (legacy)", responses=CREATE_ERRORS)
async def upscale(body: mj.UpscaleRequest, account: CreatingAccountDep, services: ServicesDep) -> dict[str, Any]:
    return await create("upscale", body, account, services)


@router.post("/mj/v2/variation", summary="Midjourney variation (legacy)", responses=CREATE_ERRORS)
async def variation(body: mj.VariationRequest, account: CreatingAccountDep, services: ServicesDep) -> dict[str, Any]:
    return await create("variation", body, account, services)


@router.post("/mj/v2/reroll", summary="Midjourney reroll (legacy)", responses=CREATE_ERRORS)
async def reroll(body: mj.RerollRequest, account: CreatingAccountDep, services: ServicesDep) -> dict[str, Any]:
    return await create("reroll", body, account, services)


@router.post("/mj/v2/describe", summary="Midjourney describe (legacy)", responses=CREATE_ERRORS)
async def describe(body: mj.DescribeRequest, account: CreatingAccountDep, services: ServicesDep) -> dict[str, Any]:
    return await create("describe", body, account, services)


@router.post("/mj/v2/seed", summary="Midjourney seed (legacy)", responses=CREATE_ERRORS)
async def seed(body: mj.SeedRequest, account: CreatingAccountDep, services: ServicesDep) -> dict[str, Any]:
    return await create("seed", body, account, services)


@router.post("/mj/v2/blend", summary="Midjourney blend (legacy)", responses=CREATE_ERRORS)
async def blend(body: mj.BlendRequest, account: CreatingAccountDep, services: ServicesDep) -> dict[str, Any]:
    return await create("blend", body, account, services)


@router.post("/mj/v2/inpaint", summary="Midjourney inpaint, Vary (Region) (legacy)", responses=CREATE_ERRORS)
async def inpaint(body: mj.InpaintRequest, account: CreatingAccountDep, services: ServicesDep) -> dict[str, Any]:
    return await create("inpaint", body, account, services)


@router.post("/mj/v2/outpaint", summary="Midjourney outpaint, Zoom Out (legacy)", responses=CREATE_ERRORS)
async def outpaint(body: mj.OutpaintRequest, account: CreatingAccountDep, services: ServicesDep) -> dict[str, Any]:
    return await create("outpaint", body, account, services)


@router.post("/mj/v2/pan", summary="Midjourney pan (legacy)", responses=CREATE_ERRORS)
async def pan(body: mj.PanRequest, account: CreatingAccountDep, services: ServicesDep) -> dict[str, Any]:
    return await create("pan", body, account, services)


@router.post("/mj/v2/fetch", summary="Get a Midjourney task (legacy)", responses=errors(404))
async def fetch(body: mj.TaskIdRequest, account: AccountDep, services: ServicesDep) -> dict[str, Any]:
    return mj.fetch_view(await read_task(services, account, body.task_id, ENTRIES))


@router.post("/mj/v2/multi_fetch", summary="Get several Midjourney tasks (legacy)")
async def multi_fetch(body: mj.MultiFetchRequest, account: AccountDep, services: ServicesDep) -> list[dict[str, Any]]:
    """The account's Midjourney tasks among `task_ids`, in the order asked; ids it has not are left out."""
    found = []
    for task_id in dict.fromkeys(body.task_ids):
        try:
            found.append(mj.fetch_view(await read_task(services, account, task_id, ENTRIES)))
        except NotFound:
            continue
    return found


@router.post("/mj/v2/cancel", summary="Cancel a pending Midjourney task (legacy)", responses=errors(404))
async def cancel(body: mj.TaskIdRequest, account: AccountDep, services: ServicesDep) -> dict[str, Any]:
    await read_task(services, account, body.task_id, ENTRIES)
    await run_in_threadpool(services.tasks.cancel, account.account_id, body.task_id)
    return {"task_id": body.task_id, "status": "success", "message": f"task {body.task_id} canceled"}
