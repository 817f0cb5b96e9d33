"""Queueing for entries no worker is serving right now: which creates wait for a worker, and for how long.

GPU workers restart (a rolling deploy, a crash, a new machine starting). Refusing every create for their
entries meanwhile fails clients for a gap of minutes, so a create is accepted (the task waits `pending`) when a
worker serves the entry now, when one served it recently (GENMILL_SERVED_RECENTLY_SECONDS), or when the
operator declared the entry (GENMILL_QUEUE_MODELS). An entry that nobody serves, served or declared is still a
400: the model named is the model run, and nobody pays for a task that can never start.

A queued task must not wait forever either: one that waited longer than its entry's limit
(GENMILL_MAX_PENDING_SECONDS) with no worker to run it fails with code 10004 and its credits are released. The
wait counts from when the task became pending, or from when a worker serving its entry was last seen if that was
later: a backlog behind live workers is not a missing worker, and a task queued across a restart gets the whole
limit from the moment its workers went away.

The reaper's sweep (`genmill.store.waits`) finds the candidates and executes these decisions with the store's
clock; the engine reads the settings once into a `QueuePolicy`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta

from genmill.domain.catalog import Catalog
from genmill.domain.failures import FailureCode, TaskFailure
from genmill.domain.records import PUBLIC_POOL
from genmill.domain.timefmt import rfc3339

EVERY_ENTRY = "*"
DEFAULT_MAX_PENDING_SECONDS = 600.0


def names_entry(spec: str, model: str, task_type: str) -> bool:
    """Whether a setting's item names the entry: `*`, its model (every task type) or `model/task_type`."""
    return spec in (EVERY_ENTRY, model, f"{model}/{task_type}")


def _items(value: str) -> list[str]:
    return [item.strip() for item in value.split(",") if item.strip()]


def _seconds(text: str, item: str) -> float:
    try:
        seconds = float(text)
    except ValueError:
        seconds = math.nan
    if not math.isfinite(seconds) or seconds <= 0:
        raise ValueError(f"{item!r}: the wait must be a positive number of seconds")
    return seconds


@dataclass(frozen=True)
class QueuePolicy:
    """Which entries queue without a worker (`declared`) and how long their tasks may wait (`waits`)."""

    declared: tuple[str, ...] = ()
    """Items of GENMILL_QUEUE_MODELS: `*`, a model, or `model/task_type`."""
    default_wait: float = DEFAULT_MAX_PENDING_SECONDS
    waits: tuple[tuple[str, float], ...] = ()
    """Per-entry limits of GENMILL_MAX_PENDING_SECONDS: (a model or `model/task_type`, seconds)."""

    @classmethod
    def parse(cls, queue_models: str = "", max_pending: str = "") -> QueuePolicy:
        """The policy of the two settings; `ValueError` naming the bad item (the server does not start).

        `max_pending` is comma-separated: a bare number (or `*=N`) is the limit of every entry, `model=N` and
        `model/task_type=N` are limits of their own; the most specific one applies.
        """
        default = DEFAULT_MAX_PENDING_SECONDS
        waits: list[tuple[str, float]] = []
        for item in _items(max_pending):
            spec, equals, value = item.rpartition("=")
            spec = spec.strip() if equals else EVERY_ENTRY
            seconds = _seconds(value.strip(), item)
            if not spec:
                raise ValueError(f"{item!r}: name a model or model/task_type before '='")
            if spec == EVERY_ENTRY:
                default = seconds
            else:
                waits.append((spec, seconds))
        return cls(declared=tuple(_items(queue_models)), default_wait=default, waits=tuple(waits))

    def declares(self, model: str, task_type: str) -> bool:
        """Whether the operator declared the entry: its tasks queue even before any worker served it."""
        return any(names_entry(spec, model, task_type) for spec in self.declared)

    def max_wait(self, model: str, task_type: str) -> timedelta:
        """How long a task of the entry may wait pending with no worker: its own limit, its model's, or the
        default."""
        exact = f"{model}/{task_type}"
        for wanted in (exact, model):
            for spec, seconds in self.waits:
                if spec == wanted:
                    return timedelta(seconds=seconds)
        return timedelta(seconds=self.default_wait)

    def shortest_wait(self) -> timedelta:
        """The smallest limit of any entry (a task younger than this cannot be overdue)."""
        return timedelta(seconds=min([self.default_wait, *(seconds for _, seconds in self.waits)]))

    def unknown_names(self, catalog: Catalog) -> list[str]:
        """Items of either setting that name no catalog entry (a typo would otherwise queue or limit nothing)."""
        models = catalog.models()
        specs = [*self.declared, *(spec for spec, _ in self.waits)]
        return [
            spec
            for spec in specs
            if spec != EVERY_ENTRY and spec not in models and tuple(spec.rsplit("/", 1)) not in catalog
        ]


def accepts(*, serving_now: bool, served_recently: bool, declared: bool) -> bool:
    """Whether a create for an entry is accepted: some worker serves it now, one served it recently (it is
    probably restarting), or the operator declared it. Otherwise it is refused (400) before anyone pays."""
    return serving_now or served_recently or declared


def waiting_since(pending_since: datetime, last_served: datetime | None) -> datetime:
    """Where a pending task's wait for a worker starts: when it became pending, or when a worker serving its
    entry was last seen if that was later."""
    return pending_since if last_served is None else max(pending_since, last_served)


def waited_too_long(pending_since: datetime, last_served: datetime | None, now: datetime, limit: timedelta) -> bool:
    """Whether a pending task, pending since `pending_since`, whose entry a worker last served at `last_served`
    (None: never), has waited past `limit` at `now` and fails."""
    return now - waiting_since(pending_since, last_served) > limit


def no_worker_failure(
    model: str, task_type: str, pool: str, *, limit: timedelta, last_served: datetime | None
) -> TaskFailure:
    """The error of a task that waited past its limit: code 10004, saying which entry and pool found no worker."""
    where = "this deployment" if pool == PUBLIC_POOL else "this account's private pool"
    seconds = limit.total_seconds()
    seen = f"a worker serving it was last seen at {rfc3339(last_served)}" if last_served else "no worker served it"
    return TaskFailure(
        FailureCode.NO_WORKER,
        f"no worker of {where} ran {model}/{task_type} within {seconds:g} s; the task did not run and its credits "
        "were released",
        f"pending for longer than the {seconds:g} s limit while no worker served the entry ({seen})",
        {"max_pending_seconds": seconds, "last_worker_seen_at": rfc3339(last_served) if last_served else None},
    )
