"""Scale-out under faults, on PostgreSQL: two API replicas and three remote workers as processes, with kill -9 of
workers and of a replica in the middle of a load. Afterwards every acknowledged task is in exactly one terminal
state, completed once and billed once, the ledger reconciles, and nothing is left staged.
"""

from __future__ import annotations

import http.client
import random
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from tests.e2e.harness import GENMILL, Server, call, kill_worker_when_busy

from genmill.domain.ledger import LedgerEntry, LedgerKind, balances_from_ledger
from genmill.store.tables import accounts, ledger, task_events, tasks
from genmill.testing.postgres import temporary_database

TASKS = 150
PRICE = 1000


@pytest.fixture
def database() -> Iterator[str]:
    with temporary_database(prefix="genmill_scale_") as url:
        yield url


class Fleet:
    def __init__(self, database: str, data: Path) -> None:
        env = {
            "GENMILL_DATABASE_URL": database,
            "GENMILL_LEASE_SECONDS": "3",
            "GENMILL_HEARTBEAT_SECONDS": "0.5",
            "GENMILL_REAPER_SECONDS": "0.5",
            "GENMILL_MAX_ATTEMPTS": "6",
            "GENMILL_ECHO_PRICE_CREDITS": str(PRICE),
        }
        self.replicas = [Server(data, **env) for _ in range(2)]
        self.env = self.replicas[0].env
        self.workers: list[subprocess.Popen[bytes] | None] = [None, None, None]
        self.token = ""
        self.log = open(data / "workers.log", "ab")  # noqa: SIM115 - closed in stop()

    def start_worker(self, index: int) -> None:
        server = self.replicas[index % len(self.replicas)]
        self.workers[index] = subprocess.Popen(
            [
                *GENMILL,
                "worker",
                "--server",
                server.url,
                "--token",
                self.token,
                "--models",
                "genmill/echo",
                "--concurrency",
                "2",
                "--name",
                f"w{index}",
            ],
            env=self.env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )

    def kill_worker(self, index: int, database: str) -> None:
        """kill -9 worker `index` while it is running a task, so the kill really interrupts work."""
        proc = self.workers[index]
        assert proc is not None
        kill_worker_when_busy(proc, database, f"w{index}")

    def stop(self) -> None:
        for proc in self.workers:
            if proc is not None and proc.poll() is None:
                proc.terminate()
                proc.wait(60)
        for replica in self.replicas:
            if replica.proc is not None and replica.proc.poll() is None:
                replica.stop()
        self.log.close()


def test_kills_lose_nothing_and_bill_once(database: str, tmp_path: Path) -> None:
    fleet = Fleet(database, tmp_path)
    fleet.replicas[0].cli("db", "upgrade")
    keys = [fleet.replicas[0].new_key(f"acct{i}", credits=10_000_000) for i in range(3)]
    fleet.token = fleet.replicas[0].cli("workers", "token", "create", "--name", "fleet").strip().splitlines()[-1]
    for replica in fleet.replicas:
        replica.start("--no-workers")
    for index in range(3):
        fleet.start_worker(index)
    acknowledged: list[str] = []
    lock = threading.Lock()
    rng = random.Random(7)

    def client(number: int) -> None:
        for i in range(TASKS // 5):
            body = {
                "model": "genmill/echo",
                "task_type": "echo",
                "input": {"payload": {"n": number * 1000 + i}, "sleep_ms": rng.randint(50, 400)},
            }
            for attempt in range(200):  # a client retries on another replica when one is down
                replica = fleet.replicas[(number + i + attempt) % 2]
                try:
                    code, answer = call("POST", replica.url + "/api/v1/task", keys[number % 3], body)
                except (OSError, http.client.HTTPException):  # a replica killed mid-answer cuts the response
                    time.sleep(0.2)
                    continue
                if code == 200:
                    with lock:
                        acknowledged.append(answer["data"]["task_id"])
                    break
                if code == 429 or (code == 400 and "no worker" in str(answer)):
                    time.sleep(0.5)  # too many staged tasks while workers restart: back off like a client would
                    continue
                raise AssertionError(answer)
            time.sleep(0.02)

    clients = [threading.Thread(target=client, args=(n,)) for n in range(5)]
    try:
        for c in clients:
            c.start()
        time.sleep(3)
        fleet.kill_worker(0, database)  # kill -9 a worker mid-task
        time.sleep(1)
        fleet.replicas[1].kill()  # kill -9 an API replica mid-load
        time.sleep(2)
        fleet.start_worker(0)
        fleet.replicas[1].start("--no-workers")
        time.sleep(2)
        fleet.kill_worker(1, database)
        time.sleep(1)
        fleet.start_worker(1)
        for c in clients:
            c.join(300)
        engine = sa.create_engine(database)
        deadline = time.time() + 180
        with engine.connect() as conn:
            while time.time() < deadline:
                live = conn.execute(
                    sa.select(sa.func.count())
                    .select_from(tasks)
                    .where(tasks.c.status.in_(["pending", "processing", "staged"]))
                ).scalar_one()
                conn.rollback()
                if live == 0:
                    break
                time.sleep(0.5)
            rows = {r.task_id: r for r in conn.execute(sa.select(tasks)).all()}
            completions: dict[str, int] = dict(
                conn.execute(
                    sa.select(task_events.c.task_id, sa.func.count())
                    .where(task_events.c.kind == "status", task_events.c.status == "completed")
                    .group_by(task_events.c.task_id)
                ).all()
            )
            entries = conn.execute(sa.select(ledger).order_by(ledger.c.entry_id)).all()
            balances = {r.account_id: r for r in conn.execute(sa.select(accounts)).all()}
        engine.dispose()
    finally:
        fleet.stop()

    lost = [t for t in acknowledged if t not in rows]
    statuses = [rows[t].status for t in acknowledged if t in rows]
    double = [t for t, n in completions.items() if n > 1]
    consumes: dict[str, int] = {}
    for e in entries:
        if e.kind == LedgerKind.CONSUME.value:
            consumes[e.task_id] = consumes.get(e.task_id, 0) + 1
    retried = sum(1 for t in acknowledged if t in rows and rows[t].attempts > 1)
    by_account: dict[str, list[LedgerEntry]] = {}
    for e in entries:
        by_account.setdefault(e.account_id, []).append(LedgerEntry(LedgerKind(e.kind), e.amount, e.task_id))
    ledger_difference = 0
    for account_id, account_entries in by_account.items():
        rebuilt = balances_from_ledger(account_entries)
        row = balances[account_id]
        ledger_difference += abs(rebuilt.available - row.available_credits) + abs(rebuilt.frozen - row.frozen_credits)
        ledger_difference += abs(rebuilt.used - row.used_credits)
    print(
        f"\nscale-out: tasks={len(acknowledged)} kills=3 (2 workers, 1 replica) retried={retried} lost={len(lost)} "
        f"double_completions={len(double)} ledger_difference={ledger_difference} "
        f"completed={statuses.count('completed')} failed={statuses.count('failed')}"
    )
    assert len(acknowledged) == TASKS // 5 * 5
    assert lost == [] and double == [] and ledger_difference == 0
    assert retried >= 1  # the worker kills interrupted running tasks, which were retried elsewhere
    assert set(statuses) <= {"completed", "failed"}, set(statuses)
    for task_id in acknowledged:
        task = rows[task_id]
        assert consumes.get(task_id, 0) == (1 if task.status == "completed" else 0)
        assert task.frozen_credits == 0
