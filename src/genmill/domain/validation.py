"""How a pydantic validation failure reads in an error message, for the API and the worker alike.

It lives in the domain, not beside the engine, so that a remote worker can phrase a task's input error the way
the API phrases a request's without importing anything that talks to the database.
"""

from __future__ import annotations

from pydantic import ValidationError


def describe_validation_error(exc: ValidationError, prefix: str) -> str:
    """`input.width: Input should be less than or equal to 2048; input.prompt: Field required`."""
    parts = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err.get("loc", ()) if p != "body")
        where = f"{prefix}.{loc}" if prefix and loc else (prefix or loc or "body")
        parts.append(f"{where}: {err.get('msg', 'invalid')}")
    return "; ".join(parts)
