"""GuardedFetcher against a real HTTP server on 127.0.0.1 (and a mock transport for the public-address path).

Loopback is private, so the real server is only reachable with `allow_private=True`; the tests that need a
"public" first hop use an `httpx.MockTransport` and a fake resolver, and never leave this machine.
"""

from __future__ import annotations

import gzip
import socket
import threading
import time
from collections.abc import Iterator, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

from genmill.errors import FetchError, PayloadTooLarge
from genmill.net.fetch import GuardedFetcher, is_public_address

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\rIHDR" + b"\x00" * 17
MAX = 1024 * 1024
BIG = b"\x00" * (2 * MAX)


class MediaServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), MediaHandler)
        self.hits: list[str] = []
        self.lock = threading.Lock()

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Clients that give up (timeouts, size caps) break the pipe; that is expected here."""


class MediaHandler(BaseHTTPRequestHandler):
    server: MediaServer

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _reply(self, status: int, body: bytes, content_type: str | None, **headers: str) -> None:
        self.send_response(status)
        if content_type is not None:
            self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in headers.items():
            self.send_header(name.replace("_", "-"), value)
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        with self.server.lock:
            self.server.hits.append(self.path)
        path = self.path
        if path == "/png":
            self._reply(200, PNG, "image/png; charset=binary")
        elif path == "/octet-png":
            self._reply(200, PNG, "application/octet-stream")
        elif path == "/notype-png":
            self._reply(200, PNG, None)
        elif path == "/octet-junk":
            self._reply(200, b"just some bytes", "application/octet-stream")
        elif path == "/html":
            self._reply(200, b"<html></html>", "text/html")
        elif path == "/empty":
            self._reply(200, b"", "image/png")
        elif path == "/gzip":
            self._reply(200, gzip.compress(PNG), "image/png", Content_Encoding="gzip")
        elif path == "/big":
            self._reply(200, BIG, "image/png")
        elif path == "/big-stream":
            # HTTP/1.0 without Content-Length: the body ends when the connection closes.
            self.send_response(200)
            self.send_header("Content-Type", "image/png")
            self.end_headers()
            for _ in range(len(BIG) // 65536):
                self.wfile.write(b"\x00" * 65536)
        elif path.startswith("/r/"):
            hops = int(path[3:])
            target = "/png" if hops == 0 else f"/r/{hops - 1}"
            if hops == 0:
                self._reply(200, PNG, "image/png")
            else:
                self._reply(302, b"", "text/plain", Location=target)
        elif path == "/no-location":
            self._reply(302, b"", "text/plain")
        elif path == "/slow":
            time.sleep(3)
            self._reply(200, PNG, "image/png")
        elif path == "/drip":
            self.send_response(200)
            self.send_header("Content-Type", "image/png")
            self.send_header("Content-Length", "20")
            self.end_headers()
            for _ in range(20):
                self.wfile.write(b"\x00")
                self.wfile.flush()
                time.sleep(0.2)
        else:
            self._reply(404, b"not found", "text/plain")


@pytest.fixture(scope="module")
def server() -> Iterator[MediaServer]:
    srv = MediaServer()
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    try:
        yield srv
    finally:
        srv.shutdown()
        srv.server_close()


@pytest.fixture
def media(server: MediaServer) -> MediaServer:
    with server.lock:
        server.hits.clear()
    return server


def private_ok(**kwargs: Any) -> GuardedFetcher:
    kwargs.setdefault("max_bytes", MAX)
    return GuardedFetcher(allow_private=True, **kwargs)


# --- the private-address guard against the real server ---


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
def test_loopback_refused_without_any_request(media: MediaServer, host: str) -> None:
    url = media.base.replace("127.0.0.1", host) + "/png"
    fetcher = GuardedFetcher(max_bytes=MAX)
    with pytest.raises(FetchError) as info:
        fetcher.fetch(url, field="input.image")
    message = info.value.message
    assert message.startswith("input.image: URL points at a private or loopback address (")
    assert "GENMILL_ALLOW_PRIVATE_URLS=1" in message
    assert media.hits == []


def test_loopback_redirect_target_refused(media: MediaServer) -> None:
    with pytest.raises(FetchError, match=r"private or loopback address \(127\.0\.0\.1\)"):
        GuardedFetcher(max_bytes=MAX).fetch(media.base + "/r/1", field="input.image")
    assert media.hits == []


# --- allow_private=True: the other rules ---


def test_png(media: MediaServer) -> None:
    result = private_ok().fetch(media.base + "/png", field="input.image")
    assert result.data == PNG
    assert result.content_type == "image/png"
    assert result.name == "png"
    assert media.hits == ["/png"]


@pytest.mark.parametrize("path", ["/octet-png", "/notype-png"])
def test_generic_type_is_sniffed(media: MediaServer, path: str) -> None:
    result = private_ok().fetch(media.base + path, field="input.image")
    assert result.content_type == "image/png"


def test_unsniffable_octet_stream_follows_allowed_list(media: MediaServer) -> None:
    result = private_ok().fetch(media.base + "/octet-junk", field="input.file")
    assert result.content_type == "application/octet-stream"
    refused = r"input\.image: content type 'application/octet-stream' is not allowed"
    with pytest.raises(FetchError, match=refused):
        private_ok(allowed_content_types=("image/",)).fetch(media.base + "/octet-junk", field="input.image")


def test_wrong_content_type(media: MediaServer) -> None:
    with pytest.raises(FetchError, match=r"input\.image: content type 'text/html' is not allowed"):
        private_ok().fetch(media.base + "/html", field="input.image")


def test_empty_body(media: MediaServer) -> None:
    with pytest.raises(FetchError, match="empty body"):
        private_ok().fetch(media.base + "/empty", field="input.image")


def test_compressed_reply_refused(media: MediaServer) -> None:
    with pytest.raises(FetchError, match=r"compressed content \(gzip\)"):
        private_ok().fetch(media.base + "/gzip", field="input.image")


@pytest.mark.parametrize("path", ["/big", "/big-stream"])
def test_size_cap(media: MediaServer, path: str) -> None:
    with pytest.raises(PayloadTooLarge, match=rf"input\.image: download is larger than the {MAX}-byte limit"):
        private_ok().fetch(media.base + path, field="input.image")


def test_redirect_chain_within_limit(media: MediaServer) -> None:
    result = private_ok(max_redirects=3).fetch(media.base + "/r/3", field="input.image")
    assert result.data == PNG
    assert media.hits == ["/r/3", "/r/2", "/r/1", "/r/0"]


def test_redirect_chain_too_long(media: MediaServer) -> None:
    with pytest.raises(FetchError, match=r"input\.image: too many redirects \(more than 3\)"):
        private_ok(max_redirects=3).fetch(media.base + "/r/4", field="input.image")
    assert len(media.hits) == 4


def test_redirect_without_location(media: MediaServer) -> None:
    with pytest.raises(FetchError, match="without a Location header"):
        private_ok().fetch(media.base + "/no-location", field="input.image")


def test_not_found(media: MediaServer) -> None:
    with pytest.raises(FetchError, match=r"input\.image: fetching the URL failed with HTTP 404"):
        private_ok().fetch(media.base + "/missing", field="input.image")


def test_slow_response_times_out(media: MediaServer) -> None:
    started = time.monotonic()
    with pytest.raises(FetchError, match=r"input\.image: download timed out"):
        private_ok(timeout=0.5).fetch(media.base + "/slow", field="input.image")
    assert time.monotonic() - started < 2.5


def test_dripping_body_hits_overall_deadline(media: MediaServer) -> None:
    started = time.monotonic()
    with pytest.raises(FetchError, match="timed out"):
        private_ok(timeout=0.6).fetch(media.base + "/drip", field="input.image")
    assert time.monotonic() - started < 2.5


def test_connection_refused() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(FetchError, match=r"input\.image: could not connect"):
        private_ok().fetch(f"http://127.0.0.1:{port}/png", field="input.image")


@pytest.mark.parametrize(
    ("url", "rule"),
    [
        ("ftp://127.0.0.1/a.png", "only http and https"),
        ("file:///etc/passwd", "only http and https"),
        ("http:///nohost", "no host"),
        ("http://[::1/", "not a valid URL"),
        ("http://127.0.0.1:99999/", "not a valid URL"),
    ],
)
def test_bad_urls(url: str, rule: str) -> None:
    with pytest.raises(FetchError, match=rf"^input\.image: .*{rule}"):
        GuardedFetcher(max_bytes=MAX).fetch(url, field="input.image")


# --- the public path, pinned to the checked address (mock transport, fake DNS) ---


def fake_resolver(table: dict[str, Sequence[str]]) -> Any:
    def resolve(host: str, port: int) -> Sequence[str]:
        if host in table:
            return table[host]
        return [str(info[4][0]) for info in socket.getaddrinfo(host, port, flags=socket.AI_NUMERICHOST)]

    return resolve


def test_public_host_is_pinned_to_checked_address() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, content=PNG, headers={"Content-Type": "image/png"})

    fetcher = GuardedFetcher(
        max_bytes=MAX,
        transport=httpx.MockTransport(handler),
        resolver=fake_resolver({"media.example": ["93.184.216.34"]}),
    )
    result = fetcher.fetch("https://media.example:8443/files/cat%20photo.png", field="input.image")
    assert result.data == PNG
    assert result.name == "cat_photo.png"
    (request,) = seen
    assert request.url.host == "93.184.216.34"
    assert request.url.port == 8443
    assert request.headers["Host"] == "media.example:8443"
    assert request.headers["Accept-Encoding"] == "identity"
    assert request.extensions["sni_hostname"] == "media.example"


def test_redirect_from_public_to_private_refused(media: MediaServer) -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(302, headers={"Location": media.base + "/png"})

    fetcher = GuardedFetcher(
        max_bytes=MAX,
        transport=httpx.MockTransport(handler),
        resolver=fake_resolver({"media.example": ["93.184.216.34"]}),
    )
    with pytest.raises(FetchError, match=r"input\.image: URL points at a private or loopback address"):
        fetcher.fetch("http://media.example/a.png", field="input.image")
    assert len(seen) == 1
    assert media.hits == []


def test_any_private_answer_refuses_the_host() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise AssertionError("no request may be sent")

    fetcher = GuardedFetcher(
        max_bytes=MAX,
        transport=httpx.MockTransport(handler),
        resolver=fake_resolver({"rebind.example": ["93.184.216.34", "10.0.0.7"]}),
    )
    with pytest.raises(FetchError, match=r"\(10\.0\.0\.7\)"):
        fetcher.fetch("http://rebind.example/a.png", field="input.image")


def test_unresolvable_host() -> None:
    def resolve(host: str, port: int) -> Sequence[str]:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    fetcher = GuardedFetcher(max_bytes=MAX, resolver=resolve)
    with pytest.raises(FetchError, match=r"input\.image: host 'nowhere\.example' could not be resolved"):
        fetcher.fetch("http://nowhere.example/a.png", field="input.image")


# --- is_public_address ---


@pytest.mark.parametrize(
    "ip",
    [
        "127.0.0.1", "10.1.2.3", "172.16.0.1", "192.168.1.1", "169.254.169.254", "100.64.0.1", "0.0.0.0",
        "224.0.0.1", "239.255.255.250", "240.0.0.1", "255.255.255.255", "198.18.0.1", "192.0.2.1",
        "::1", "::", "fe80::1", "fe80::1%eth0", "fc00::1", "fd12:3456::1", "ff02::1", "2001:db8::1",
        "::ffff:127.0.0.1", "::ffff:10.0.0.1", "64:ff9b::7f00:1", "2002:7f00:1::1", "2002:a00:1::1",
        "not an ip", "",
    ],
)  # fmt: skip
def test_not_public(ip: str) -> None:
    assert not is_public_address(ip)


@pytest.mark.parametrize(
    "ip",
    ["8.8.8.8", "93.184.216.34", "1.1.1.1", "2606:4700:4700::1111", "::ffff:8.8.8.8", "64:ff9b::808:808",
     "2002:808:808::1"],
)  # fmt: skip
def test_public(ip: str) -> None:
    assert is_public_address(ip)
