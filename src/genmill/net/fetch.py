"""The one guarded way genmill downloads a client-supplied URL (server-side request forgery defence).

A task input may name any URL, and the worker fetching it sits inside the operator's network, so every fetch
obeys these rules, each reported as a `FetchError` (400) or `PayloadTooLarge` (413) naming the input field:

* only `http` and `https`;
* the host is resolved with `socket.getaddrinfo` *before* connecting, and the fetch is refused when any
  resolved address is private, loopback, link-local, multicast, reserved, unspecified or shared (CGNAT),
  including such IPv4 addresses embedded in IPv6 (IPv4-mapped, NAT64 `64:ff9b::/96`, 6to4), unless the
  operator set `GENMILL_ALLOW_PRIVATE_URLS=1` (`allow_private=True`);
* redirects are followed by hand, at most `max_redirects` hops, and every hop is checked like the first;
* the body is streamed and the download stops once it passes `max_bytes` (a larger Content-Length is refused
  before reading); `Accept-Encoding: identity` is sent and compressed replies are refused, so a small
  compressed body cannot expand past the cap inside the decoder;
* the content type must start with one of the allowed prefixes; a missing or `application/octet-stream`
  type is replaced by one sniffed from the bytes;
* one deadline (`timeout` seconds) covers the whole fetch: every name lookup, connect, TLS handshake, the
  request, the status line, the headers, the body and every redirect hop. Every blocking socket operation may
  wait only for what is left of it (`genmill.net.deadline` says how and why), so a peer that drips its answer
  one byte at a time is abandoned at the deadline like one that says nothing;
* environment proxies and `.netrc` are ignored, so the checked address is the one connected to.

DNS rebinding: checking a name and then letting the HTTP client resolve it again leaves a time-of-check to
time-of-use gap, in which a hostile DNS server answers a public address first and a private one second. To
close it, the request is sent to the checked IP itself: the URL's host is replaced by that address, the
`Host` header keeps the original name, and for https the `sni_hostname` request extension makes TLS send the
original name and verify the certificate against it. Keep-alive is off and each fetch has its own client, so
a pooled connection is never reused under a different name. When `allow_private` is set no pinning is done,
because there is nothing to guard; the name is then looked up by the connect itself, which only the system
resolver's own timeouts bound.
"""

from __future__ import annotations

import ipaddress
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from urllib.parse import unquote

import httpx

from genmill.domain.records import InputFile
from genmill.errors import FetchError, FetchRefused, PayloadTooLarge
from genmill.net.deadline import DeadlineExceeded, DeadlineTransport, resolve_within
from genmill.net.media import OCTET_STREAM, sniff_content_type

DEFAULT_ALLOWED_CONTENT_TYPES: tuple[str, ...] = (
    "image/",
    "video/",
    "audio/",
    "model/",
    OCTET_STREAM,
)

Resolver = Callable[[str, int], Sequence[str]]
"""Resolves (host, port) to IP address strings; replaceable in tests."""

_REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
_NAT64_PREFIX = ipaddress.IPv6Network("64:ff9b::/96")
_USER_AGENT = "genmill-fetch/1"
_PRIVATE_HINT = "set GENMILL_ALLOW_PRIVATE_URLS=1 to allow"


def is_public_address(ip: str) -> bool:
    """True only for a globally routable unicast address; False for anything else, including unparsable text.

    IPv4 addresses carried inside IPv6 (IPv4-mapped, NAT64, 6to4) are judged by the IPv4 address, because
    that is where the packets end up. Shared address space (100.64.0.0/10) counts as private: it is not
    reachable from the internet either.
    """
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return False
    if isinstance(addr, ipaddress.IPv6Address):
        embedded = addr.ipv4_mapped
        if embedded is None and addr in _NAT64_PREFIX:
            embedded = ipaddress.IPv4Address(int(addr) & 0xFFFFFFFF)
        if embedded is not None:
            return _is_global_unicast(embedded)
        if addr.sixtofour is not None and not _is_global_unicast(addr.sixtofour):
            return False
    return _is_global_unicast(addr)


def _is_global_unicast(addr: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """Every flag is checked because `is_global` alone lets multicast through."""
    return addr.is_global and not (
        addr.is_private
        or addr.is_loopback
        or addr.is_link_local
        or addr.is_multicast
        or addr.is_reserved
        or addr.is_unspecified
        or (isinstance(addr, ipaddress.IPv6Address) and addr.is_site_local)
    )


def _system_resolver(host: str, port: int) -> list[str]:
    """All addresses the system resolver gives for `host`, in its preferred order, without duplicates."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    seen: dict[str, None] = {}
    for info in infos:
        seen.setdefault(str(info[4][0]), None)
    return list(seen)


@dataclass(frozen=True)
class PostResult:
    status_code: int
    headers: dict[str, str]


class GuardedFetcher:
    """Fetches one client-supplied URL into memory under the rules in the module docstring.

    Synchronous on purpose: it runs in worker threads, never on the event loop. Safe to share between threads
    because each `fetch` builds its own short-lived `httpx.Client`. A `transport` given for tests replaces the
    network entirely (and with it the per-operation deadline; the body loop still checks it between chunks).
    """

    def __init__(
        self,
        *,
        max_bytes: int,
        allow_private: bool = False,
        timeout: float = 20.0,
        allowed_content_types: tuple[str, ...] = DEFAULT_ALLOWED_CONTENT_TYPES,
        max_redirects: int = 3,
        transport: httpx.BaseTransport | None = None,
        resolver: Resolver | None = None,
    ) -> None:
        if max_bytes <= 0 or timeout <= 0 or max_redirects < 0:
            raise ValueError("max_bytes and timeout must be positive and max_redirects non-negative")
        self.max_bytes = max_bytes
        self.allow_private = allow_private
        self.timeout = timeout
        self.allowed_content_types = tuple(prefix.lower() for prefix in allowed_content_types)
        self.max_redirects = max_redirects
        self._transport = transport
        self._resolve: Resolver = resolver or _system_resolver
        # Building a TLS context costs tens of milliseconds; one per fetcher, shared by its short-lived clients.
        self._tls = httpx.create_ssl_context()

    def fetch(self, url: str, *, field: str) -> InputFile:
        """Download `url` and return its bytes and media type; raise `FetchError`/`PayloadTooLarge` otherwise.

        No httpx exception escapes: every failure becomes a genmill error whose message names `field`.
        """
        deadline = time.monotonic() + self.timeout
        current = self._parse(url, field=field)
        with self._client(deadline) as client:
            for _hop in range(self.max_redirects + 1):
                response = self._send(client, current, field=field, deadline=deadline)
                try:
                    if response.status_code in _REDIRECT_STATUSES:
                        current = self._next_hop(current, response, field=field)
                        continue
                    return self._read(current, response, field=field, deadline=deadline)
                except httpx.TimeoutException:
                    raise self._timed_out(field) from None
                except (httpx.HTTPError, httpx.StreamError, httpx.InvalidURL) as exc:
                    reason = _describe(exc)
                    raise FetchError(f"{field}: download failed while reading the body ({reason})") from None
                finally:
                    response.close()
        raise FetchError(f"{field}: too many redirects (more than {self.max_redirects})")

    def _client(self, deadline: float) -> httpx.Client:
        """A fresh client whose every socket operation ends by `deadline`: no keep-alive (so no connection is
        reused under another name), no env proxies."""
        return httpx.Client(
            transport=self._transport or DeadlineTransport(deadline, ssl_context=self._tls),
            verify=self._tls,
            follow_redirects=False,
            trust_env=False,
            limits=httpx.Limits(max_keepalive_connections=0),
            headers={"User-Agent": _USER_AGENT, "Accept-Encoding": "identity"},
        )

    @staticmethod
    def _parse(url: str, *, field: str) -> httpx.URL:
        """Parse a client URL and enforce the scheme and host rules before anything touches the network."""
        try:
            parsed = httpx.URL(url.strip())
        except (httpx.InvalidURL, TypeError, ValueError):
            raise FetchError(f"{field}: not a valid URL") from None
        if parsed.scheme not in ("http", "https"):
            scheme = parsed.scheme or "none"
            raise FetchRefused(f"{field}: only http and https URLs can be fetched (got {scheme!r})")
        if not parsed.raw_host:
            raise FetchError(f"{field}: URL has no host")
        if parsed.port is not None and not 0 < parsed.port < 65536:
            raise FetchError(f"{field}: not a valid URL (port {parsed.port} is out of range)")
        return parsed

    def _next_hop(self, current: httpx.URL, response: httpx.Response, *, field: str) -> httpx.URL:
        """Resolve a redirect's Location against the logical (not the pinned) URL and re-check it."""
        location = response.headers.get("location", "").strip()
        if not location:
            status = response.status_code
            raise FetchError(f"{field}: server answered HTTP {status} without a Location header")
        try:
            target = current.join(location)
        except (httpx.InvalidURL, TypeError, ValueError):
            raise FetchError(f"{field}: redirect points at an invalid URL") from None
        return self._parse(str(target), field=field)

    def _addresses(self, url: httpx.URL, *, field: str, deadline: float) -> list[str]:
        """Resolve the URL's host and refuse when any address is not public (unless private is allowed)."""
        host = url.raw_host.decode("ascii")
        port = url.port or (443 if url.scheme == "https" else 80)
        try:
            addresses = resolve_within(self._resolve, host, port, deadline)
        except DeadlineExceeded:
            raise self._timed_out(field) from None
        except (OSError, UnicodeError):
            raise FetchError(f"{field}: host {host!r} could not be resolved") from None
        if not addresses:
            raise FetchError(f"{field}: host {host!r} could not be resolved")
        for address in addresses:
            if not is_public_address(address):
                raise FetchRefused(f"{field}: URL points at a private or loopback address ({address}); {_PRIVATE_HINT}")
        return addresses

    def post(self, url: str, *, body: bytes, headers: dict[str, str], field: str) -> PostResult:
        """POST `body` to `url` under the same address rules; redirects are not followed (they are answers too).

        Used for webhooks. Raises `FetchError` for refused, unreachable or timed-out endpoints (the deadline
        covers the connect, sending the body and reading the status line and headers); any HTTP answer, 2xx or
        not, is returned without reading its body.
        """
        deadline = time.monotonic() + self.timeout
        target = self._parse(url, field=field)
        with self._client(deadline) as client:
            response = self._send(
                client, target, field=field, deadline=deadline, method="POST", content=body, extra_headers=headers
            )
            try:
                return PostResult(response.status_code, dict(response.headers))
            finally:
                response.close()

    def _send(
        self,
        client: httpx.Client,
        url: httpx.URL,
        *,
        field: str,
        deadline: float,
        method: str = "GET",
        content: bytes | None = None,
        extra_headers: dict[str, str] | None = None,
    ) -> httpx.Response:
        """Send a streamed request pinned to a checked address, trying the next one when a connect fails."""
        if self.allow_private:
            targets: list[tuple[httpx.URL, dict[str, str], dict[str, str]]] = [(url, {}, {})]
        else:
            targets = [_pinned(url, address) for address in self._addresses(url, field=field, deadline=deadline)]
        failure = ""
        for pinned_url, headers, extensions in targets:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise self._timed_out(field)
            request = client.build_request(
                method,
                pinned_url,
                headers={**(extra_headers or {}), **headers},
                content=content,
                extensions=extensions,
                timeout=remaining,
            )
            try:
                return client.send(request, stream=True)
            except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
                if time.monotonic() >= deadline:
                    raise self._timed_out(field) from None
                failure = _describe(exc)
            except httpx.TimeoutException:
                raise self._timed_out(field) from None
            except (httpx.HTTPError, httpx.StreamError, httpx.InvalidURL) as exc:
                raise FetchError(f"{field}: request failed ({_describe(exc)})") from None
        raise FetchError(f"{field}: could not connect to the host ({failure})")

    def _read(self, url: httpx.URL, response: httpx.Response, *, field: str, deadline: float) -> InputFile:
        """Check status, encoding, length and type, then stream the body under the size cap and deadline."""
        if not 200 <= response.status_code < 300:
            raise FetchError(f"{field}: fetching the URL failed with HTTP {response.status_code}")
        encoding = response.headers.get("content-encoding", "identity").strip().lower()
        if encoding not in ("", "identity"):
            raise FetchError(f"{field}: server sent compressed content ({encoding}) though none was accepted")
        too_large = f"{field}: download is larger than the {self.max_bytes}-byte limit"
        declared_length = response.headers.get("content-length", "").strip()
        if declared_length.isascii() and declared_length.isdigit() and int(declared_length) > self.max_bytes:
            raise PayloadTooLarge(too_large)
        declared = response.headers.get("content-type", "").split(";", 1)[0].strip().lower()
        if declared and declared != OCTET_STREAM:
            self._check_type(declared, field=field)
        chunks: list[bytes] = []
        size = 0
        for chunk in response.iter_bytes():
            size += len(chunk)
            if size > self.max_bytes:
                raise PayloadTooLarge(too_large)
            if time.monotonic() > deadline:
                raise self._timed_out(field)
            chunks.append(chunk)
        data = b"".join(chunks)
        if not data:
            raise FetchError(f"{field}: the URL returned an empty body")
        content_type = declared
        if not declared or declared == OCTET_STREAM:
            content_type = sniff_content_type(data) or OCTET_STREAM
            self._check_type(content_type, field=field)
        return InputFile(data=data, content_type=content_type, name=_name_from_url(url))

    def _check_type(self, content_type: str, *, field: str) -> None:
        if not content_type.startswith(self.allowed_content_types):
            allowed = ", ".join(self.allowed_content_types)
            shown = content_type[:100]
            raise FetchError(f"{field}: content type {shown!r} is not allowed (allowed: {allowed})")

    def _timed_out(self, field: str) -> FetchError:
        return FetchError(f"{field}: download timed out (limit {self.timeout:g}s)")


def _pinned(url: httpx.URL, address: str) -> tuple[httpx.URL, dict[str, str], dict[str, str]]:
    """The URL rewritten to connect to `address`, with the Host header and TLS name of the original host."""
    host = url.raw_host.decode("ascii")
    headers = {"Host": url.netloc.decode("ascii")}
    extensions = {"sni_hostname": host} if url.scheme == "https" else {}
    return url.copy_with(host=address.split("%", 1)[0]), headers, extensions


def _name_from_url(url: httpx.URL) -> str:
    """The last path segment, as a hint for backends and logs; never used as a storage path."""
    segment = unquote(url.path.rsplit("/", 1)[-1])
    return "".join(ch if ch.isalnum() or ch in "._-" else "_" for ch in segment)[:128]


def _describe(exc: Exception) -> str:
    """A short description of a library error for a client-facing message (type name only when empty)."""
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text[:200]}" if text else type(exc).__name__
