"""Diagnostics: `genmill/echo` `echo` returns its input, so the task system can be measured without model time.

A real catalog entry (validated, priced, stored, claimed, completed like any other) whose backend does no model
work: benchmarks, health checks and smoke tests use it to exercise create → claim → run → complete end to end.
`sleep_ms` keeps the task in `processing` for a while, so dispatch, progress and cancellation can be observed.

`echo-derive` is the diagnostic of operations on an earlier task (PiAPI's upscale, variation, extend...): it
takes `origin_task_id`, naming an earlier `echo` or `echo-derive` task of the same account, and answers what it
saw of that task, so the origin rules (same account, completed, right model, within the window) and the worker's
view of the origin are exercised without any model family.

It is free: `ENTRIES` prices both at 0 credits. A deployment that wants them metered builds its catalog with
`echo_entries(price_credits=N)` in place of the default entries.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

from genmill.domain.catalog import IMAGE_RETENTION, CatalogEntry, DerivedFrom
from genmill.models.schema import TaskInput

MODEL = "genmill/echo"
TASK_TYPE = "echo"
DERIVE_TASK_TYPE = "echo-derive"
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


class EchoDerive(Echo):
    origin_task_id: str = Field(
        ...,
        min_length=1,
        max_length=100,
        description="An earlier completed `genmill/echo` task (echo or echo-derive) of this account, created within "
        "3 hours (3 days on the account's private pool).",
    )
    read_files: bool = Field(
        False, description="Also read every file the origin's output names (`*_url` values) and report its size."
    )


def _fixed(price_credits: int) -> Any:
    if price_credits < 0:
        raise ValueError("price_credits must not be negative")

    def price(_inputs: Any) -> int:
        return price_credits

    return price


def echo_derive_entry(*, price_credits: int = 0) -> CatalogEntry:
    """The `genmill/echo` `echo-derive` entry (an operation on an earlier echo task) at a fixed price."""
    return CatalogEntry(
        model=MODEL,
        task_type=DERIVE_TASK_TYPE,
        input_model=EchoDerive,
        price=_fixed(price_credits),
        family=FAMILY,
        retention=IMAGE_RETENTION,
        description="Diagnostics: an operation on an earlier echo task (`origin_task_id`); answers what it saw of it.",
        derived_from=DerivedFrom(models=(MODEL,), task_types=(TASK_TYPE, DERIVE_TASK_TYPE)),
    )


def echo_entries(*, price_credits: int = 0) -> list[CatalogEntry]:
    """Both `genmill/echo` entries at one fixed price in credits."""
    return [echo_entry(price_credits=price_credits), echo_derive_entry(price_credits=price_credits)]


def echo_entry(*, price_credits: int = 0) -> CatalogEntry:
    """The `genmill/echo` entry at a fixed price in credits (0 by default)."""
    price = _fixed(price_credits)
    return CatalogEntry(
        model=MODEL,
        task_type=TASK_TYPE,
        input_model=Echo,
        price=price,
        family=FAMILY,
        retention=IMAGE_RETENTION,
        description="Diagnostics: returns `payload` as `echo` after `sleep_ms`; no model work, free by default.",
    )


ENTRIES: list[CatalogEntry] = echo_entries()
