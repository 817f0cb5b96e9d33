"""A price quote: what a create with this body would cost, validated as a create validates it, storing nothing.

The dashboard's playground shows the price before anyone submits, and scripts can ask the same question; the
answer comes from the same rules as the create (`TaskEngine.entry_for`, `validate_input`, `price`), so a quote
and the credits a create freezes never disagree. Nothing is stored, frozen or counted against a quota.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from genmill.domain.catalog import USD
from genmill.domain.records import PUBLIC_POOL
from genmill.engine.tasks import TaskEngine, normalise_config
from genmill.errors import InputRejected, InvalidRequest
from genmill.worker.backendset import served_by_json


@dataclass(frozen=True)
class Quote:
    model: str
    task_type: str
    price_credits: int
    available: bool
    reason: str
    served_by: dict[str, object] | None
    usage_type: str

    def wire(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "task_type": self.task_type,
            "price_credits": self.price_credits,
            "equivalent_in_usd": round(self.price_credits / USD, 7),
            "usage_type": self.usage_type,
            "available": self.available,
            "reason": self.reason,
            "served_by": self.served_by,
        }


def quote(
    engine: TaskEngine, account_id: str, model: str, task_type: str, raw: dict[str, Any], config: dict[str, Any] | None
) -> Quote:
    """The price a create would freeze (the most it can cost: entries billed by use consume at most this).

    A bad field is the same 400 the create answers. An entry this deployment cannot run is still priced, with
    `available: false` and the reason, so a form can say so before the user fills it in."""
    entry = engine.entry_for(model, task_type)
    inputs = engine.validate_input(entry, raw)
    wire_config = normalise_config(config)
    pool = account_id if wire_config["service_mode"] == "private" else PUBLIC_POOL
    available = engine.serving.accepts(model, task_type, pool)
    if available:
        try:
            engine.serving.check_request(entry, inputs, pool)
        except InputRejected as exc:  # what the backend cannot honour, worded as the create words it
            raise InvalidRequest(f"input.{exc.message}") from exc
    return Quote(
        model=entry.model,
        task_type=entry.task_type,
        price_credits=engine.price(entry, inputs, pool),
        available=available,
        reason="" if available else engine.serving.why_not(model, task_type),
        served_by=served_by_json(engine.serving.backends.served_by(model, task_type)) if available else None,
        usage_type=entry.usage_type_of(inputs),
    )
