"""`GET /api/v1/models` (our addition): the catalog, with what this deployment can run and each input schema.

`available` says a create is accepted (some worker serves the entry now, one served it recently, or the operator
declared it); `serving_now` says a worker can run it right now (otherwise its tasks wait for one).

Each entry says what really runs it here (`served_by`: the model, whether it stands in for the one named, and the
ways it honours the entry only in part), so that nobody pays before knowing; `reason` says why an entry is not
served ("stand-in not enabled: ..."). Entries served only by remote workers have `served_by: null` (the worker
protocol does not carry it yet; their tasks' `detail` does).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import ValidationError

from genmill.api.deps import ServicesDep
from genmill.api.envelope import ok
from genmill.domain.catalog import CatalogEntry
from genmill.domain.records import PUBLIC_POOL
from genmill.worker.backendset import served_by_json

router = APIRouter(tags=["models"])


def list_price(entry: CatalogEntry) -> int | None:
    """The credits a task of this entry is reserved at when its input is all defaults, or None when the price
    depends on a field without a default (an agent or a form can show it before anyone creates a task)."""
    try:
        return entry.price_of(entry.input_model.model_construct())
    except (ValidationError, AttributeError, TypeError, ValueError):
        return None


@router.get("/api/v1/models", summary="The model catalog, what this deployment serves and with which model")
def list_models(services: ServicesDep) -> dict[str, Any]:
    entries = []
    served = set(services.tasks.served_models(PUBLIC_POOL))
    now = set(services.tasks.serving_now(PUBLIC_POOL))
    local = services.backends
    for entry in sorted(services.catalog, key=lambda e: e.key):
        available = f"{entry.model}/{entry.task_type}" in served
        entries.append(
            {
                "model": entry.model,
                "task_type": entry.task_type,
                "family": entry.family,
                "available": available,
                "serving_now": f"{entry.model}/{entry.task_type}" in now,
                "served_by": served_by_json(local.served_by(*entry.key)) if available else None,
                "reason": "" if available else local.why_not(*entry.key),
                "output_retention_seconds": int(entry.retention.total_seconds()),
                "description": entry.description,
                "list_price_credits": list_price(entry),
                "input_schema": entry.input_model.model_json_schema(),
            }
        )
    backends = [
        {
            "name": s.name,
            "available": s.available,
            "reason": s.reason,
            "entries": [f"{m}/{t}" for m, t in s.entries],
            "served_by": {f"{m}/{t}": served_by_json(by) for (m, t), by in s.served_by.items()},
            "not_served": {f"{m}/{t}": why for (m, t), why in s.refused.items()},
        }
        for s in services.backends.statuses
    ]
    return ok({"models": entries, "backends": backends})
