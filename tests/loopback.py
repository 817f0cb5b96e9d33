"""Real HTTP servers on 127.0.0.1 for tests: an ASGI app under uvicorn in a daemon thread of the test process, so
clients, SDKs and other genmills reach it over real sockets while the test still holds its runtime and store."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import uvicorn


def free_port() -> int:
    """A port nothing listens on now (the OS's pick), for a server about to start or a refused connection."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def run_uvicorn(app: Any, port: int, *, stop_timeout: float = 10.0) -> Iterator[uvicorn.Server]:
    """Serve `app` on 127.0.0.1:`port` for the block, which starts once the server accepts connections; at its end
    the server is asked to exit and given `stop_timeout` seconds to finish."""
    server = uvicorn.Server(uvicorn.Config(app, port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.02)
    try:
        yield server
    finally:
        server.should_exit = True
        thread.join(stop_timeout)
