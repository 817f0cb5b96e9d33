"""Task records to the wire shape of API.md (the `TaskPublic` view); nothing internal leaks.

Pure, so the store can snapshot a task into its outbox event in the same transaction as the change.
"""

from __future__ import annotations

from typing import Any

from genmill.domain.records import Task
from genmill.domain.timefmt import rfc3339

NO_ERROR: dict[str, Any] = {"code": 0, "raw_message": "", "message": "", "detail": None}


def task_public(task: Task) -> dict[str, Any]:
    detail = task.detail
    logs = list(task.logs)
    if task.outputs_deleted_at is not None:
        detail = {
            **(detail or {}),
            "outputs_deleted": True,
            "outputs_deleted_at": rfc3339(task.outputs_deleted_at),
        }
        logs.append("the output files were deleted at the end of their retention period")
    error = task.error or NO_ERROR
    return {
        "task_id": task.task_id,
        "model": task.model,
        "task_type": task.task_type,
        "status": task.status.value,
        "config": task.config,
        "input": task.input,
        "output": task.output,
        "meta": {
            "created_at": rfc3339(task.created_at),
            "started_at": rfc3339(task.started_at),
            "ended_at": rfc3339(task.ended_at),
            "usage": {"type": task.usage_type, "frozen": task.frozen_credits, "consume": task.consumed_credits},
            "is_using_private_pool": task.pool != "public",
        },
        "detail": detail,
        "logs": logs,
        "error": {**NO_ERROR, **error},
    }
