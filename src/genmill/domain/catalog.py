"""Catalog types: what a (model, task_type) pair accepts, what it costs, how long its outputs live.

Pure data and pure functions: the catalog entries themselves live with their model families in `genmill.models`
(assembled by `genmill.catalog`), beside the backends that say which entries they can run.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict

USD = 10_000_000
"""Credits in one US dollar (a $0.02 task consumes 200000)."""


def usd(amount: float) -> int:
    """Dollars to integer credits, rounded to the nearest credit."""
    return round(amount * USD)


class TaskInput(BaseModel):
    """Base of every catalog input model.

    Unknown fields are kept (PiAPI clients send extra keys that some models ignore) and echoed back, but every
    declared field is validated with its range and default.
    """

    model_config = ConfigDict(extra="allow", populate_by_name=True)


PriceFn = Callable[[Any], int]
"""A price function receives the validated input model and returns integer credits."""

IMAGE_RETENTION = timedelta(days=3)
VIDEO_RETENTION = timedelta(days=3)
HUG_VIDEO_RETENTION = timedelta(days=1)
UPLOAD_RETENTION = timedelta(hours=24)
GENERATED_INPUT_WINDOW = timedelta(hours=3)
"""Operations that take a generated image as input are accepted only within this window of its creation."""
ORIGIN_WINDOW = timedelta(hours=3)
"""A derived operation (upscale, variation, extend, ...) is accepted this long after its origin task was created."""
PRIVATE_ORIGIN_WINDOW = timedelta(days=3)
"""The same window when the derived task runs on the account's own private pool (PiAPI's host-your-account)."""

UsagePriceFn = Callable[[Any, dict[str, Any]], int]
"""Credits for what a completed task's output actually holds (frames, seconds, tokens), given the validated input
model and the output; the settlement consumes the smaller of it and the frozen price and releases the rest."""


@dataclass(frozen=True)
class DerivedFrom:
    """An entry whose task works on an earlier task's result (Midjourney upscale, Kling extend_video, ...).

    The input names the earlier task in `field`; a create is refused (400, naming the field) unless that task is
    the same account's, is completed, is of one of `models` (and of `task_types` when given) and was created
    within `ORIGIN_WINDOW` (`PRIVATE_ORIGIN_WINDOW` on a private pool). Another account's task is refused exactly
    like a task that does not exist. A backend reads the origin through `RunContext.origin()`.
    """

    models: tuple[str, ...]
    task_types: tuple[str, ...] = ()
    field: str = "origin_task_id"


@dataclass(frozen=True)
class CatalogEntry:
    """One (model, task_type) pair of the Unified API."""

    model: str
    task_type: str
    input_model: type[TaskInput]
    price: PriceFn
    family: str
    retention: timedelta = IMAGE_RETENTION
    description: str = ""
    # Input fields that name media which, when they point at an output this server generated, must be younger
    # than GENERATED_INPUT_WINDOW (API.md: upscale, variation, ... within 3 hours).
    generated_input_fields: tuple[str, ...] = field(default_factory=tuple)
    derived_from: DerivedFrom | None = None
    """Set for operations on an earlier task's result; None for tasks that stand alone."""
    usage_price: UsagePriceFn | None = None
    """Set where the frozen price is a cap (per frame, per second, per token): what the output really used."""
    usage_type: str = "quota"
    """PiAPI's `meta.usage.type` for this entry: "quota", "point" (Luma, Hailuo) or "llm"."""
    usage_type_by_input: Callable[[Any], str] | None = None
    """Where the type depends on the input (Kling 3.0 reports "point", older versions "quota"): the validated
    input's type; `usage_type` otherwise."""

    @property
    def key(self) -> tuple[str, str]:
        return (self.model, self.task_type)

    def usage_type_of(self, inputs: TaskInput) -> str:
        """The `meta.usage.type` a task of this entry with these inputs reports (kept with the task at create)."""
        return self.usage_type_by_input(inputs) if self.usage_type_by_input is not None else self.usage_type

    def price_of(self, inputs: TaskInput) -> int:
        credits = int(self.price(inputs))
        if credits < 0:
            raise ValueError(f"negative price for {self.model}/{self.task_type}")
        return credits


class Catalog:
    """An immutable-after-build index of catalog entries."""

    def __init__(self, entries: Iterable[CatalogEntry] = ()) -> None:
        self._entries: dict[tuple[str, str], CatalogEntry] = {}
        for entry in entries:
            self.add(entry)

    def add(self, entry: CatalogEntry) -> None:
        if entry.key in self._entries:
            raise ValueError(f"duplicate catalog entry {entry.model}/{entry.task_type}")
        self._entries[entry.key] = entry

    def get(self, model: str, task_type: str) -> CatalogEntry | None:
        return self._entries.get((model, task_type))

    def models(self) -> set[str]:
        return {m for m, _ in self._entries}

    def task_types(self, model: str) -> list[str]:
        return sorted(t for m, t in self._entries if m == model)

    def __iter__(self) -> Iterator[CatalogEntry]:
        return iter(self._entries.values())

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: object) -> bool:
        return key in self._entries
