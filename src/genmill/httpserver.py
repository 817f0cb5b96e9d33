"""How `genmill serve` runs uvicorn: connection limits and timeouts that hold with no proxy in front.

uvicorn on its own closes an idle keep-alive connection only after it has answered a request on it. A
connection that never sends a byte, or sends its request head one byte every few seconds (slow loris), stays
open for ever, and its limit on concurrency only answers 503 to requests: idle sockets beyond it still hold
their file descriptors until the process cannot accept another connection, `/healthz` included. So:

- **Header timeout** (`GENMILL_HEADER_TIMEOUT_SECONDS`): a connection must send a complete request head within
  that many seconds of opening, or of the answer to its previous request; otherwise it is closed. uvicorn's
  parsers have no such timer and hide their progress through a head, so `ConnectionGuard` watches what they do
  show: whether the connection has a request in flight (its `cycle`) or is waiting for one. A sweep a few times
  per timeout closes what waited too long; requests in flight, however long (an event stream, `Prefer: wait`),
  are never touched. One sweep for all connections costs less than a timer per connection and relies on
  nothing but that attribute, which both of uvicorn's HTTP/1.1 parsers keep (a test runs both).
- **Keep-alive** (`GENMILL_KEEP_ALIVE_SECONDS`): uvicorn's own timer, after each answer.
- **Connection cap** (`GENMILL_MAX_CONNECTIONS`, lowered to fit the open-file limit): a connection that would
  pass it closes the connections that have waited longest for a request (idle keep-alives, slow lorises), so a
  flood of idle sockets cannot lock real clients out; only when every connection has a request in flight is the
  newcomer refused, with a 503 and `Retry-After`. uvicorn's `limit_concurrency` is not used: it neither frees
  a descriptor nor lets a newcomer in, it answers 503 to everyone while the flood lasts.
- **Open files**: the soft `RLIMIT_NOFILE` is raised to the hard limit at start (the soft default of 1,024 is
  what a flood of 1,124 idle sockets exhausted).
- **Malloc arenas** (`limit_malloc_arenas`): glibc gives each new thread its own heap, up to 8 per core, and
  those heaps keep what they freed; the server's 40 request threads turned that into most of its RSS growth
  under load.
"""

from __future__ import annotations

import asyncio
import ctypes
import json
import logging
import os
import platform
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, cast

log = logging.getLogger("genmill.http")

RESERVED_FILES = 256
"""Descriptors kept for everything but client connections: database pool, blobs, model files, webhooks, logs."""

LINGER_SECONDS = 1.0
"""How long a refused connection stays half-open so the client reads its 503 rather than a reset."""

_BODY = json.dumps({"code": 503, "data": None, "message": "the server has too many open connections; retry"}).encode()
SERVICE_UNAVAILABLE = (
    b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nretry-after: 1\r\nconnection: close\r\n"
    + f"content-length: {len(_BODY)}\r\n\r\n".encode()
    + _BODY
)


def raise_open_file_limit() -> int:
    """Raise this process's soft limit on open files to its hard limit; the soft limit now in force (0 where the
    platform has none)."""
    try:
        import resource
    except ImportError:  # pragma: no cover - not POSIX
        return 0
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
    if target > soft:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError) as exc:  # pragma: no cover - some platforms cap below the hard limit
            log.warning("could not raise the open-file limit from %d to %d: %s", soft, target, exc)
    return int(soft)


MALLOC_ARENAS = 2
"""glibc malloc arenas of a `genmill serve` process unless MALLOC_ARENA_MAX says otherwise."""

_M_ARENA_MAX = -8
"""`mallopt`'s parameter number for the arena limit (malloc.h)."""


def limit_malloc_arenas(arenas: int = MALLOC_ARENAS) -> bool:
    """Cap this process's glibc malloc arenas at `arenas`; whether the cap was set by this call.

    Left alone, glibc creates a heap per thread that allocates, up to 8 per core, and a heap keeps the memory
    its thread freed (a freed block amid live ones cannot go back to the system). The API process runs its sync
    work on anyio's 40 threads; under the bench's SQLite create load each got a heap, each held SQLite page
    caches and request objects for a while, and the heaps ended up holding about twice what was in use (32 MB
    free of 72 MB after 20 s, growing with the run) while Python's own objects did not grow. Two arenas keep
    the same work in two heaps that reuse their free blocks; the threads spend most of their time in SQLite or
    waiting with the interpreter lock released, so they rarely contend for a heap.

    Must run before the process starts threads: glibc fixes the limit when it first needs more than 8 arenas.
    An operator's MALLOC_ARENA_MAX (which glibc itself reads at start) wins, and nothing happens off glibc.
    """
    if "MALLOC_ARENA_MAX" in os.environ or platform.libc_ver()[0] != "glibc":
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # pragma: no cover - a static or unusual build
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(_M_ARENA_MAX, arenas))


def connection_cap(wanted: int, open_files: int) -> int:
    """The connection cap that fits under `open_files` with `RESERVED_FILES` to spare (0: no known limit)."""
    if open_files <= 0:
        return wanted
    return max(16, min(wanted, open_files - RESERVED_FILES))


@dataclass
class _Waiting:
    """One connection as the guard last saw it: which request it was on, and since when it has had none."""

    transport: asyncio.BaseTransport
    cycle: Any
    since: float | None


def _in_request(connection: asyncio.Protocol) -> bool:
    """Whether uvicorn's protocol has a request in flight (its head arrived, its answer is not complete)."""
    cycle = getattr(connection, "cycle", None)
    return cycle is not None and not getattr(cycle, "response_complete", True)


class ConnectionGuard:
    """The header timeout and the connection cap for the connections of one server (all on its event loop)."""

    def __init__(
        self, max_connections: int, header_timeout: float, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.max_connections = max_connections
        self.header_timeout = header_timeout
        self.sweep_seconds = min(1.0, header_timeout / 4)
        self._clock = clock
        self._open: dict[asyncio.Protocol, _Waiting] = {}
        self._sweeper: asyncio.TimerHandle | None = None
        self.timed_out = 0
        self.shed = 0
        self.refused = 0

    @property
    def open_connections(self) -> int:
        return len(self._open)

    def admit(self, connection: asyncio.Protocol, transport: asyncio.BaseTransport) -> bool:
        """Count a new connection; False when it must be refused (the cap is reached and none is idle)."""
        now = self._clock()
        self._open[connection] = _Waiting(transport, None, now)
        if self._sweeper is None:
            self._sweeper = asyncio.get_running_loop().call_later(self.sweep_seconds, self._sweep)
        if len(self._open) <= self.max_connections:
            return True
        # Over the cap: close the connections that have waited longest for a request, with some headroom so that
        # the next newcomers do not each pay for a scan.
        headroom = max(1, self.max_connections // 32)
        excess = len(self._open) - self.max_connections + headroom
        for victim in self._longest_waiting(now, excluding=connection)[:excess]:
            self._close(victim)
            self.shed += 1
        if len(self._open) <= self.max_connections:
            return True
        self.forget(connection)
        self.refused += 1
        return False

    def forget(self, connection: asyncio.Protocol) -> None:
        self._open.pop(connection, None)

    def _longest_waiting(self, now: float, *, excluding: asyncio.Protocol) -> list[asyncio.Protocol]:
        waiting = []
        for connection, seen in self._open.items():
            if connection is not excluding and self._waiting_since(connection, seen, now) is not None:
                waiting.append((seen.since or now, connection))
        waiting.sort(key=lambda item: item[0])
        return [connection for _, connection in waiting]

    def _waiting_since(self, connection: asyncio.Protocol, seen: _Waiting, now: float) -> float | None:
        """When the connection started waiting for a request head (None while it has a request in flight)."""
        if _in_request(connection):
            seen.cycle, seen.since = getattr(connection, "cycle", None), None
            return None
        cycle = getattr(connection, "cycle", None)
        if seen.since is None or seen.cycle is not cycle:  # it answered a request since the last look
            seen.cycle, seen.since = cycle, now
        return seen.since

    def _close(self, connection: asyncio.Protocol) -> None:
        seen = self._open.pop(connection, None)
        if seen is not None and not seen.transport.is_closing():
            seen.transport.close()

    def _sweep(self) -> None:
        now = self._clock()
        for connection, seen in list(self._open.items()):
            since = self._waiting_since(connection, seen, now)
            if since is not None and now - since >= self.header_timeout:
                self._close(connection)
                self.timed_out += 1
        loop = asyncio.get_running_loop()
        self._sweeper = loop.call_later(self.sweep_seconds, self._sweep) if self._open else None


def refuse(transport: asyncio.BaseTransport) -> None:
    """Answer 503 and close gracefully: half-close, then close after `LINGER_SECONDS` (or at the client's EOF),
    so that a request the client already sent does not turn the answer into a connection reset."""
    writer = cast(asyncio.WriteTransport, transport)  # uvloop's transports do not subclass asyncio's
    writer.write(SERVICE_UNAVAILABLE)
    if writer.can_write_eof():
        writer.write_eof()
        asyncio.get_running_loop().call_later(LINGER_SECONDS, writer.close)
    else:
        writer.close()


class _Guarded(asyncio.Protocol):
    """Put in front of a uvicorn HTTP protocol class by `guarded_protocol`."""

    guard: ClassVar[ConnectionGuard]
    refused = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        if not self.guard.admit(self, transport):
            self.refused = True
            refuse(transport)

    def data_received(self, data: bytes) -> None:
        if not self.refused:  # a refused connection's request is read and dropped while it lingers
            super().data_received(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self.guard.forget(self)
        super().connection_lost(exc)


def guarded_protocol(base: type[asyncio.Protocol], guard: ConnectionGuard) -> type[asyncio.Protocol]:
    """uvicorn's HTTP protocol class `base` with `guard` watching its connections."""
    return type(f"Guarded{base.__name__}", (_Guarded, base), {"guard": guard})


def default_protocol() -> type[asyncio.Protocol]:
    """The HTTP/1.1 protocol uvicorn would choose: httptools when installed, else h11."""
    from uvicorn.protocols.http.auto import AutoHTTPProtocol

    return AutoHTTPProtocol


@dataclass(frozen=True)
class ServerLimits:
    """GENMILL_KEEP_ALIVE_SECONDS, GENMILL_HEADER_TIMEOUT_SECONDS and GENMILL_MAX_CONNECTIONS."""

    keep_alive_seconds: int = 5
    header_timeout_seconds: float = 10.0
    max_connections: int = 2048


def serve(
    app: Any,
    *,
    host: str,
    port: int,
    log_level: str,
    limits: ServerLimits,
    sockets: list[socket.socket] | None = None,
) -> None:
    """Run `app` with uvicorn under `limits` until it is told to stop; on `sockets` already listening when given
    (`genmill serve --processes`), else on `host`:`port`."""
    import uvicorn

    open_files = raise_open_file_limit()
    cap = connection_cap(limits.max_connections, open_files)
    if cap < limits.max_connections:
        log.warning(
            "at most %d connections (GENMILL_MAX_CONNECTIONS is %d, the open-file limit %d)",
            cap,
            limits.max_connections,
            open_files,
        )
    guard = ConnectionGuard(cap, limits.header_timeout_seconds)
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level=log_level,
        access_log=False,
        log_config=None,  # uvicorn logs through the root handler genmill.logs set up (text or JSON)
        http=guarded_protocol(default_protocol(), guard),
        ws="none",
        timeout_keep_alive=limits.keep_alive_seconds,
    )
    uvicorn.Server(config).run(sockets=sockets)
