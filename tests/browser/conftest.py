"""A real genmill on 127.0.0.1 (uvicorn in a thread, CPU test backends) and a headless Chromium driven by
Playwright, for the dashboard's browser tests.

The browser is the system's Chromium (`GENMILL_CHROMIUM`, default /usr/bin/chromium; .ci/run installs Debian's
package); Playwright never downloads one. Screenshots go to `GENMILL_BROWSER_ARTIFACTS` (default
tests/browser/artifacts/, git-ignored); the folder is printed at the start of the session.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from tests.browser.dashboard import LiveServer
from tests.browser.mesh import TetrahedronMesh
from tests.support import PillowUpscale

from genmill.app import Runtime, create_app
from genmill.backends.base import Backend
from genmill.models.echo.backend import EchoBackend
from genmill.settings import Settings

CHROMIUM = os.environ.get("GENMILL_CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = Path(os.environ.get("GENMILL_BROWSER_ARTIFACTS", Path(__file__).parent / "artifacts"))
CREDITS = 10**9

pytestmark = pytest.mark.browser


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def tts_backends() -> list[Backend]:
    """Piper (the cpu extra) speaks `Qubico/tts`; without it the TTS test is skipped, the others still run."""
    try:
        from genmill.models.tts.piper import PiperTtsBackend
    except ImportError:
        return []
    piper = PiperTtsBackend()
    return [piper] if piper.availability().ok else []


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    # Heartbeats carry a running task's progress to the server: frequent ones let a test watch it move.
    settings = Settings(
        data_dir=tmp_path_factory.mktemp("dashboard"), public_url=url, workers=1, heartbeat_seconds=0.25
    )
    upscaler = PillowUpscale()
    runtime = Runtime(settings, backends=[upscaler, EchoBackend(), TetrahedronMesh(), *tts_backends()])
    account = runtime.store.accounts.create_account("dashboard-user", credits=CREDITS)
    key, _ = runtime.store.accounts.create_key(account.account_id)
    server = uvicorn.Server(uvicorn.Config(create_app(settings, runtime=runtime), port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.02)
    yield LiveServer(url, runtime, upscaler, account.account_id, key)
    upscaler.gate.set()
    server.should_exit = True
    thread.join(10)
    runtime.store.close()


@pytest.fixture(scope="session")
def artifacts() -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    print(f"\nbrowser screenshots: {ARTIFACTS}")
    return ARTIFACTS


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Playwright's sync API runs an event loop in this thread while it is open: it is closed when the browser
    tests of a module end (module scope), so that later tests can run their own loops (asyncio.run)."""
    if not Path(CHROMIUM).exists():
        message = f"no Chromium at {CHROMIUM} (set GENMILL_CHROMIUM; .ci/run installs Debian's chromium)"
        if os.environ.get("CI"):  # CI installs the browser: a missing one is a broken install, not a reason to skip
            pytest.fail(message)
        pytest.skip(message)
    import playwright.sync_api as playwright_api  # the dev extra installs it

    with playwright_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=["--no-sandbox", "--autoplay-policy=no-user-gesture-required"],
        )
        yield chromium
        chromium.close()


def console_problem(kind: str, text: str) -> list[str]:
    """Errors the page reports (a CSP violation is one); an HTTP error answer the page handles itself (a 400
    naming a field) is logged by Chromium as "Failed to load resource" and is not a problem of the page."""
    if kind != "error" or text.startswith("Failed to load resource"):
        return []
    return [f"console error: {text}"]


@pytest.fixture
def page(browser: Any, server: LiveServer) -> Iterator[Any]:
    """A fresh browser context per test (its own sessionStorage), failing the test on any page error or CSP
    violation reported to the console."""
    context = browser.new_context(viewport={"width": 1200, "height": 900})
    page = context.new_page()
    problems: list[str] = []
    page.on("pageerror", lambda error: problems.append(f"page error: {error}"))
    page.on("console", lambda message: problems.extend(console_problem(message.type, message.text)))
    page.set_default_timeout(15_000)
    yield page
    context.close()
    assert not problems, problems
