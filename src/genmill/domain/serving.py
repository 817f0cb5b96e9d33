"""Which worker can run a catalog entry for a pool: the rules behind "this deployment serves it".

A deployment serves an entry for a pool when one of its own backends can run it (only for the public pool, and
only in a process that runs workers: an API-only replica runs no model) or when a worker of that pool registered
it and was seen recently. The engine reads the registry and the backends; these functions decide.
"""

from __future__ import annotations

from collections.abc import Iterable

from genmill.domain.catalog import Catalog
from genmill.domain.records import PUBLIC_POOL

Entry = tuple[str, str]
"""A catalog entry's key: (model, task_type)."""


def runs_in_process(pool: str, *, runs_workers: bool) -> bool:
    """Whether this process's own backends run the tasks of `pool`: in-process workers take public tasks only."""
    return runs_workers and pool == PUBLIC_POOL


def entries_served(pool: str, *, in_process: Iterable[Entry], remote: set[Entry], runs_workers: bool) -> set[Entry]:
    """The entries some worker can run for `pool`: this process's backends where they run its tasks, and the
    entries remote workers of the pool registered."""
    local = set(in_process) if runs_in_process(pool, runs_workers=runs_workers) else set()
    return local | remote


def served_names(served: Iterable[Entry], catalog: Catalog) -> list[str]:
    """`model/task_type` of every served entry that is in the catalog, sorted (what a refusal lists)."""
    return sorted(f"{model}/{task_type}" for model, task_type in served if (model, task_type) in catalog)


def not_served_message(model: str, task_type: str, pool: str, served: list[str], why: str) -> str:
    """The 400's message for an entry no worker of `pool` can run, naming what the pool does serve."""
    where = "this account's private pool" if pool != PUBLIC_POOL else "this deployment"
    field = "config.service_mode" if pool != PUBLIC_POOL else "model"
    return (
        f"{field}: {model}/{task_type} is in the catalog but no worker of {where} can run it"
        f"{f' ({why})' if why else ''}; {where} serves: {', '.join(served) or 'nothing yet'}"
    )
