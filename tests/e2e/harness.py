"""Helpers to run `genmill` as real processes and talk to them over real HTTP (the standard library; SQLAlchemy
only to watch a worker's tasks in the database)."""

from __future__ import annotations

import io
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

GENMILL = [sys.executable, "-m", "genmill.cli"]
TERMINAL = ("completed", "failed", "cancelled")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def call(
    method: str, url: str, key: str | None = None, body: Any = None, headers: dict[str, str] | None = None
) -> tuple[int, Any]:
    return call_full(method, url, key, body, headers)[:2]


def call_full(
    method: str, url: str, key: str | None = None, body: Any = None, extra: dict[str, str] | None = None
) -> tuple[int, Any, dict[str, str]]:
    """(status, parsed JSON or raw bytes, response headers)."""
    headers = {"Content-Type": "application/json", **(extra or {})}
    if key:
        headers["X-API-Key"] = key
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=90) as r:
            raw, code, got = r.read(), r.status, dict(r.headers)
    except urllib.error.HTTPError as e:
        raw, code, got = e.read(), e.code, dict(e.headers)
    lowered = {k.lower(): v for k, v in got.items()}
    return code, json.loads(raw) if "json" in lowered.get("content-type", "") else raw, lowered


def kill_worker_when_busy(proc: subprocess.Popen[bytes], database_url: str, name: str, timeout: float = 60) -> bool:
    """kill -9 the `genmill worker --name NAME` process as soon as the database shows it processing a task, so that
    the kill really interrupts work; returns whether it was busy (False: killed idle after `timeout` seconds)."""
    import sqlalchemy as sa

    from genmill.store.tables import tasks, workers

    busy_query = (
        sa.select(sa.func.count())
        .select_from(tasks.join(workers, workers.c.worker_id == tasks.c.worker_id))
        .where(tasks.c.status == "processing", workers.c.name == name)
    )
    busy = False
    engine = sa.create_engine(database_url)
    try:
        deadline = time.time() + timeout
        with engine.connect() as conn:
            while not busy and time.time() < deadline:
                busy = bool(conn.execute(busy_query).scalar_one())
                conn.rollback()
                if not busy:
                    time.sleep(0.01)
    finally:
        engine.dispose()
    proc.kill()
    proc.wait(30)
    return busy


class Server:
    """`genmill serve` on a free port over one data folder; can be killed and started again on the same data."""

    def __init__(self, data_dir: Path, **env: str) -> None:
        self.data_dir = data_dir
        self.env = {
            **os.environ,
            "GENMILL_ALLOW_PRIVATE_URLS": "1",
            "HF_HUB_OFFLINE": "1",
            "GENMILL_DATA_DIR": str(data_dir),
            **env,
        }
        self.proc: subprocess.Popen[bytes] | None = None
        self.log: io.BufferedWriter | None = None
        self.port = 0
        self.url = ""
        self.startup_seconds = 0.0

    def cli(self, *args: str) -> str:
        out = subprocess.run([*GENMILL, *args], env=self.env, capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr
        return out.stdout

    def new_key(self, name: str, credits: int = 100_000_000) -> str:
        return self.cli("keys", "create", "--name", name, "--credits", str(credits)).strip().splitlines()[-1]

    def start(self, *args: str, port: int = 0) -> None:
        """Start `genmill serve` on `port` (0: a free one) and wait for /healthz; a restart after `kill()` passes the
        old port, so that remote workers and clients find the server again where it was."""
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = open(self.data_dir / "server.log", "ab")  # noqa: SIM115 - closed in stop()/kill()
        started = time.perf_counter()
        self.proc = subprocess.Popen(
            [*GENMILL, "serve", "--port", str(self.port), *args],
            env=self.env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.time() + 120
        while time.time() < deadline:
            assert self.proc.poll() is None, self.log_text()
            try:
                if call("GET", self.url + "/healthz")[0] == 200:
                    self.startup_seconds = time.perf_counter() - started
                    return
            except OSError:
                pass
            time.sleep(0.1)
        raise AssertionError("server did not start: " + self.log_text())

    def stop(self) -> int:
        """Graceful stop (SIGTERM); returns the exit status."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(30)
        self._close_log()
        return int(self.proc.returncode)

    def kill(self) -> None:
        """SIGKILL: the process gets no chance to clean up."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(30)
        self._close_log()

    def _close_log(self) -> None:
        if self.log is not None:
            self.log.close()
            self.log = None

    def log_text(self) -> str:
        return (self.data_dir / "server.log").read_text(errors="replace")

    def task(self, key: str, task_id: str) -> dict[str, Any]:
        code, body = call("GET", f"{self.url}/api/v1/task/{task_id}", key)
        assert code == 200, body
        task: dict[str, Any] = body["data"]
        return task

    def wait_for(
        self, key: str, task_id: str, statuses: tuple[str, ...] = TERMINAL, timeout: float = 240
    ) -> dict[str, Any]:
        deadline = time.time() + timeout
        while time.time() < deadline:
            task = self.task(key, task_id)
            if task["status"] in statuses:
                return task
            time.sleep(0.1)
        raise AssertionError(f"task {task_id} never reached {statuses}: {self.log_text()[-3000:]}")

    def run_task(self, key: str, body: dict[str, Any], timeout: float = 240) -> dict[str, Any]:
        code, created = call("POST", self.url + "/api/v1/task", key, body)
        assert code == 200, created
        task = self.wait_for(key, created["data"]["task_id"], timeout=timeout)
        assert task["status"] == "completed", (task, self.log_text()[-3000:])
        return task
