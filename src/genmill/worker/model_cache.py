"""The worker's model cache: which backends are loaded, what they hold on each device, and what to unload.

Models load lazily on first use and stay loaded between tasks. What a loaded backend holds is a list of
`Resident`s (pipelines, transformers, shared encoders) per device; two backends naming the same resident (AI Hug
and Wan image-to-video read one pipeline, every FLUX.1 variant shares its text encoders and VAE) count it once.
Under a memory budget per device the least recently used idle backends whose residents nothing else needs are
unloaded, across all backends on that device, until the newcomer's new residents and its working memory fit;
unloading drops the references and then empties the device's allocator, so the memory really comes back.

Every load is counted and logged, so thrashing is visible. Out-of-memory recovery lives here too: `recover`
unloads everything idle on the device so the worker can retry a task once (see `genmill.worker.runtime`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from genmill.backends.base import Backend, Resident
from genmill.domain.placement import normalize_device
from genmill.errors import OutOfDeviceMemory

log = logging.getLogger("genmill.worker")

AUTO = -1
"""A budget of AUTO means: the device's free memory when the cache first needs it, less the margin."""

GIB = 1024**3


def device_kind(device: str) -> str:
    """ "cuda:1" -> "cuda"; budgets may be set per kind of device or per device."""
    return device.split(":", 1)[0]


def _free_bytes(device: str) -> int:
    from genmill.backends.memory_modes import device_free_bytes

    return device_free_bytes(device)


def _release(device: str) -> None:
    from genmill.backends.memory_modes import release_memory

    release_memory(device)


class ModelCache:
    """Loaded backends in least-recently-used order, under per-device memory budgets."""

    def __init__(
        self,
        budgets: dict[str, int] | None = None,
        *,
        margin_bytes: int = 0,
        free_bytes: Callable[[str], int] = _free_bytes,
        release: Callable[[str], None] = _release,
    ) -> None:
        """`budgets` maps a device ("cuda:1") or a kind of device ("cuda", "cpu") to bytes; 0 or a missing
        device means unlimited, `AUTO` the device's free memory at first use less `margin_bytes`.
        `free_bytes` and `release` are the device probes (injected by tests)."""
        self.budgets = dict(budgets or {})
        self.margin_bytes = margin_bytes
        self._free_bytes = free_bytes
        self._release = release
        self._resolved: dict[str, int] = {}
        self._lock = threading.Lock()
        self._load_locks: dict[str, threading.Lock] = {}
        self._loaded: OrderedDict[str, Backend] = OrderedDict()  # least recently used first
        self._holds: dict[str, list[Resident]] = {}
        self._in_use: dict[str, int] = {}
        self.load_counts: dict[str, int] = {}
        self.unload_counts: dict[str, int] = {}
        """Unloads per backend (evicted for the memory budget or after running out of memory), for /metrics."""

    # --- budgets -------------------------------------------------------------------------------------------------

    def budget(self, device: str) -> int:
        """The budget of `device` in bytes; 0 means unlimited."""
        device = normalize_device(device)
        if device in self._resolved:
            return self._resolved[device]
        budget = self.budgets.get(device, self.budgets.get(device_kind(device), 0))
        if budget == AUTO:
            held = sum(r.nbytes for r in self._held().values() if r.device == device)
            budget = max(1, self._free_bytes(device) + held - self.margin_bytes)
            log.info(
                "memory budget of %s: %.1f GiB (free memory less a %.1f GiB margin)",
                device,
                budget / GIB,
                self.margin_bytes / GIB,
            )
        self._resolved[device] = budget
        return budget

    def used(self, device: str) -> int:
        """Bytes the loaded backends hold on `device`, each shared resident counted once."""
        device = normalize_device(device)
        with self._lock:
            return sum(r.nbytes for r in self._held().values() if r.device == device)

    def used_by_device(self) -> dict[str, int]:
        """Bytes the loaded backends hold on each device they use (the operator's view of `used`)."""
        held: dict[str, int] = {}
        with self._lock:
            for resident in self._held().values():
                device = normalize_device(resident.device)
                held[device] = held.get(device, 0) + resident.nbytes
        return held

    # --- loading -------------------------------------------------------------------------------------------------

    @contextmanager
    def using(self, backend: Backend) -> Iterator[None]:
        """Hold the backend's model loaded (never evicted) for the duration of a run."""
        with self._lock:
            self._in_use[backend.name] = self._in_use.get(backend.name, 0) + 1
        try:
            self.ensure_loaded(backend)
            yield
        finally:
            with self._lock:
                self._in_use[backend.name] -= 1

    def ensure_loaded(self, backend: Backend) -> None:
        with self._lock:
            if backend.name in self._loaded:
                self._loaded.move_to_end(backend.name)
                return
            load_lock = self._load_locks.setdefault(backend.name, threading.Lock())
        with load_lock:
            with self._lock:
                if backend.name in self._loaded:
                    return
                victims = self._victims(backend)
            self._unload(victims, reason="memory budget")
            started = time.perf_counter()
            backend.load()
            with self._lock:
                self._loaded[backend.name] = backend
                self._holds[backend.name] = [
                    Resident(r.key, normalize_device(r.device), r.nbytes) for r in backend.residents()
                ]
                self.load_counts[backend.name] = self.load_counts.get(backend.name, 0) + 1
            log.info(
                "loaded backend %s in %.2fs (load #%d)",
                backend.name,
                time.perf_counter() - started,
                self.load_counts[backend.name],
            )

    def _held(self, skip: str = "") -> dict[str, Resident]:
        """Every resident of the loaded backends (but `skip`), by key. Callers hold `_lock`."""
        return {r.key: r for name, holds in self._holds.items() if name != skip for r in holds}

    def needs(self, backend: Backend) -> dict[str, int]:
        """Bytes per device that loading and running `backend` adds to what is loaded now."""
        with self._lock:
            return self._needs(backend)

    def _needs(self, backend: Backend) -> dict[str, int]:
        held = self._held()
        need: dict[str, int] = {}
        for resident in backend.residents():
            device = normalize_device(resident.device)
            if resident.key not in held:
                need[device] = need.get(device, 0) + resident.nbytes
        if backend.working_bytes:
            device = normalize_device(backend.device)
            need[device] = need.get(device, 0) + backend.working_bytes
        return need

    def _victims(self, backend: Backend) -> list[Backend]:
        """Least recently used idle backends to unload so that `backend` fits every device's budget; removed from
        the loaded set here. Callers hold `_lock`."""
        wanted = {r.key for r in backend.residents()}
        victims: list[Backend] = []
        for device, need in self._needs(backend).items():
            budget = self.budget(device)
            if not budget:
                continue
            for candidate in list(self._loaded.values()):  # oldest first
                used = sum(r.nbytes for r in self._held().values() if r.device == device)
                if used + need <= budget:
                    break
                if self._in_use.get(candidate.name, 0) or candidate is backend:
                    continue
                # A resident shared with another loaded backend is freed once both are gone (AI Hug and Wan
                # image-to-video), so a candidate counts if it holds anything the newcomer does not need.
                if not any(r.device == device and r.key not in wanted for r in self._holds.get(candidate.name, [])):
                    continue  # unloading it would free nothing on this device
                victims.append(candidate)
                del self._loaded[candidate.name]
                del self._holds[candidate.name]
        return victims

    def _unload(self, victims: list[Backend], *, reason: str) -> None:
        devices: set[str] = set()
        for victim in victims:
            try:
                victim.unload()
            except Exception:  # a failing unload must not stop the load that needs the room
                log.exception("unloading backend %s failed", victim.name)
            devices.add(normalize_device(victim.device))
            self.unload_counts[victim.name] = self.unload_counts.get(victim.name, 0) + 1
            log.info("unloaded backend %s (%s, %s)", victim.name, victim.device, reason)
        for device in sorted(devices):
            self._release(device)

    # --- out-of-memory recovery ----------------------------------------------------------------------------------

    def recover(self, backend: Backend) -> int:
        """After `backend` ran out of memory: unload every idle backend on its device (least recently used first),
        and `backend` itself when it is not loaded (a load that failed half way), then empty the allocator.
        Returns how many backends were unloaded."""
        device = normalize_device(backend.device)
        with self._lock:
            victims = [
                b
                for b in self._loaded.values()
                if b is not backend
                and not self._in_use.get(b.name, 0)
                and any(r.device == device for r in self._holds.get(b.name, []))
            ]
            for victim in victims:
                del self._loaded[victim.name]
                del self._holds[victim.name]
            partial = backend.name not in self._loaded
        if partial:
            try:
                backend.unload()
            except Exception:
                log.exception("unloading backend %s after an out-of-memory error failed", backend.name)
        self._unload(victims, reason="out of memory")
        self._release(device)
        return len(victims)

    def memory_error(self, backend: Backend, exc: BaseException) -> OutOfDeviceMemory:
        """The task's error once a retry ran out of memory too: what it needed and what the device had free."""
        device = normalize_device(backend.device)
        with self._lock:
            holds = self._holds.get(backend.name) or [
                Resident(r.key, normalize_device(r.device), r.nbytes) for r in backend.residents()
            ]
        needed = sum(r.nbytes for r in holds if r.device == device) + backend.working_bytes
        try:
            free = self._free_bytes(device)
        except Exception:
            free = -1
        need_text = f"about {needed / GIB:.1f} GiB" if needed else "more memory"
        free_text = f"{free / GIB:.1f} GiB is free" if free >= 0 else "the rest is in use"
        message = (
            f"GPU memory: {backend.name} needs {need_text} on {device} and only {free_text} after unloading the "
            "other models; choose a smaller memory mode for it (GENMILL_MEMORY_MODES) or run it on a larger GPU"
            if device_kind(device) == "cuda" or type(exc).__name__ == "OutOfMemoryError"
            else f"out of memory on {device}: {backend.name} needs {need_text} and only {free_text}"
        )
        return OutOfDeviceMemory(
            message,
            raw_message=f"{type(exc).__name__}: {exc}"[:2000],
            detail={"needed_bytes": needed, "free_bytes": free},
        )

    def loaded(self) -> list[str]:
        with self._lock:
            return list(self._loaded)
