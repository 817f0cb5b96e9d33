"""Webhook endpoints (our additions): every delivery and attempt of a task, replay, the account signing secret."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from genmill.api.deps import AccountDep, ServicesDep
from genmill.api.envelope import ok
from genmill.api.openapi import KEYED, errors
from genmill.domain.timefmt import rfc3339

router = APIRouter(tags=["webhooks"], responses=errors(*KEYED))


@router.get(
    "/api/v1/task/{task_id}/webhooks", summary="Webhook deliveries of a task, with every attempt", responses=errors(404)
)
def list_deliveries(task_id: str, account: AccountDep, services: ServicesDep) -> dict[str, Any]:
    deliveries = []
    for item in services.tasks.deliveries(account.account_id, task_id):  # 404 for unknown or foreign tasks
        row = item["row"]
        deliveries.append(
            {
                "delivery_id": row.delivery_id,
                "event_id": row.event_id,
                "event": row.kind,
                "task_status": row.task_status,
                "endpoint": row.endpoint,
                "state": row.state,
                "attempts": row.attempts,
                "next_attempt_at": rfc3339(row.next_attempt_at) if row.state == "pending" else None,
                "delivered_at": rfc3339(row.delivered_at) if row.delivered_at else None,
                "last_status_code": row.last_status_code,
                "last_error": row.last_error,
                "history": [
                    {
                        "attempted_at": rfc3339(a.attempted_at),
                        "status_code": a.status_code,
                        "latency_ms": a.latency_ms,
                        "error": a.error,
                    }
                    for a in item["attempts"]
                ],
            }
        )
    return ok({"task_id": task_id, "deliveries": deliveries})


@router.post(
    "/api/v1/task/{task_id}/webhooks/{delivery_id}/replay",
    summary="Send a settled delivery again",
    responses=errors(404, 413),  # any request body over GENMILL_MAX_REQUEST_BYTES is a 413
)
def replay_delivery(task_id: str, delivery_id: str, account: AccountDep, services: ServicesDep) -> dict[str, Any]:
    services.tasks.replay_delivery(account.account_id, task_id, delivery_id)
    return ok({"delivery_id": delivery_id, "state": "pending"}, message="delivery scheduled")


@router.get("/account/webhook_secret", summary="The account's Standard Webhooks signing secret")
def signing_secret(account: AccountDep, services: ServicesDep) -> dict[str, Any]:
    return ok({"signing_secret": services.accounts.signing_secret(account.account_id)})
