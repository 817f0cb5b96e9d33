"""`GET /api/v1/models` (our addition): the catalog, with what this deployment can run and each input schema."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from genmill.api.deps import ServicesDep
from genmill.api.envelope import ok
from genmill.domain.records import PUBLIC_POOL

router = APIRouter(tags=["models"])


@router.get("/api/v1/models", summary="The model catalog and what this deployment serves")
def list_models(services: ServicesDep) -> dict[str, Any]:
    entries = []
    served = set(services.tasks.served_models(PUBLIC_POOL))
    for entry in sorted(services.catalog, key=lambda e: e.key):
        entries.append(
            {
                "model": entry.model,
                "task_type": entry.task_type,
                "family": entry.family,
                "available": f"{entry.model}/{entry.task_type}" in served,
                "output_retention_seconds": int(entry.retention.total_seconds()),
                "description": entry.description,
                "input_schema": entry.input_model.model_json_schema(),
            }
        )
    backends = [
        {
            "name": s.name,
            "available": s.available,
            "reason": s.reason,
            "entries": [f"{m}/{t}" for m, t in s.entries],
        }
        for s in services.backends.statuses
    ]
    return ok({"models": entries, "backends": backends})
