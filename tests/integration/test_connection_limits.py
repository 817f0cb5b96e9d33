"""The connection guard in front of uvicorn's HTTP protocols, over real sockets: idle and slow-loris connections are
closed after the header timeout, a flood of idle connections beyond the cap is shed while new clients get in, and
a newcomer is refused with a 503 only when every connection has a request in flight.

Both of uvicorn's HTTP/1.1 parsers run each test, because the guard reads one attribute of theirs. Nothing is
timed: each test waits for what it expects with a generous deadline.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import pytest
import uvicorn
from starlette.types import Receive, Scope, Send
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from genmill.httpserver import ConnectionGuard, guarded_protocol

DEADLINE = 30.0


class HoldingApp:
    """`/healthz` answers at once; `/hold` answers when the test opens the gate."""

    def __init__(self) -> None:
        self.gate = threading.Event()
        self.holding = 0
        self._lock = threading.Lock()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        assert scope["type"] == "http"
        if scope["path"] == "/hold":
            with self._lock:
                self.holding += 1
            await asyncio.get_running_loop().run_in_executor(None, self.gate.wait, DEADLINE)
        body = b"ok"
        headers = [(b"content-type", b"text/plain"), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})


@dataclass
class Running:
    app: HoldingApp
    guard: ConnectionGuard
    port: int
    sockets: list[socket.socket] = field(default_factory=list)

    def connect(self) -> socket.socket:
        sock = socket.create_connection(("127.0.0.1", self.port), timeout=DEADLINE)
        self.sockets.append(sock)
        return sock

    def request(self, path: str = "/healthz") -> bytes:
        """One request on a new connection; the whole answer (the server closes after it)."""
        with self.connect() as sock:
            sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
            return read_all(sock)


def read_all(sock: socket.socket) -> bytes:
    chunks = []
    try:
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    except ConnectionResetError:
        pass
    return b"".join(chunks)


def is_closed_by_server(sock: socket.socket) -> bool:
    sock.settimeout(0.05)
    try:
        return sock.recv(1) == b""
    except TimeoutError:
        return False
    except ConnectionResetError:
        return True


def wait_until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + DEADLINE
    while not condition():
        assert time.monotonic() < deadline, f"gave up waiting: {what}"
        time.sleep(0.02)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(params=[H11Protocol, HttpToolsProtocol], ids=["h11", "httptools"])
def protocol(request: pytest.FixtureRequest) -> type[asyncio.Protocol]:
    base: type[asyncio.Protocol] = request.param
    return base


def run_server(protocol: type[asyncio.Protocol], *, max_connections: int, header_timeout: float) -> Iterator[Running]:
    app = HoldingApp()
    guard = ConnectionGuard(max_connections, header_timeout)
    port = free_port()
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=port,
        http=guarded_protocol(protocol, guard),
        ws="none",
        lifespan="off",
        log_level="warning",
        timeout_keep_alive=60,  # longer than the header timeout: what closes idle connections here is the guard
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_until(lambda: server.started, "the server starts")
    running = Running(app, guard, port)
    try:
        yield running
    finally:
        for sock in running.sockets:
            sock.close()
        app.gate.set()
        server.should_exit = True
        thread.join(DEADLINE)


@pytest.fixture
def server(protocol: type[asyncio.Protocol]) -> Iterator[Running]:
    yield from run_server(protocol, max_connections=16, header_timeout=0.5)


def test_idle_and_slow_loris_connections_are_closed_after_the_header_timeout(server: Running) -> None:
    idle = server.connect()
    loris = server.connect()
    loris.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
    closed = False
    deadline = time.monotonic() + DEADLINE
    while not closed and time.monotonic() < deadline:
        try:
            loris.sendall(b"X-Drip: 1\r\n")  # a byte now and then: a per-read timeout would never fire
        except (BrokenPipeError, ConnectionResetError):
            closed = True
            break
        closed = is_closed_by_server(loris)
    assert closed, "the slow-loris connection stayed open"
    wait_until(lambda: is_closed_by_server(idle), "the idle connection is closed")
    assert server.guard.timed_out >= 2
    assert server.request().startswith(b"HTTP/1.1 200")


def test_a_request_in_flight_is_never_cut_by_the_header_timeout(server: Running) -> None:
    holder = server.connect()
    holder.sendall(b"GET /hold HTTP/1.1\r\nHost: x\r\n\r\n")
    wait_until(lambda: server.app.holding == 1, "the held request reaches the app")
    later = server.connect()
    wait_until(lambda: is_closed_by_server(later), "a connection opened after it times out")
    server.app.gate.set()
    holder.settimeout(DEADLINE)
    assert holder.recv(65536).startswith(b"HTTP/1.1 200")


def test_an_idle_flood_beyond_the_cap_is_shed_and_new_clients_still_get_answers(server: Running) -> None:
    flood = [server.connect() for _ in range(64)]
    for _ in range(3):
        assert server.request().startswith(b"HTTP/1.1 200"), "a new client was locked out by idle connections"
    wait_until(lambda: sum(is_closed_by_server(s) for s in flood) >= 64 - 16, "the idle flood is shed")
    assert server.guard.open_connections <= 16
    assert server.guard.shed >= 64 - 16 and server.guard.refused == 0


def test_a_newcomer_gets_a_503_only_when_every_connection_has_a_request_in_flight(server: Running) -> None:
    busy = [server.connect() for _ in range(16)]
    for sock in busy:
        sock.sendall(b"GET /hold HTTP/1.1\r\nHost: x\r\n\r\n")
    wait_until(lambda: server.app.holding == 16, "every held request reaches the app")
    refused = server.request()
    assert refused.startswith(b"HTTP/1.1 503"), refused[:200]
    assert b"retry-after: 1" in refused.lower() and b'"code": 503' in refused
    assert server.guard.refused >= 1
    server.app.gate.set()
    for sock in busy:
        sock.settimeout(DEADLINE)
        assert sock.recv(65536).startswith(b"HTTP/1.1 200")
    assert server.request().startswith(b"HTTP/1.1 200")  # the answered connections are idle now, and shed
