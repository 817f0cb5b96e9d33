"""The backends one worker serves: which catalog entries it can run, and the model cache that loads them
(`genmill.worker.model_cache`: per-device budgets, shared residents counted once, least recently used eviction).

An entry is served only by a backend that runs the model it names, unless the operator let a stand-in serve it
(`StandIns`, GENMILL_STAND_INS): a backend whose `served_by(entry).stand_in` is True and is not enabled leaves the
entry to the next backend, or unserved, with the reason kept for `genmill models` and `/api/v1/models`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from genmill.backends.base import Backend, ServedBy
from genmill.domain.catalog import Catalog, CatalogEntry, TaskInput
from genmill.errors import OutOfDeviceMemory
from genmill.worker.model_cache import ModelCache

log = logging.getLogger("genmill.worker")

Key = tuple[str, str]


@dataclass(frozen=True)
class StandIns:
    """Which stand-ins the operator enabled (GENMILL_STAND_INS): `all`, `none`, or a comma-separated list of
    backend names (`musicgen`), models (`Qubico/ace-step`) and entries (`Qubico/ace-step/txt2audio`)."""

    every: bool = False
    names: frozenset[str] = frozenset()

    @classmethod
    def parse(cls, text: str) -> StandIns:
        """Raises ValueError naming the problem for `all` or `none` mixed with other names."""
        words = {w.strip() for w in text.split(",") if w.strip()}
        lowered = {w.lower() for w in words}
        if lowered & {"all", "none"} and len(words) > 1:
            raise ValueError(f"{text!r}: 'all' and 'none' stand alone; list backends or entries otherwise")
        if lowered == {"all"}:
            return cls(every=True)
        if lowered == {"none"}:
            return cls()
        return cls(names=frozenset(words))

    def allows(self, backend: str, entry: CatalogEntry) -> bool:
        if self.every:
            return True
        return bool(self.names & {backend, entry.model, f"{entry.model}/{entry.task_type}"})


NO_STAND_INS = StandIns()
ALL_STAND_INS = StandIns(every=True)


def served_by_json(served: ServedBy | None) -> dict[str, object] | None:
    """The wire form of `ServedBy` (`/api/v1/models`, the task's `detail`)."""
    if served is None:
        return None
    return {"model": served.model, "stand_in": served.stand_in, "limits": list(served.limits)}


@dataclass(frozen=True)
class BackendStatus:
    name: str
    available: bool
    reason: str
    entries: tuple[Key, ...]
    served_by: dict[Key, ServedBy] = field(default_factory=dict)
    """What this backend runs for each of its entries (available backends only)."""
    refused: dict[Key, str] = field(default_factory=dict)
    """Entries it could run but does not serve here, and why (a stand-in the operator did not enable)."""


class BackendSet:
    def __init__(
        self,
        backends: list[Backend],
        catalog: Catalog,
        *,
        enabled: set[str] | None = None,
        stand_ins: StandIns = NO_STAND_INS,
        memory_budgets: dict[str, int] | None = None,
        memory_margin_bytes: int = 0,
        cache: ModelCache | None = None,
    ) -> None:
        """`stand_ins` says which stand-ins may serve entries (none by default); `memory_budgets` maps a device
        or kind of device to bytes (`model_cache.AUTO`: its free memory less `memory_margin_bytes`); a device
        without a budget is unlimited. `cache` replaces the model cache (tests inject device probes through it)."""
        self.statuses: list[BackendStatus] = []
        self._by_entry: dict[Key, Backend] = {}
        self._served_by: dict[Key, ServedBy] = {}
        self.refused: dict[Key, str] = {}
        """Entries no backend here serves because their only runner is a stand-in not enabled, and why."""
        self.cache = cache or ModelCache(memory_budgets, margin_bytes=memory_margin_bytes)
        for backend in backends:
            entries = tuple(e for e in backend.entries if e in catalog)
            if enabled is not None and backend.name not in enabled:
                self.statuses.append(BackendStatus(backend.name, False, "disabled by GENMILL_BACKENDS", entries))
                continue
            try:
                availability = backend.availability()
            except Exception as exc:  # an availability probe must never stop the server
                self.statuses.append(BackendStatus(backend.name, False, f"availability check failed: {exc}", entries))
                continue
            if not availability.ok:
                self.statuses.append(BackendStatus(backend.name, False, availability.reason, entries))
                continue
            served, refused = self._sort_entries(backend, catalog, entries, stand_ins)
            self.statuses.append(BackendStatus(backend.name, True, "", entries, served, refused))
            for key, served_by in served.items():
                if key not in refused and key not in self._by_entry:
                    self._by_entry[key] = backend
                    self._served_by[key] = served_by
        for key in self._by_entry:
            self.refused.pop(key, None)

    def _sort_entries(
        self, backend: Backend, catalog: Catalog, entries: tuple[Key, ...], stand_ins: StandIns
    ) -> tuple[dict[Key, ServedBy], dict[Key, str]]:
        """What `backend` runs for each entry, and the entries it may not serve (stand-ins not enabled)."""
        served: dict[Key, ServedBy] = {}
        refused: dict[Key, str] = {}
        for key in entries:
            entry = catalog.get(*key)
            assert entry is not None  # `entries` holds catalog keys only
            try:
                served_by = backend.served_by(entry)
            except Exception as exc:  # like availability: one broken backend must not stop the server
                refused[key] = f"served_by failed: {exc}"
                continue
            served[key] = served_by
            if served_by.stand_in and not stand_ins.allows(backend.name, entry):
                refused[key] = (
                    f"stand-in not enabled: {served_by.model} stands in for {entry.model}; set "
                    f"GENMILL_STAND_INS={backend.name} (or all) to serve it"
                )
                self.refused.setdefault(key, refused[key])
        return served, refused

    def capabilities(self) -> list[Key]:
        return sorted(self._by_entry)

    def can_run(self, model: str, task_type: str) -> bool:
        return (model, task_type) in self._by_entry

    def backend_for(self, model: str, task_type: str) -> Backend:
        return self._by_entry[(model, task_type)]

    def served_by(self, model: str, task_type: str) -> ServedBy | None:
        """What runs the entry here, or None when nothing here serves it."""
        return self._served_by.get((model, task_type))

    def why_not(self, model: str, task_type: str) -> str:
        """Why this set does not serve an entry ("" when it does or nothing here knows the entry)."""
        key = (model, task_type)
        if key in self._by_entry:
            return ""
        if key in self.refused:
            return self.refused[key]
        return next((s.reason for s in self.statuses if key in s.entries and s.reason), "")

    def check_request(self, entry: CatalogEntry, inputs: TaskInput) -> None:
        """Let the backend serving `entry` refuse inputs it cannot honour, before the task is created (raises
        `genmill.errors.InputRejected`); nothing happens for entries served elsewhere."""
        backend = self._by_entry.get(entry.key)
        if backend is not None:
            backend.check_request(entry, inputs)

    def backends(self) -> list[Backend]:
        """The available backends, each once."""
        return list({id(b): b for b in self._by_entry.values()}.values())

    @contextmanager
    def using(self, backend: Backend) -> Iterator[None]:
        """Hold the backend's model loaded (never evicted) for the duration of a run."""
        with self.cache.using(backend):
            yield

    def ensure_loaded(self, backend: Backend) -> None:
        self.cache.ensure_loaded(backend)

    def recover(self, backend: Backend) -> int:
        """Free the device after `backend` ran out of memory; see `ModelCache.recover`."""
        return self.cache.recover(backend)

    def memory_error(self, backend: Backend, exc: BaseException) -> OutOfDeviceMemory:
        return self.cache.memory_error(backend, exc)

    @property
    def load_counts(self) -> dict[str, int]:
        return self.cache.load_counts

    def loaded(self) -> list[str]:
        return self.cache.loaded()
