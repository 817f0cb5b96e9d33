"""Layer boundaries are checked, not hoped for: the domain stays pure."""

from __future__ import annotations

import ast
from pathlib import Path

import genmill

PACKAGE = Path(genmill.__file__).parent
FORBIDDEN_IN_DOMAIN = ("sqlalchemy", "fastapi", "starlette", "httpx", "genmill.store", "genmill.api")


def imported_modules(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_domain_imports_no_io_libraries() -> None:
    offenders = {
        f"{path.name}: {name}"
        for path in (PACKAGE / "domain").glob("*.py")
        for name in imported_modules(path)
        if name.startswith(FORBIDDEN_IN_DOMAIN)
    }
    assert not offenders, offenders


def test_worker_runtime_does_not_touch_the_store() -> None:
    names = imported_modules(PACKAGE / "worker" / "runtime.py")
    assert not {n for n in names if n.startswith(("genmill.store", "sqlalchemy", "genmill.api"))}
