"""A real HTTP webhook receiver on 127.0.0.1 that records every request and answers from a script."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Receiver:
    port: int
    requests: list[Received] = field(default_factory=list)
    answers: list[int] = field(default_factory=list)  # status codes to answer, in order; then 200
    default: int = 200
    lock: threading.Lock = field(default_factory=threading.Lock)
    arrived: threading.Condition = field(default_factory=threading.Condition)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def next_status(self) -> int:
        with self.lock:
            return self.answers.pop(0) if self.answers else self.default

    def record(self, item: Received) -> None:
        with self.arrived:
            self.requests.append(item)
            self.arrived.notify_all()

    def wait_for(self, count: int, timeout: float = 30) -> list[Received]:
        return self.wait_until(lambda got: len(got) >= count, timeout)

    def wait_until(self, done: Callable[[list[Received]], bool], timeout: float = 30) -> list[Received]:
        with self.arrived:
            self.arrived.wait_for(lambda: done(self.requests), timeout)
            return list(self.requests)


@contextmanager
def run_receiver(port: int = 0, receiver: Receiver | None = None) -> Iterator[Receiver]:
    """Serve on `port` (0: a free one) until the block ends; a stopped receiver refuses connections."""

    holder: dict[str, Receiver] = {}

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("content-length", "0"))
            body = self.rfile.read(length)
            rec = holder["r"]
            rec.record(Received({k.lower(): v for k, v in self.headers.items()}, body))
            status = rec.next_status()
            self.send_response(status)
            if status == 429:
                self.send_header("Retry-After", "0")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    rec = receiver or Receiver(server.server_address[1])
    rec.port = server.server_address[1]
    holder["r"] = rec
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield rec
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
