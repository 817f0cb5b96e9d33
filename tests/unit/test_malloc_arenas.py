"""`genmill serve` caps glibc's malloc arenas unless the operator chose a number (genmill.httpserver)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from genmill import httpserver


def test_an_operators_malloc_arena_max_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MALLOC_ARENA_MAX", "8")
    assert httpserver.limit_malloc_arenas() is False


def test_nothing_is_done_off_glibc(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MALLOC_ARENA_MAX", raising=False)
    monkeypatch.setattr("platform.libc_ver", lambda: ("musl", "1.2"))
    assert httpserver.limit_malloc_arenas() is False


def test_glibc_accepts_the_cap() -> None:
    """In a fresh interpreter, so the test process keeps its own allocator settings."""
    code = (
        "from genmill.httpserver import limit_malloc_arenas as f; import platform; print(platform.libc_ver()[0], f())"
    )
    env = {k: v for k, v in os.environ.items() if k != "MALLOC_ARENA_MAX"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True).stdout
    libc, result = out.split()
    assert result == ("True" if libc == "glibc" else "False")
