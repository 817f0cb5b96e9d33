"""Real genmill servers on 127.0.0.1 for the SDK's tests: uvicorn in a thread, in-process workers running the
Pillow test backends. `forwarding` puts a second genmill in front that runs nothing itself and forwards every task
to the first as its upstream provider (GENMILL_UPSTREAM_*), so the SDK is shown to work through a PiAPI-speaking
provider as well."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.loopback import free_port, run_uvicorn
from tests.support import AlwaysFails, PillowUpscale

from genmill.app import Runtime, create_app
from genmill.backends.base import Backend
from genmill.backends.upstream import UpstreamBackend
from genmill.settings import Settings

MODEL = "Qubico/image-toolkit"
CREDITS = 10**10


@dataclass
class Server:
    url: str
    key: str
    account_id: str
    runtime: Runtime
    upscaler: PillowUpscale
    """The upscaler that really runs the tasks (on the upstream when forwarding): its `gate` holds them."""


@contextmanager
def serve(data_dir: Path, backends: list[Backend], upscaler: PillowUpscale, url: str | None = None) -> Iterator[Server]:
    """A genmill with one in-process worker on a loopback port, and an account with a key."""
    port = free_port() if url is None else int(url.rsplit(":", 1)[1])
    url = url or f"http://127.0.0.1:{port}"
    settings = Settings(data_dir=data_dir, public_url=url, workers=1, allow_private_urls=True)
    runtime = Runtime(settings, backends=backends)
    account = runtime.store.accounts.create_account("sdk", credits=CREDITS)
    key, _ = runtime.store.accounts.create_key(account.account_id)
    with closing(runtime.store), run_uvicorn(create_app(settings, runtime=runtime), port):
        try:
            yield Server(url, key, account.account_id, runtime, upscaler)
        finally:
            upscaler.gate.set()


@contextmanager
def direct(tmp_path: Path) -> Iterator[Server]:
    upscaler = PillowUpscale()
    with serve(tmp_path / "direct", [upscaler, AlwaysFails()], upscaler) as server:
        yield server


@contextmanager
def forwarding(tmp_path: Path) -> Iterator[Server]:
    """The front server the client talks to, forwarding upscale and background-remove to an upstream genmill."""
    with direct(tmp_path) as upstream:
        front_url = f"http://127.0.0.1:{free_port()}"
        backend = UpstreamBackend(
            base_url=upstream.url,
            api_key=upstream.key,
            entries=[(MODEL, "upscale"), (MODEL, "background-remove")],
            poll_interval=0.05,
            timeout=60,
            allow_private=True,
            local_url=front_url,
        )
        try:
            with serve(tmp_path / "front", [backend], upstream.upscaler, url=front_url) as front:
                yield front
        finally:
            backend.unload()
