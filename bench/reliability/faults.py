"""Crashes under load: kill -9 of the server and of workers, and a PostgreSQL restart.

Both run a steady create load of `genmill/echo` tasks (each sleeping 50-400 ms, so workers are busy when a kill
lands). Clients behave as a careful client does: each create carries an `Idempotency-Key` and is sent again after
a refused connection or a 5xx, so a create the server committed but could not acknowledge is not made twice.

- **kill -9**: two remote workers (two slots each) and an API-only server. A worker is killed while it holds a
  task, the server is killed mid-load and started again on its port, then the other worker is killed mid-task;
  each comes back. Their leases expire and the reaper requeues the tasks (attempt + 1).
- **PostgreSQL restart** (`--pg-restart` only, never in the tests): the server runs on a PostgreSQL cluster of
  the suite's own (initdb into the scratch folder, a free port), restarted with `pg_ctl restart -m fast` under
  the load, so no other database on the machine is touched. A 503 while it is down is the right answer; a 500
  is a failure.
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import subprocess
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import sqlalchemy as sa
from tests.e2e.harness import free_port

from bench.reliability.client import Client, Tally
from bench.reliability.deployment import Deployment, database
from bench.reliability.scenario import Row, RunContext


@dataclass
class CreateLoad:
    """`total` echo creates from `clients` threads; `acknowledged` holds the ids the server answered 200 for."""

    client: Client
    key: str
    total: int
    clients: int
    label: str
    acknowledged: list[str] = field(default_factory=list)
    refused: Counter[int] = field(default_factory=Counter)
    retried_5xx: Counter[int] = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)
    threads: list[threading.Thread] = field(default_factory=list)

    def start(self) -> None:
        self.threads = [threading.Thread(target=self._client, args=(n,), daemon=True) for n in range(self.clients)]
        for thread in self.threads:
            thread.start()

    def _client(self, number: int) -> None:
        rng = random.Random(number)
        for i in range(number, self.total, self.clients):
            body = {
                "model": "genmill/echo",
                "task_type": "echo",
                "input": {"payload": i, "sleep_ms": rng.randint(50, 400)},
            }
            headers = {"Idempotency-Key": f"{self.label}-{i}"}
            give_up = time.monotonic() + 120
            while time.monotonic() < give_up:
                try:
                    answer = self.client.send("POST", "/api/v1/task", self.key, body, headers=headers, retry_down_s=60)
                except OSError:
                    continue
                if answer.status >= 500:
                    with self.lock:
                        self.retried_5xx[answer.status] += 1
                    time.sleep(0.3)
                    continue
                with self.lock:
                    if answer.status == 200:
                        self.acknowledged.append(str(answer.data()["task_id"]))
                    else:
                        self.refused[answer.status] += 1
                break

    def wait_for(self, fraction: float, timeout_s: float = 120) -> None:
        deadline = time.monotonic() + timeout_s
        while len(self.acknowledged) < self.total * fraction and time.monotonic() < deadline:
            time.sleep(0.05)

    def join(self, timeout_s: float = 300) -> None:
        deadline = time.monotonic() + timeout_s
        for thread in self.threads:
            thread.join(max(0.0, deadline - time.monotonic()))


def _finish_load(ctx: RunContext, row: Row, dep: Deployment, load: CreateLoad, account_id: str, tally: Tally) -> None:
    load.join()
    ctx.say(f"  load done: {len(load.acknowledged)} acknowledged")
    result = dep.settle_and_audit(load.acknowledged, accounts=[account_id], timeout_s=240)
    ctx.say("  settled")
    rows = dep.tasks_of(account_id)
    stored, retried = len(rows), sum(1 for r in rows.values() if r.attempts > 1)
    unique = len(set(load.acknowledged))
    if stored != unique:
        row.fail(f"{stored} tasks stored for {unique} acknowledged creates (a retried create was made twice)")
    if len(load.acknowledged) < load.total:
        row.fail(f"only {len(load.acknowledged)} of {load.total} creates were acknowledged ({dict(load.refused)})")
    row.notes.append(f"tasks that needed another attempt: {retried}; final statuses {result.statuses}")
    if load.retried_5xx:
        row.notes.append(f"creates answered 5xx and sent again: {dict(load.retried_5xx)}")
    row.finish(tally, result, server_errors_allowed=True)


def run_kill(ctx: RunContext, engine: str) -> Row:
    row = Row.begin("kill -9 server and workers", engine)
    workdir = ctx.scratch(f"kill-{engine}")
    tally = Tally()
    with database(engine, workdir) as url, Deployment(engine, url, workdir, remote_workers=2) as dep:
        account = dep.new_account("crash", credits=10**12)
        load = CreateLoad(dep.client(tally), account.key, ctx.sizes.crash_tasks, ctx.sizes.crash_clients, "crash")
        load.start()
        load.wait_for(0.15)
        busy = [dep.kill_worker_while_busy(0, timeout_s=10)]
        ctx.say(f"  worker 0 killed {'mid-task' if busy[-1] else 'idle'} at {len(load.acknowledged)} creates")
        dep.start_worker(0)
        load.wait_for(0.35)
        dep.kill_server()
        ctx.say(f"  server killed at {len(load.acknowledged)} creates")
        dep.restart_server()
        ctx.say("  server back")
        load.wait_for(0.55)
        busy.append(dep.kill_worker_while_busy(1, timeout_s=10))
        ctx.say(f"  worker 1 killed {'mid-task' if busy[-1] else 'idle'} at {len(load.acknowledged)} creates")
        dep.start_worker(1)
        _finish_load(ctx, row, dep, load, account.account_id, tally)
    row.load = f"{ctx.sizes.crash_tasks} echo tasks from {ctx.sizes.crash_clients} clients, 2 workers with 2 slots each"
    row.faults = "kill -9 worker mid-task, kill -9 server mid-load, kill -9 other worker mid-task"
    if not all(busy):
        row.notes.append("a worker was idle when it was killed")
    _no_500(row, tally)
    return row


def _no_500(row: Row, tally: Tally) -> None:
    """A 503 (with Retry-After) while something is down is the right answer; any other 5xx fails the row."""
    wrong = {status: n for status, n in tally.statuses.items() if status >= 500 and status != 503}
    if wrong:
        row.fail(f"5xx other than 503: {wrong}")
        row.notes += [f"server error: {e}" for e in dict.fromkeys(tally.server_errors)][:6]


def pg_restart_unavailable() -> str:
    """Empty when a private PostgreSQL cluster can be made here, else why not."""
    if not (_pg_tool("initdb") and _pg_tool("pg_ctl")):
        return "initdb/pg_ctl not found"
    if os.geteuid() == 0 and shutil.which("runuser") is None:
        return "running as root without runuser (PostgreSQL refuses to run as root)"
    return ""


def _pg_tool(name: str) -> str:
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"))
    return str(candidates[-1]) if candidates else ""


@dataclass
class PrivateCluster:
    root: Path
    port: int
    as_postgres: list[str]

    @property
    def admin_url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def pg_ctl(self, *args: str) -> None:
        """pg_ctl on the cluster, the server's output to its log file (a pipe would stay open as long as it runs)."""
        subprocess.run(
            [*self.as_postgres, _pg_tool("pg_ctl"), "-D", str(self.root / "data"), "-l", str(self.root / "log"), *args],
            check=True,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=120,
        )

    def restart(self) -> None:
        self.pg_ctl("-m", "fast", "-w", "restart")


@contextlib.contextmanager
def private_cluster() -> Iterator[PrivateCluster]:
    """A PostgreSQL cluster of our own on a free port (never the machine's shared one), removed afterwards."""
    root = Path(tempfile.mkdtemp(prefix="genmill-reliability-pg-"))
    as_postgres: list[str] = []
    if os.geteuid() == 0:
        shutil.chown(root, "postgres")
        as_postgres = ["runuser", "-u", "postgres", "--"]
    cluster = PrivateCluster(root, free_port(), as_postgres)
    try:
        subprocess.run(
            [*as_postgres, _pg_tool("initdb"), "-D", str(root / "data"), "-A", "trust", "-U", "postgres", "-N"],
            check=True,
            capture_output=True,
            timeout=300,
        )
        cluster.pg_ctl("-o", f"-p {cluster.port} -c listen_addresses=127.0.0.1 -k {root}", "-w", "start")
        yield cluster
    finally:
        with contextlib.suppress(subprocess.SubprocessError):
            cluster.pg_ctl("-m", "immediate", "-w", "stop")
        shutil.rmtree(root, ignore_errors=True)


def run_pg_restart(ctx: RunContext) -> Row:
    row = Row.begin("PostgreSQL restart", "postgresql")
    workdir = ctx.scratch("pg-restart")
    tally = Tally()
    with private_cluster() as cluster:
        admin = sa.create_engine(cluster.admin_url, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.exec_driver_sql('CREATE DATABASE "genmill"')
        admin.dispose()
        url = cluster.admin_url.rsplit("/", 1)[0] + "/genmill"
        with Deployment("postgresql", url, workdir, remote_workers=1) as dep:
            account = dep.new_account("pg-restart", credits=10**12)
            total = ctx.sizes.crash_tasks
            load = CreateLoad(dep.client(tally), account.key, total, ctx.sizes.crash_clients, "pg")
            load.start()
            load.wait_for(0.3)
            cluster.restart()
            load.wait_for(0.6)
            cluster.restart()
            _finish_load(ctx, row, dep, load, account.account_id, tally)
    row.load = f"{ctx.sizes.crash_tasks} echo tasks from {ctx.sizes.crash_clients} clients, 1 worker with 2 slots"
    row.faults = "PostgreSQL restarted twice (pg_ctl restart -m fast, a private cluster)"
    _no_500(row, tally)
    return row
