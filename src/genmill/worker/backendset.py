"""The backends one worker serves: which catalog entries it can run, and each model loaded once, lazily."""

from __future__ import annotations

import logging
import threading
import time
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
    def __init__(self, backends: list[Backend], catalog: Catalog, *, enabled: set[str] | None = None) -> None:
        self.statuses: list[BackendStatus] = []
        self._by_entry: dict[tuple[str, str], Backend] = {}
        self._loaded: set[str] = set()
        self._locks: dict[str, threading.Lock] = {}
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

    def ensure_loaded(self, backend: Backend) -> None:
        if backend.name in self._loaded:
            return
        with self._locks[backend.name]:
            if backend.name in self._loaded:
                return
            started = time.perf_counter()
            backend.load()
            self._loaded.add(backend.name)
            log.info("loaded backend %s in %.2fs", backend.name, time.perf_counter() - started)
