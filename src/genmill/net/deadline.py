"""One total deadline for an outbound HTTP exchange: name lookup, connect, TLS, request, status line, headers, body.

Why this module exists: httpx (httpcore underneath) applies its timeout to each socket operation, not to the
exchange. A peer that sends its status line and headers one byte every few seconds answers every single read in
time, so it can hold the calling thread for as long as it likes; checking a deadline between body chunks does not
help, because httpcore reads the status line and headers in a loop of its own.

How it holds: httpcore lets the caller supply its network backend. `DeadlineBackend` wraps the standard
synchronous backend and gives every blocking socket operation (the connect, each `recv`, each `send`, the TLS
handshake) at most the time left until the deadline, and raises a timeout once none is left. Since every call that
can block is bounded by what is left, the exchange ends by the deadline whatever the peer does, with no extra
thread and nothing to clean up. (A watchdog that closes the socket at the deadline was the alternative: it needs
the socket before `connect` returns, and closing a socket another thread is reading races with that thread's own
close.) Writes are done here, one `send` at a time, because httpcore's write loop reuses one timeout for every
`send` of a large body; Python's TLS handshake and TLS reads already treat a socket timeout as a total for the
whole operation.

Name lookup cannot be given a timeout (`getaddrinfo` blocks in C), so `resolve_within` runs it on a daemon thread
and stops waiting at the deadline; at most `MAX_PENDING_LOOKUPS` lookups wait at once in a process, so a resolver
that hangs cannot pile up threads.
"""

from __future__ import annotations

import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import httpcore
import httpx

MAX_PENDING_LOOKUPS = 32
_lookups = threading.BoundedSemaphore(MAX_PENDING_LOOKUPS)


class DeadlineExceeded(TimeoutError):
    """The deadline passed before a name lookup answered."""


def resolve_within(resolve: Callable[[str, int], Sequence[str]], host: str, port: int, deadline: float) -> list[str]:
    """`resolve(host, port)`, abandoned (left to finish on its own thread) when `deadline` passes first.

    Raises `DeadlineExceeded` on timeout and whatever `resolve` raised otherwise.
    """
    if not _lookups.acquire(timeout=max(0.0, deadline - time.monotonic())):
        raise DeadlineExceeded(f"no name lookup slot before the deadline ({MAX_PENDING_LOOKUPS} pending)")
    outcome: list[list[str] | BaseException] = []
    finished = threading.Event()

    def run() -> None:
        try:
            outcome.append(list(resolve(host, port)))
        except BaseException as exc:  # handed to the waiting caller, never lost on this thread
            outcome.append(exc)
        finally:
            _lookups.release()
            finished.set()

    threading.Thread(target=run, name="genmill-resolve", daemon=True).start()
    if not finished.wait(max(0.0, deadline - time.monotonic())):
        raise DeadlineExceeded(f"looking up {host!r} took longer than the deadline")
    result = outcome[0]
    if isinstance(result, BaseException):
        raise result
    return result


class DeadlineStream(httpcore.NetworkStream):
    """A connected stream whose every blocking operation ends by the deadline."""

    def __init__(self, inner: httpcore.NetworkStream, deadline: float) -> None:
        self._inner = inner
        self._deadline = deadline

    def _left(self, timeout: float | None, expired: type[httpcore.TimeoutException]) -> float:
        """The time this operation may block: its own timeout, cut to what is left of the deadline."""
        left = self._deadline - time.monotonic()
        if left <= 0:
            raise expired("the total deadline of the request passed")
        return left if timeout is None else min(timeout, left)

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._inner.read(max_bytes, self._left(timeout, httpcore.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        sock = self._inner.get_extra_info("socket")
        if not isinstance(sock, socket.socket):
            self._inner.write(buffer, self._left(timeout, httpcore.WriteTimeout))
            return
        view = memoryview(buffer)
        try:
            while view:
                sock.settimeout(self._left(timeout, httpcore.WriteTimeout))
                view = view[sock.send(view) :]
        except TimeoutError as exc:
            raise httpcore.WriteTimeout(str(exc)) from exc
        except OSError as exc:
            raise httpcore.WriteError(str(exc)) from exc

    def close(self) -> None:
        self._inner.close()

    def start_tls(
        self, ssl_context: ssl.SSLContext, server_hostname: str | None = None, timeout: float | None = None
    ) -> httpcore.NetworkStream:
        left = self._left(timeout, httpcore.ConnectTimeout)
        return DeadlineStream(self._inner.start_tls(ssl_context, server_hostname, left), self._deadline)

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


class DeadlineBackend(httpcore.NetworkBackend):
    """httpcore's synchronous backend with every connection's operations bounded by one deadline."""

    def __init__(self, deadline: float, inner: httpcore.NetworkBackend | None = None) -> None:
        self._deadline = deadline
        self._inner = inner or httpcore.SyncBackend()

    def _left(self, timeout: float | None) -> float:
        left = self._deadline - time.monotonic()
        if left <= 0:
            raise httpcore.ConnectTimeout("the total deadline of the request passed")
        return left if timeout is None else min(timeout, left)

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        stream = self._inner.connect_tcp(host, port, self._left(timeout), local_address, socket_options)
        return DeadlineStream(stream, self._deadline)

    def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[Any] | None = None
    ) -> httpcore.NetworkStream:
        return DeadlineStream(
            self._inner.connect_unix_socket(path, self._left(timeout), socket_options), self._deadline
        )

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


# httpcore's errors as httpx's, most specific first (what httpx's own transport does, with public names only).
_ERRORS: tuple[tuple[type[Exception], type[httpx.TransportError]], ...] = (
    (httpcore.ConnectTimeout, httpx.ConnectTimeout),
    (httpcore.ReadTimeout, httpx.ReadTimeout),
    (httpcore.WriteTimeout, httpx.WriteTimeout),
    (httpcore.PoolTimeout, httpx.PoolTimeout),
    (httpcore.TimeoutException, httpx.TimeoutException),
    (httpcore.ConnectError, httpx.ConnectError),
    (httpcore.ReadError, httpx.ReadError),
    (httpcore.WriteError, httpx.WriteError),
    (httpcore.NetworkError, httpx.NetworkError),
    (httpcore.RemoteProtocolError, httpx.RemoteProtocolError),
    (httpcore.LocalProtocolError, httpx.LocalProtocolError),
    (httpcore.ProtocolError, httpx.ProtocolError),
    (httpcore.UnsupportedProtocol, httpx.UnsupportedProtocol),
)


def _as_httpx(exc: Exception) -> Exception:
    for source, target in _ERRORS:
        if isinstance(exc, source):
            return target(str(exc))
    return exc


class _Body(httpx.SyncByteStream):
    def __init__(self, stream: Iterable[bytes]) -> None:
        self._stream = stream

    def __iter__(self) -> Iterator[bytes]:
        try:
            yield from self._stream
        except Exception as exc:
            raise _as_httpx(exc) from exc

    def close(self) -> None:
        close = getattr(self._stream, "close", None)
        if close is not None:
            close()


class DeadlineTransport(httpx.BaseTransport):
    """An HTTP/1.1 transport for one exchange that ends by `deadline` (a `time.monotonic()` value).

    No keep-alive: genmill builds one per fetch or delivery, so a connection is never reused under another name.
    """

    def __init__(self, deadline: float, *, ssl_context: ssl.SSLContext) -> None:
        self._pool = httpcore.ConnectionPool(
            ssl_context=ssl_context,
            max_keepalive_connections=0,
            http1=True,
            http2=False,
            network_backend=DeadlineBackend(deadline),
        )

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        assert isinstance(request.stream, httpx.SyncByteStream)
        core_request = httpcore.Request(
            method=request.method,
            url=httpcore.URL(
                scheme=request.url.raw_scheme,
                host=request.url.raw_host,
                port=request.url.port,
                target=request.url.raw_path,
            ),
            headers=request.headers.raw,
            content=request.stream,
            extensions=request.extensions,
        )
        try:
            response = self._pool.handle_request(core_request)
        except Exception as exc:
            raise _as_httpx(exc) from exc
        assert isinstance(response.stream, Iterable)
        return httpx.Response(
            status_code=response.status,
            headers=response.headers,
            stream=_Body(response.stream),
            extensions=response.extensions,
        )

    def close(self) -> None:
        self._pool.close()
