"""What a completed task's output really used, in credits: the one reading of `CatalogEntry.usage_price`.

Both the worker gate (in-process and remote workers) and the calls the API process runs itself (the
OpenAI-compatible API, `engine/inline.py`) settle through it, so a per-frame video and a per-token chat are billed
by the same rule.
"""

from __future__ import annotations

import logging
from typing import Any

from pydantic import ValidationError

from genmill.domain.catalog import Catalog
from genmill.domain.records import Task
from genmill.domain.settlement import usage_charge

log = logging.getLogger("genmill.engine.usage")


def usage_credits(catalog: Catalog, task: Task, output: dict[str, Any]) -> int | None:
    """What the task's output really used, in its own credits (None: the frozen price is the price).

    Computed here, for both transports, from the catalog entry's `usage_price`, the task's stored (validated)
    input and the output the worker reports; scaled to the task's price, so a private pool's discount applies
    to it too. An output the usage price cannot read (a backend that does not report the quantity) costs the
    frozen cap, as before usage billing existed; an input that no longer validates is logged and costs the cap.
    """
    entry = catalog.get(task.model, task.task_type)
    if entry is None or entry.usage_price is None:
        return None
    try:
        inputs = entry.input_model.model_validate(task.input)
        usage = int(entry.usage_price(inputs, output))
        list_price = entry.price_of(inputs)
    except (ValidationError, ValueError, TypeError) as exc:
        log.warning(
            "task %s: usage price of %s/%s failed (%s); the frozen price is consumed",
            task.task_id,
            task.model,
            task.task_type,
            exc,
        )
        return None
    return usage_charge(max(0, usage), list_price, task.price)
