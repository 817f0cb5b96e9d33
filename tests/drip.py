"""A real HTTP peer on 127.0.0.1 that answers one byte at a time: the slow peer every outbound deadline must beat.

Each connection gets its own thread, reads the request head (and as much of a body as is already there), then
writes its answer a byte every `interval` seconds. It records when each answer started and whether it was
written to the end, so a test can check that its client gave up while the peer was still dripping.
"""

from __future__ import annotations

import socket
import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\rIHDR" + b"\x00" * 17


def answer(body: bytes = PNG, content_type: str = "image/png", status: str = "200 OK") -> bytes:
    head = f"HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {len(body)}\r\n\r\n"
    return head.encode() + body


@dataclass
class DripServer:
    """Drips `reply[drip_from:]` (the bytes before `drip_from` go at once) to every connection."""

    port: int = 0
    reply: bytes = field(default_factory=answer)
    drip_from: int = 0
    interval: float = 0.5
    stop: threading.Event = field(default_factory=threading.Event)
    connected: threading.Semaphore = field(default_factory=lambda: threading.Semaphore(0))
    finished: threading.Event = field(default_factory=threading.Event)
    """Set once any connection got the whole reply: the drip outlasted its client."""
    connections: int = 0
    sent: int = 0
    """Bytes of the reply written so far (by the latest connection)."""
    lock: threading.Lock = field(default_factory=threading.Lock)
    tls: ssl.SSLContext | None = None
    """A server context to speak HTTPS (each dripped byte is then a TLS record of its own)."""

    @property
    def url(self) -> str:
        scheme = "https" if self.tls else "http"
        return f"{scheme}://127.0.0.1:{self.port}/slow.png"

    @property
    def head_length(self) -> int:
        """The length of the status line and headers of the reply."""
        return self.reply.index(b"\r\n\r\n") + 4

    @property
    def drip_seconds(self) -> float:
        """How long one full answer takes to drip."""
        return (len(self.reply) - self.drip_from) * self.interval

    def serve(self, raw: socket.socket) -> None:
        raw.settimeout(5)
        try:
            conn = self.tls.wrap_socket(raw, server_side=True) if self.tls else raw
        except OSError:
            raw.close()
            return
        with conn:
            try:
                request = b""
                while b"\r\n\r\n" not in request:
                    chunk = conn.recv(65536)
                    if not chunk:
                        return
                    request += chunk
                with self.lock:
                    self.connections += 1
                self.connected.release()
                conn.sendall(self.reply[: self.drip_from])
                self.sent = self.drip_from
                for index in range(self.drip_from, len(self.reply)):
                    if self.stop.wait(self.interval):
                        return
                    conn.sendall(self.reply[index : index + 1])
                    self.sent = index + 1
                self.finished.set()
            except OSError:  # the client gave up and closed the connection: what the tests want
                return


@contextmanager
def run_drip(server: DripServer | None = None) -> Iterator[DripServer]:
    """Serve until the block ends; then every dripping connection is dropped."""
    drip = server or DripServer()
    listener = socket.create_server(("127.0.0.1", drip.port))
    drip.port = listener.getsockname()[1]
    listener.settimeout(0.2)

    def accept() -> None:
        while not drip.stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=drip.serve, args=(conn,), daemon=True).start()

    acceptor = threading.Thread(target=accept, name="drip-accept", daemon=True)
    acceptor.start()
    try:
        yield drip
    finally:
        drip.stop.set()
        acceptor.join(5)
        listener.close()
