"""The backends one worker serves: which catalog entries it can run, and a model cache.

Models load lazily on first use and stay loaded between tasks. Under a memory budget per device (CPU RAM, GPU
memory) the least recently used model that is not running is unloaded to make room; every load is counted and
logged, so thrashing is visible.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from genmill.backends.base import Backend
from genmill.domain.catalog import Catalog

log = logging.getLogger("genmill.worker")


@dataclass(frozen=True)
class BackendStatus:
    name: str
    available: bool
    reason: str
    entries: tuple[tuple[str, str], ...]


class BackendSet:
    def __init__(
        self,
        backends: list[Backend],
        catalog: Catalog,
        *,
        enabled: set[str] | None = None,
        memory_budgets: dict[str, int] | None = None,
    ) -> None:
        self.statuses: list[BackendStatus] = []
        self._by_entry: dict[tuple[str, str], Backend] = {}
        self._locks: dict[str, threading.Lock] = {}
        self.memory_budgets = memory_budgets or {}  # device -> bytes; a device without a budget is unlimited
        self._cache = threading.Lock()
        self._loaded: OrderedDict[str, Backend] = OrderedDict()  # least recently used first
        self._in_use: dict[str, int] = {}
        self.load_counts: dict[str, int] = {}
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
            self.statuses.append(BackendStatus(backend.name, availability.ok, availability.reason, entries))
            if not availability.ok:
                continue
            self._locks[backend.name] = threading.Lock()
            for entry in entries:
                self._by_entry.setdefault(entry, backend)

    def capabilities(self) -> list[tuple[str, str]]:
        return sorted(self._by_entry)

    def can_run(self, model: str, task_type: str) -> bool:
        return (model, task_type) in self._by_entry

    def backend_for(self, model: str, task_type: str) -> Backend:
        return self._by_entry[(model, task_type)]

    @contextmanager
    def using(self, backend: Backend) -> Iterator[None]:
        """Hold the backend's model loaded (never evicted) for the duration of a run."""
        with self._cache:
            self._in_use[backend.name] = self._in_use.get(backend.name, 0) + 1
        try:
            self.ensure_loaded(backend)
            yield
        finally:
            with self._cache:
                self._in_use[backend.name] -= 1

    def ensure_loaded(self, backend: Backend) -> None:
        with self._cache:
            if backend.name in self._loaded:
                self._loaded.move_to_end(backend.name)
                return
        with self._locks[backend.name]:
            with self._cache:
                if backend.name in self._loaded:
                    return
                evict = self._victims(backend)
            for victim in evict:
                victim.unload()
                log.info("unloaded backend %s (%s memory budget)", victim.name, victim.device)
            started = time.perf_counter()
            backend.load()
            with self._cache:
                self._loaded[backend.name] = backend
                self.load_counts[backend.name] = self.load_counts.get(backend.name, 0) + 1
            log.info(
                "loaded backend %s in %.2fs (load #%d)",
                backend.name,
                time.perf_counter() - started,
                self.load_counts[backend.name],
            )

    def _victims(self, backend: Backend) -> list[Backend]:
        """Least recently used idle models of the same device to unload so `backend` fits its budget."""
        budget = self.memory_budgets.get(backend.device)
        if not budget or not backend.memory_bytes:
            return []
        same = [b for b in self._loaded.values() if b.device == backend.device]
        used = sum(b.memory_bytes for b in same)
        victims = []
        for candidate in same:  # oldest first
            if used + backend.memory_bytes <= budget:
                break
            if self._in_use.get(candidate.name, 0):
                continue
            victims.append(candidate)
            used -= candidate.memory_bytes
            del self._loaded[candidate.name]
        return victims

    def loaded(self) -> list[str]:
        with self._cache:
            return list(self._loaded)
