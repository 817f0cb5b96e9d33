"""The genmill under test: real `genmill serve` and `genmill worker` processes on SQLite or PostgreSQL.

A `Deployment` is what an operator runs: an API server (`tests.e2e.harness.Server`, the crash tests' harness)
and remote workers that pull `genmill/echo` over the worker protocol, or, where a scenario needs it, the
server's own in-process workers. Accounts, keys and worker tokens are made in-process through the store, as
`genmill keys create` would, without a process start each. Leases are short (3 s, heartbeats every 0.5 s, the
reaper every 0.5 s), so that a killed worker's task comes back within seconds; echo costs `ECHO_PRICE` credits,
so that every create, completion and cancel moves money the audit can reconcile.
"""

from __future__ import annotations

import contextlib
import io
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa
from tests.e2e.harness import GENMILL, Server, free_port, kill_worker_when_busy

from bench.common import postgres_database
from bench.reliability.audit import Audit, audit, wait_settled
from bench.reliability.client import Client, Tally
from genmill.settings import Settings
from genmill.store import Store
from genmill.store.migrate import upgrade
from genmill.store.tables import tasks

ENGINES = ("sqlite", "postgresql")
ECHO = ("genmill/echo", "echo")
ECHO_PRICE = 1000
SUITE_ENV = {
    "GENMILL_LEASE_SECONDS": "3",
    "GENMILL_HEARTBEAT_SECONDS": "0.5",
    "GENMILL_REAPER_SECONDS": "0.5",
    "GENMILL_MAX_ATTEMPTS": "6",
    "GENMILL_ECHO_PRICE_CREDITS": str(ECHO_PRICE),
    "GENMILL_BACKENDS": "echo",
    "GENMILL_WEBHOOK_RETRY_SCALE": "0.01",
}


def limits_off() -> dict[str, str]:
    """Every per-key rate limit the server has, set to 0 (off): the suite measures faults, not throttling. The
    names are read from `Settings`, so limits added later are switched off too; a 429 is still never a failure."""
    return {f"GENMILL_{name.upper()}": "0" for name in Settings.model_fields if "rate_limit" in name}


@contextlib.contextmanager
def database(engine: str, workdir: Path) -> Iterator[str]:
    """A fresh database for one deployment: a SQLite file in `workdir`, or a throw-away PostgreSQL database
    (`bench.common.postgres_database`, dropped afterwards)."""
    if engine == "sqlite":
        yield f"sqlite:///{(workdir / 'genmill.db').resolve()}"
    elif engine == "postgresql":
        with postgres_database() as url:
            yield url
    else:
        raise ValueError(f"unknown engine {engine!r}; one of {', '.join(ENGINES)}")


@dataclass(frozen=True)
class TaskRow:
    task_id: str
    status: str
    attempts: int
    lease_id: str | None


@dataclass(frozen=True)
class Key:
    account_id: str
    key: str


class Deployment:
    """`genmill serve` plus its workers over one database; `remote_workers` worker processes (each with
    `worker_concurrency` slots) when `in_process_workers` is 0, else the server's own worker threads."""

    def __init__(
        self,
        engine: str,
        database_url: str,
        workdir: Path,
        *,
        remote_workers: int = 1,
        worker_concurrency: int = 2,
        in_process_workers: int = 0,
        env: dict[str, str] | None = None,
    ) -> None:
        self.engine = engine
        self.database_url = database_url
        self.workdir = workdir
        self.in_process_workers = in_process_workers
        self.remote_workers = 0 if in_process_workers else remote_workers
        self.worker_concurrency = worker_concurrency
        server_env = {**SUITE_ENV, **limits_off(), "GENMILL_DATABASE_URL": database_url, **(env or {})}
        self.server = Server(workdir, **server_env)
        self.workers: list[subprocess.Popen[bytes] | None] = [None] * self.remote_workers
        self.token = ""
        self._worker_log: io.BufferedWriter | None = None

    @property
    def url(self) -> str:
        return self.server.url

    def client(self, tally: Tally | None = None) -> Client:
        return Client(self.url, tally)

    def start(self) -> None:
        upgrade(self.database_url)
        if self.remote_workers:
            with self.store() as store:
                self.token, _ = store.workers.create_token("reliability")
            self._worker_log = open(self.workdir / "workers.log", "ab")  # noqa: SIM115 - closed in stop()
        self.server.port = free_port()
        for index in range(self.remote_workers):  # they start while the server does, and register once it is up
            self.start_worker(index)
        self.restart_server()
        self.wait_until_served(*ECHO)

    def restart_server(self) -> None:
        """Start the server on its port (again, after `kill_server()`: remote workers and clients find it there)."""
        flag = ["--workers", str(self.in_process_workers)] if self.in_process_workers else ["--no-workers"]
        self.server.start(*flag, "--log-level", "warning", port=self.server.port)

    def kill_server(self) -> None:
        self.server.kill()

    def start_worker(self, index: int) -> None:
        assert self._worker_log is not None
        self.workers[index] = subprocess.Popen(
            [
                *GENMILL,
                "worker",
                "--server",
                f"http://127.0.0.1:{self.server.port}",
                "--token",
                self.token,
                "--models",
                "/".join(ECHO),
                "--concurrency",
                str(self.worker_concurrency),
                "--name",
                f"w{index}",
            ],
            env=self.server.env,
            stdout=self._worker_log,
            stderr=subprocess.STDOUT,
        )

    def kill_worker_while_busy(self, index: int, timeout_s: float = 60) -> bool:
        """kill -9 worker `index` as soon as it holds a processing task (so the kill interrupts work); returns
        whether it held one (False: killed idle after `timeout_s`)."""
        proc = self.workers[index]
        assert proc is not None
        return kill_worker_when_busy(proc, self.database_url, f"w{index}", timeout_s)

    def wait_until_served(self, model: str, task_type: str, timeout_s: float = 120) -> None:
        """Creates for an entry are refused until a worker serving it has registered: wait for that."""
        client = self.client()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            listed = client.send("GET", "/api/v1/models").data() or {}
            if any(m["model"] == model and m["task_type"] == task_type and m["available"] for m in listed["models"]):
                return
            time.sleep(0.1)
        raise RuntimeError(f"{model}/{task_type} never became available: {self.server.log_text()[-2000:]}")

    @contextlib.contextmanager
    def store(self) -> Iterator[Store]:
        store = Store.from_url(self.database_url)
        try:
            yield store
        finally:
            store.close()

    def tasks_of(self, account_id: str) -> dict[str, TaskRow]:
        """The account's task rows as stored, read straight from the database (not through the API under test)."""
        engine = sa.create_engine(self.database_url)
        try:
            with engine.connect() as conn:
                rows = conn.execute(
                    sa.select(tasks.c.task_id, tasks.c.status, tasks.c.attempts, tasks.c.lease_id).where(
                        tasks.c.account_id == account_id
                    )
                ).all()
        finally:
            engine.dispose()
        return {r.task_id: TaskRow(r.task_id, r.status, r.attempts, r.lease_id) for r in rows}

    def new_account(self, name: str, credits: int, max_concurrency: int = 1_000_000) -> Key:
        with self.store() as store:
            account = store.accounts.create_account(name, credits=credits, max_concurrency=max_concurrency)
            key, _ = store.accounts.create_key(account.account_id, name)
        return Key(account.account_id, key)

    def settle_and_audit(
        self, acknowledged: list[str], *, accounts: list[str] | None = None, timeout_s: float = 120
    ) -> Audit:
        """Wait (at most `timeout_s`) for the acknowledged tasks to end, then audit `accounts` (None: all)."""
        wait_settled(self.database_url, acknowledged, timeout_s)
        return audit(self.database_url, acknowledged, accounts)

    def stop(self) -> None:
        """Kill everything: the audit has run, and a graceful stop would wait out the workers' claim long-polls
        (up to 20 s each, even for a worker that is gone)."""
        for proc in self.workers:
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait(30)
        if self.server.proc is not None and self.server.proc.poll() is None:
            self.server.kill()
        if self._worker_log is not None:
            self._worker_log.close()
            self._worker_log = None

    def __enter__(self) -> Deployment:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
