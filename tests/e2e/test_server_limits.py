"""`genmill serve` on its own, with no proxy in front, under a low open-file limit: a flood of idle connections
larger than that limit does not stop `/healthz` from answering, and a slow-loris connection is closed after the
header timeout. No API key is needed for either attack, so none is used."""

from __future__ import annotations

import resource
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.e2e.harness import GENMILL, Server, call, free_port

SOFT_FILES = 256
HARD_FILES = 1024
FLOOD = 1200
"""More idle sockets than the hard open-file limit of the server."""
DEADLINE = 60.0


def low_file_limit() -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (SOFT_FILES, HARD_FILES))


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Server]:
    """`genmill serve --no-workers` started with a soft limit of 256 open files and a hard one of 1,024."""
    srv = Server(tmp_path, GENMILL_HEADER_TIMEOUT_SECONDS="1")
    srv.cli("db", "upgrade")
    srv.port = free_port()
    srv.url = f"http://127.0.0.1:{srv.port}"
    log = open(tmp_path / "server.log", "ab")  # noqa: SIM115 - closed below
    srv.proc = subprocess.Popen(
        [*GENMILL, "serve", "--no-workers", "--port", str(srv.port)],
        env=srv.env,
        stdout=log,
        stderr=subprocess.STDOUT,
        preexec_fn=low_file_limit,
    )
    try:
        wait_for_health(srv)
        yield srv
    finally:
        srv.proc.terminate()
        srv.proc.wait(30)
        log.close()


def healthz(srv: Server) -> int:
    try:
        return call("GET", srv.url + "/healthz")[0]
    except OSError:
        return 0


def wait_for_health(srv: Server) -> None:
    deadline = time.monotonic() + 120
    while healthz(srv) != 200:
        assert srv.proc is not None and srv.proc.poll() is None, srv.log_text()[-3000:]
        assert time.monotonic() < deadline, srv.log_text()[-3000:]
        time.sleep(0.1)


def closed_by_server(sock: socket.socket) -> bool:
    sock.settimeout(0.05)
    try:
        return sock.recv(1) == b""
    except TimeoutError:
        return False
    except OSError:
        return True


def test_an_idle_flood_beyond_the_open_file_limit_leaves_healthz_answering(serve: Server) -> None:
    own_soft, own_hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if own_hard != resource.RLIM_INFINITY and own_hard < FLOOD + 100:
        pytest.skip(f"this test process may open only {own_hard} files")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(own_soft, min(own_hard, FLOOD + 200)), own_hard))
    flood: list[socket.socket] = []
    try:
        for _ in range(FLOOD):
            flood.append(socket.create_connection(("127.0.0.1", serve.port), timeout=DEADLINE))
        # The server raised its soft limit to 1,024 and caps itself below it: the oldest idle sockets were closed
        # to let newer ones in, and a client that sends a request gets its answer.
        assert healthz(serve) == 200, serve.log_text()[-3000:]
        deadline = time.monotonic() + DEADLINE
        while sum(closed_by_server(s) for s in flood) < FLOOD - HARD_FILES:
            assert time.monotonic() < deadline, "the idle flood was not shed"
        assert healthz(serve) == 200
    finally:
        for sock in flood:
            sock.close()
        resource.setrlimit(resource.RLIMIT_NOFILE, (own_soft, own_hard))


def test_a_slow_loris_is_closed_after_the_header_timeout(serve: Server) -> None:
    with socket.create_connection(("127.0.0.1", serve.port), timeout=DEADLINE) as loris:
        loris.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        deadline = time.monotonic() + DEADLINE
        closed = False
        while not closed:
            assert time.monotonic() < deadline, "the slow-loris connection stayed open"
            try:
                loris.sendall(b"X-Drip: 1\r\n")
            except OSError:
                break
            closed = closed_by_server(loris)
    assert healthz(serve) == 200
