"""The import contracts in pyproject.toml hold, and each one is a gate that can fail: a copy of the package with
one deliberate violation breaks the contract that forbids it (and, through transitive imports, sometimes another
that depends on the same arrow)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import genmill

SRC = Path(genmill.__file__).parent.parent
ROOT = SRC.parent
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def lint_imports(cwd: Path, src: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(src)}
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"], cwd=cwd, env=env, capture_output=True, text=True, timeout=120
    )


def test_the_contracts_hold() -> None:
    result = lint_imports(ROOT, SRC)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


VIOLATIONS = [
    ("domain/timefmt.py", "import sqlalchemy", "the domain is pure"),
    ("store/base.py", "import genmill.engine.tasks", "the server's layers"),
    ("worker/heartbeats.py", "import genmill.store", "the worker client reaches neither"),
    ("net/media.py", "import genmill.backends.base", "net imports no backend"),
    ("models/echo/backend.py", "import genmill.store", "backends and model families never reach"),
    ("backends/toolkit.py", "import genmill.models.flux.catalog", "shared backend code does not import"),
    ("models/echo/backend.py", "import genmill.models.flux.catalog", "model families are independent"),
    ("mcp_server/outputs.py", "import genmill.store", "the MCP server is a client of the HTTP API"),
    ("client/core.py", "import genmill.domain.states", "the SDK and the CLI's client commands need only httpx"),
]


@pytest.mark.parametrize(("module", "line", "contract"), VIOLATIONS, ids=[v[2] for v in VIOLATIONS])
def test_a_deliberate_violation_breaks_its_contract(tmp_path: Path, module: str, line: str, contract: str) -> None:
    shutil.copytree(SRC / "genmill", tmp_path / "src" / "genmill", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    target = tmp_path / "src" / "genmill" / module
    target.write_text(target.read_text() + f"\n{line}  # a deliberate violation\n")
    result = lint_imports(tmp_path, tmp_path / "src")
    assert result.returncode != 0, result.stdout
    broken = result.stdout.split("Broken contracts", 1)[-1]
    assert contract in broken, result.stdout
