"""An asyncio load generator over raw keep-alive HTTP/1.1 connections, closed-loop or at a fixed rate.

It speaks just enough HTTP for these servers (uvicorn answers with Content-Length), so the client costs far less
CPU per request than a general-purpose library: client and server share the machine's cores. Latencies of the
fixed-rate mode are measured from each request's scheduled time, so a stalled server is not hidden by the
generator waiting on it (no coordinated omission).
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import Counter
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

MakeRequest = Callable[[int], bytes]
"""Request number → the raw request bytes."""


def build_request(method: str, path: str, headers: dict[str, str] | None = None, body: bytes = b"") -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1"]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    if body or method in ("POST", "PUT", "PATCH"):
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of unsorted values; 0 for none."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


@dataclass
class Result:
    latencies: list[float] = field(default_factory=list)
    statuses: Counter[int] = field(default_factory=Counter)
    bodies: dict[int, bytes] = field(default_factory=dict)
    errors: int = 0
    elapsed: float = 0.0

    @property
    def count(self) -> int:
        return len(self.latencies)

    @property
    def rps(self) -> float:
        return self.count / self.elapsed if self.elapsed else 0.0

    def ms(self, q: float) -> float:
        return round(percentile(self.latencies, q) * 1000, 3)

    def summary(self) -> dict[str, Any]:
        return {
            "requests": self.count,
            "seconds": round(self.elapsed, 3),
            "rps": round(self.rps, 1),
            "p50_ms": self.ms(50),
            "p99_ms": self.ms(99),
            "max_ms": self.ms(100),
            "non_2xx": sum(n for code, n in self.statuses.items() if not 200 <= code < 300),
            "errors": self.errors,
        }


class Connection:
    def __init__(self, port: int) -> None:
        self.port = port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def request(self, raw: bytes) -> tuple[int, bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        assert self.reader is not None
        self.writer.write(raw)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        length = 0
        close = False
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            lowered = name.strip().lower()
            if lowered == b"content-length":
                length = int(value)
            elif lowered == b"connection" and value.strip().lower() == b"close":
                close = True
        body = await self.reader.readexactly(length) if length else b""
        if close:
            self.close()
        return status, body

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


async def _one(conn: Connection, raw: bytes, result: Result, index: int, started: float, keep: bool) -> None:
    try:
        status, body = await conn.request(raw)
    except (OSError, asyncio.IncompleteReadError, ValueError):
        conn.close()
        result.errors += 1
        return
    result.latencies.append(time.perf_counter() - started)
    result.statuses[status] += 1
    if keep:
        result.bodies[index] = body


async def closed_loop(port: int, make: MakeRequest, total: int, connections: int, *, keep: bool = False) -> Result:
    """`total` requests over `connections` connections, each sending its next request when the last answered."""
    result = Result()
    counter = iter(range(total))

    async def client() -> None:
        conn = Connection(port)
        for index in counter:
            await _one(conn, make(index), result, index, time.perf_counter(), keep)
        conn.close()

    begun = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(min(connections, total))))
    result.elapsed = time.perf_counter() - begun
    return result


async def closed_loop_for(port: int, make: MakeRequest, seconds: float, connections: int) -> Result:
    """Like `closed_loop`, for `seconds` instead of a count (the fallback when wrk is not installed)."""
    result = Result()
    deadline = time.perf_counter() + seconds
    numbers = iter(range(1 << 62))

    async def client() -> None:
        conn = Connection(port)
        while time.perf_counter() < deadline:
            index = next(numbers)
            await _one(conn, make(index), result, index, time.perf_counter(), False)
        conn.close()

    begun = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(connections)))
    result.elapsed = time.perf_counter() - begun
    return result


async def open_loop(
    port: int, make: MakeRequest, rate: float, duration: float, connections: int, *, keep: bool = False
) -> Result:
    """Requests at `rate` per second for `duration` seconds over a pool of `connections` connections."""
    result = Result()
    pool: asyncio.Queue[Connection] = asyncio.Queue()
    for _ in range(connections):
        pool.put_nowait(Connection(port))
    pending: set[asyncio.Task[None]] = set()

    async def send(index: int, scheduled: float) -> None:
        conn = await pool.get()
        try:
            await _one(conn, make(index), result, index, scheduled, keep)
        finally:
            pool.put_nowait(conn)

    total = int(rate * duration)
    begun = time.perf_counter()
    sent = 0
    while sent < total:
        due = min(total, int((time.perf_counter() - begun) * rate) + 1)
        while sent < due:
            task = asyncio.ensure_future(send(sent, begun + sent / rate))
            pending.add(task)
            task.add_done_callback(pending.discard)
            sent += 1
        await asyncio.sleep(max(0.0, begun + sent / rate - time.perf_counter()))
    if pending:
        await asyncio.gather(*pending)
    result.elapsed = time.perf_counter() - begun
    while not pool.empty():
        pool.get_nowait().close()
    return result


def run(coro: Coroutine[Any, Any, Any]) -> Any:
    """Run a coroutine on uvloop when it is installed (as the servers do), else on asyncio's loop."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    return uvloop.run(coro)
