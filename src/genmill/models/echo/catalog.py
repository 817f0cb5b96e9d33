"""Diagnostics: `genmill/echo` `echo` returns its input, so the task system can be measured without model time.

A real catalog entry (validated, priced, stored, claimed, completed like any other) whose backend does no model
work: benchmarks, health checks and smoke tests use it to exercise create → claim → run → complete end to end.
`sleep_ms` keeps the task in `processing` for a while, so dispatch, progress and cancellation can be observed.

It is free: `ENTRIES` prices it at 0 credits. A deployment that wants it metered builds its catalog with
`echo_entry(price_credits=N)` in place of the default entry.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

from genmill.domain.catalog import IMAGE_RETENTION, CatalogEntry
from genmill.models.schema import TaskInput

MODEL = "genmill/echo"
TASK_TYPE = "echo"
FAMILY = "echo"
MAX_SLEEP_MS = 10_000


class Echo(TaskInput):
    payload: Any = Field(
        default_factory=dict, description="Any JSON value; the task's output returns it unchanged as `echo`."
    )
    sleep_ms: int = Field(
        0,
        ge=0,
        le=MAX_SLEEP_MS,
        description="Milliseconds to stay in `processing` before answering (0 to 10,000), with progress reported.",
    )


def echo_entry(*, price_credits: int = 0) -> CatalogEntry:
    """The `genmill/echo` entry at a fixed price in credits (0 by default)."""
    if price_credits < 0:
        raise ValueError("price_credits must not be negative")

    def price(_inputs: Any) -> int:
        return price_credits

    return CatalogEntry(
        model=MODEL,
        task_type=TASK_TYPE,
        input_model=Echo,
        price=price,
        family=FAMILY,
        retention=IMAGE_RETENTION,
        description="Diagnostics: returns `payload` as `echo` after `sleep_ms`; no model work, free by default.",
    )


ENTRIES: list[CatalogEntry] = [echo_entry()]
