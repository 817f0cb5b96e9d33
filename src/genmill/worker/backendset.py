"""The backends one worker serves: which catalog entries it can run, and the model cache that loads them
(`genmill.worker.model_cache`: per-device budgets, shared residents counted once, least recently used eviction).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from genmill.backends.base import Backend
from genmill.domain.catalog import Catalog
from genmill.errors import OutOfDeviceMemory
from genmill.worker.model_cache import ModelCache

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
        memory_margin_bytes: int = 0,
        cache: ModelCache | None = None,
    ) -> None:
        """`memory_budgets` maps a device or kind of device to bytes (`model_cache.AUTO`: its free memory less
        `memory_margin_bytes`); a device without a budget is unlimited. `cache` replaces the model cache (tests
        inject device probes through it)."""
        self.statuses: list[BackendStatus] = []
        self._by_entry: dict[tuple[str, str], Backend] = {}
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
            self.statuses.append(BackendStatus(backend.name, availability.ok, availability.reason, entries))
            if not availability.ok:
                continue
            for entry in entries:
                self._by_entry.setdefault(entry, backend)

    def capabilities(self) -> list[tuple[str, str]]:
        return sorted(self._by_entry)

    def can_run(self, model: str, task_type: str) -> bool:
        return (model, task_type) in self._by_entry

    def backend_for(self, model: str, task_type: str) -> Backend:
        return self._by_entry[(model, task_type)]

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
