"""Helpers for testing genmill and backends written for it, shipped with the package so that plugin authors use
the same ones as genmill's own tests.

`MemoryRunContext` runs a backend directly, without a server or a store; `genmill.testing.postgres` makes a
throw-away PostgreSQL database. Neither imports pytest: they work under any test runner.
"""

from genmill.testing.run_context import MemoryRunContext, SavedOutput

__all__ = ["MemoryRunContext", "SavedOutput"]
