"""One total deadline per outbound request, against real peers on 127.0.0.1 that drip their answers.

Each test gives the client a short deadline and a peer whose answer takes many times longer to drip, then checks
the outcome (a timeout naming the field) and that the client gave up while the peer was still dripping. Nothing
asserts how long anything took beyond "before the drip would have finished".
"""

from __future__ import annotations

import datetime
import ipaddress
import socket
import ssl
import threading
import time
from collections.abc import Iterator, Sequence

import httpcore
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from tests.drip import DripServer, answer, run_drip

from genmill.errors import FetchError
from genmill.net.deadline import DeadlineBackend
from genmill.net.fetch import GuardedFetcher

DEADLINE = 1.5


@pytest.fixture
def head_drip() -> Iterator[DripServer]:
    """Drips everything from the first byte of the status line: 30-odd seconds of answer."""
    with run_drip(DripServer(interval=0.5)) as drip:
        yield drip


def fetcher(timeout: float = DEADLINE) -> GuardedFetcher:
    return GuardedFetcher(max_bytes=1024 * 1024, allow_private=True, timeout=timeout)


def test_a_dripping_status_line_and_headers_are_abandoned_at_the_deadline(head_drip: DripServer) -> None:
    assert head_drip.drip_seconds > 10 * DEADLINE
    started = time.monotonic()
    with pytest.raises(FetchError) as info:
        fetcher().fetch(head_drip.url, field="input.image")
    assert time.monotonic() - started < head_drip.drip_seconds
    assert info.value.message == f"input.image: download timed out (limit {DEADLINE:g}s)"
    assert head_drip.connections == 1
    assert head_drip.sent < head_drip.head_length  # the client left while the peer was still sending its headers


def test_a_dripping_body_is_abandoned_at_the_deadline() -> None:
    reply = answer(body=b"\x89PNG\r\n\x1a\n" + b"\x00" * 120)
    with run_drip(DripServer(reply=reply, drip_from=reply.index(b"\r\n\r\n") + 4, interval=0.5)) as drip:
        assert drip.drip_seconds > 10 * DEADLINE
        started = time.monotonic()
        with pytest.raises(FetchError) as info:
            fetcher().fetch(drip.url, field="input.image")
        assert time.monotonic() - started < drip.drip_seconds
        assert "download timed out" in info.value.message
        assert drip.sent < len(reply)


def test_a_webhook_post_to_a_dripping_receiver_is_abandoned_at_the_deadline(head_drip: DripServer) -> None:
    started = time.monotonic()
    with pytest.raises(FetchError) as info:
        fetcher().post(head_drip.url, body=b"{}", headers={"Content-Type": "application/json"}, field="endpoint")
    assert time.monotonic() - started < head_drip.drip_seconds
    assert "timed out" in info.value.message
    assert head_drip.sent < head_drip.head_length


def test_a_quick_answer_still_arrives_whole() -> None:
    with run_drip(DripServer(interval=0.0)) as drip:
        found = fetcher().fetch(drip.url, field="input.image")
    assert found.content_type == "image/png" and found.data.startswith(b"\x89PNG")


def test_a_name_lookup_that_hangs_is_abandoned_at_the_deadline() -> None:
    release = threading.Event()

    def hanging(host: str, port: int) -> Sequence[str]:
        release.wait(60)
        return ["93.184.216.34"]

    guarded = GuardedFetcher(max_bytes=1024, timeout=0.5, resolver=hanging)
    try:
        with pytest.raises(FetchError) as info:
            guarded.fetch("https://example.com/cat.png", field="input.image")
        assert "download timed out" in info.value.message
        assert not release.is_set()  # abandoned while the lookup still hung
    finally:
        release.set()


def test_every_send_of_a_large_request_body_shares_the_deadline() -> None:
    """A receiver that reads a little at a time lets each single send finish in time; the total must not."""
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    stop = threading.Event()
    read = [0]

    def slow_reader() -> None:
        conn, _ = listener.accept()
        with conn:
            while not stop.wait(0.05):
                chunk = conn.recv(65536)
                if not chunk:
                    return
                read[0] += len(chunk)

    reader = threading.Thread(target=slow_reader, daemon=True)
    reader.start()
    body = bytes(64 * 1024 * 1024)
    try:
        stream = DeadlineBackend(time.monotonic() + 1.0).connect_tcp("127.0.0.1", port, timeout=30)
        with pytest.raises(httpcore.WriteTimeout):
            stream.write(body, timeout=30)
        stream.close()
        assert read[0] < len(body)  # given up while the receiver was still reading
    finally:
        stop.set()
        reader.join(5)
        listener.close()


@pytest.fixture(scope="module")
def tls_pair(tmp_path_factory: pytest.TempPathFactory) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """A server context with a self-signed certificate for 127.0.0.1, and a client context that trusts it."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "genmill test")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        .sign(key, hashes.SHA256())
    )
    folder = tmp_path_factory.mktemp("tls")
    cert_file, key_file = folder / "cert.pem", folder / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(cert_file, key_file)
    client = ssl.create_default_context(cafile=str(cert_file))
    return server, client


def tls_fetcher(client: ssl.SSLContext) -> GuardedFetcher:
    guarded = fetcher()
    guarded._tls = client  # trust the test certificate instead of the system's roots
    return guarded


def test_https_answers_arrive_through_the_deadline_transport(tls_pair: tuple[ssl.SSLContext, ssl.SSLContext]) -> None:
    server, client = tls_pair
    with run_drip(DripServer(interval=0.0, tls=server)) as drip:
        found = tls_fetcher(client).fetch(drip.url, field="input.image")
    assert found.content_type == "image/png" and found.data.startswith(b"\x89PNG")


def test_https_headers_dripped_a_record_at_a_time_are_abandoned_at_the_deadline(
    tls_pair: tuple[ssl.SSLContext, ssl.SSLContext],
) -> None:
    server, client = tls_pair
    with run_drip(DripServer(interval=0.5, tls=server)) as drip:
        started = time.monotonic()
        with pytest.raises(FetchError) as info:
            tls_fetcher(client).fetch(drip.url, field="input.image")
        assert time.monotonic() - started < drip.drip_seconds
        assert "download timed out" in info.value.message
        assert drip.sent < drip.head_length
