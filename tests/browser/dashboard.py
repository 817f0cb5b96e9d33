"""What the dashboard tests share: the live server's handle, signing in, screenshots."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.support import PillowUpscale

from genmill.app import Runtime


@dataclass
class LiveServer:
    """A genmill serving on 127.0.0.1 in a thread, and the account the browser signs in with."""

    url: str
    runtime: Runtime
    upscaler: PillowUpscale
    account_id: str
    key: str


def sign_in(page: Any, url: str, key: str) -> None:
    page.goto(f"{url}/")
    assert page.url.startswith(f"{url}/dashboard/"), page.url  # `/` leads to the dashboard
    page.fill("#api-key", key)
    page.click("#sign-in button[type=submit]")
    page.wait_for_selector("#task-list")


def shot(page: Any, artifacts: Path, name: str) -> None:
    page.screenshot(path=str(artifacts / f"{name}.png"), full_page=True)
