"""A create on PostgreSQL is one statement (`genmill.store.pg_create`): counted here, raced for the account's
limits, and checked against a database function that decides otherwise than genmill's rules."""

from __future__ import annotations

import importlib
import threading
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from tests.integration.test_store_tasks import assert_reconciles, new_task

from genmill.app import Runtime, create_app
from genmill.domain.states import TaskStatus
from genmill.errors import GenmillError, TooManyTasks
from genmill.settings import Settings
from genmill.store import Store
from genmill.store.engine import create_engine
from genmill.store.pg_create import AdmissionDisagreement
from genmill.store.tables import ledger, task_events, tasks


def test_a_create_is_one_statement(pg_store: Store) -> None:
    account = pg_store.accounts.create_account("one", credits=1000)
    seen: Counter[str] = Counter()

    def count(*_: Any) -> None:
        seen["statements"] += 1

    sa.event.listen(pg_store.engine, "before_cursor_execute", count)
    try:
        task, replayed = pg_store.tasks.create(new_task(account.account_id))
    finally:
        sa.event.remove(pg_store.engine, "before_cursor_execute", count)
    assert seen["statements"] == 1
    assert not replayed and task.status is TaskStatus.PENDING
    with pg_store.engine.connect() as conn:
        event = conn.execute(sa.select(task_events).where(task_events.c.task_id == task.task_id)).one()
    assert event.status == "pending" and event.snapshot["status"] == "pending"
    assert event.snapshot["meta"]["usage"]["frozen"] == 100


def test_racing_creates_keep_the_concurrency_and_staged_limits(pg_store: Store) -> None:
    """Sixteen creates at once for an account that runs 3 and stages 5: the counts after the row lock see every
    create that committed meanwhile, so exactly 3 start pending, 5 wait staged and 8 are refused."""
    pg_store = Store(pg_store.engine, max_staged_per_account=5)
    account = pg_store.accounts.create_account("racer", credits=10_000, max_concurrency=3)
    start = threading.Barrier(16)
    outcomes: list[str] = []

    def create() -> None:
        start.wait()
        try:
            task, _ = pg_store.tasks.create(new_task(account.account_id))
            outcomes.append(task.status.value)
        except TooManyTasks:
            outcomes.append("refused")

    threads = [threading.Thread(target=create) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert Counter(outcomes) == {"pending": 3, "staged": 5, "refused": 8}
    assert_reconciles(pg_store, account.account_id, 10_000)


MIGRATION = importlib.import_module("genmill.store.migrations.versions.0007_pg_admit_task_function")
SIGNATURE = MIGRATION.ADMIT_TASK.split("LANGUAGE")[0].replace(
    " genmill_admit_task(", " genmill_tampered.genmill_admit_task("
)
TAMPERED = (
    SIGNATURE
    + """LANGUAGE sql VOLATILE AS $fn$
    SELECT r.r_outcome, CASE WHEN r.r_status = 'staged' THEN 'pending' ELSE r.r_status END, r.r_is_enabled,
           r.r_max_concurrency, r.r_active, r.r_staged, r.r_available, r.r_frozen, r.r_used
    FROM public.genmill_admit_task(p_account_id, p_task_id, p_price, p_now, p_active, p_pending, p_staged,
                                   p_max_staged, p_freeze, p_key, p_request_hash, p_key_expires_at) AS r
$fn$
"""
)
"""The real function's signature, answering what the real one does but starting a task the rules stage."""


def test_a_function_that_admits_past_the_limit_is_caught_and_rolled_back(pg_store: Store, pg_url: str) -> None:
    """A database function out of step with genmill's rules (here it starts a task the rules stage) fails the
    create with AdmissionDisagreement, and its transaction leaves nothing: no task, no event, no ledger entry."""
    with pg_store.engine.begin() as conn:
        conn.execute(sa.text("CREATE SCHEMA IF NOT EXISTS genmill_tampered"))
        conn.execute(sa.text(TAMPERED))
    engine = create_engine(pg_url)

    @sa.event.listens_for(engine, "connect")
    def tampered_first(dbapi_conn: Any, _: Any) -> None:
        with dbapi_conn.cursor() as cursor:
            cursor.execute("SET search_path TO genmill_tampered, public")
        dbapi_conn.commit()

    tampered = Store(engine, max_staged_per_account=5)
    try:
        account = pg_store.accounts.create_account("limit", credits=1000, max_concurrency=1)
        first, _ = tampered.tasks.create(new_task(account.account_id))  # a slot is free: both agree
        assert first.status is TaskStatus.PENDING
        with pytest.raises(AdmissionDisagreement, match="'pending'"):
            tampered.tasks.create(new_task(account.account_id))
        with pg_store.engine.connect() as conn:
            assert conn.execute(sa.select(sa.func.count()).select_from(tasks)).scalar_one() == 1
            assert conn.execute(sa.select(sa.func.count()).select_from(task_events)).scalar_one() == 1
            assert conn.execute(sa.select(sa.func.count()).select_from(ledger)).scalar_one() == 2  # topup, freeze
        assert_reconciles(pg_store, account.account_id, 1000)
        assert not isinstance(AdmissionDisagreement("x"), GenmillError)  # a 500, never a client's refusal
    finally:
        tampered.close()
        with pg_store.engine.begin() as conn:
            conn.execute(sa.text("DROP SCHEMA genmill_tampered CASCADE"))


def test_an_http_create_sends_one_statement(pg_url: str, pg_store: Store, tmp_path: Path) -> None:
    """Through the whole API (authentication from the key cache, the checks, the create, the metrics and the
    log line after the commit): one statement, the create's own."""
    settings = Settings(data_dir=tmp_path, database_url=pg_url, workers=0, public_url="http://testserver")
    runtime = Runtime(settings)
    account = runtime.store.accounts.create_account("http", credits=1000)
    key, _ = runtime.store.accounts.create_key(account.account_id)
    _, token = runtime.store.workers.create_token("gpu hosts")
    runtime.store.workers.register(token, "gpu-1", [("genmill/echo", "echo")])  # the API-only server's worker
    body = {"model": "genmill/echo", "task_type": "echo", "input": {"text": "hello"}}
    seen: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        seen.append(statement)

    try:
        with TestClient(create_app(settings, runtime=runtime, run_workers=False)) as client:
            assert client.post("/api/v1/task", headers={"X-API-Key": key}, json=body).status_code == 200  # warm
            sa.event.listen(runtime.store.engine, "before_cursor_execute", record)
            created = client.post("/api/v1/task", headers={"X-API-Key": key}, json=body)
            sa.event.remove(runtime.store.engine, "before_cursor_execute", record)
        assert created.status_code == 200, created.text
        assert len(seen) == 1 and "genmill_admit_task" in seen[0]
        metrics = runtime.metrics.exposition().decode()
        assert 'genmill_task_transitions_total{model="genmill/echo",status="pending"} 2.0' in metrics
    finally:
        runtime.store.close()
