"""Every statement of PostgreSQL's hot paths is one SQLAlchemy can cache: an uncacheable construct (a multi-row
VALUES insert was one) makes SQLAlchemy compile the statement on every call, which costs more than running it."""

from __future__ import annotations

import pytest

from genmill.store import claims, pg_create, pg_statements

WRITES = [("insert", "status", "task_id"), ("update", "status"), ("balances",), ("ledger", "1"), ("ledger", "2")]


@pytest.mark.parametrize("shape", WRITES)
def test_each_write_is_cacheable(shape: tuple[str, ...]) -> None:
    assert pg_statements._write_statement(shape)._generate_cache_key() is not None


@pytest.mark.parametrize("with_delivery", [False, True])
def test_the_event_statement_with_writes_and_the_staged_probe_is_cacheable(with_delivery: bool) -> None:
    statement = pg_statements._event_statement(with_delivery=with_delivery)
    for i, shape in enumerate(WRITES[1:]):
        statement = statement.add_cte(pg_statements._write_statement(shape).cte(f"w{i}"))
    statement = statement.add_columns(pg_statements._STAGED_PROBE)
    assert statement._generate_cache_key() is not None


def test_the_create_and_the_claim_are_cacheable() -> None:
    for statement in pg_create._STATEMENTS.values():
        assert statement._generate_cache_key() is not None
    assert claims.claim_statement((("genmill/echo", "echo"),))._generate_cache_key() is not None
