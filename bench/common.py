"""Processes and plumbing the workloads share: servers on free ports, RSS sampling, databases, machine facts."""

from __future__ import annotations

import contextlib
import json
import os
import platform
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
GENMILL = [sys.executable, "-m", "genmill.cli"]
PG_ADMIN_URL = os.environ.get("GENMILL_BENCH_PG_ADMIN", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("GENMILL_BENCH_REDIS", "redis://127.0.0.1:6379/15")
NO_USE_LIMITS = {
    "GENMILL_RATE_LIMIT_CREATES_PER_SECOND": "0",
    "GENMILL_RATE_LIMIT_READS_PER_SECOND": "0",
    "GENMILL_FREE_TASKS_PER_SECOND": "0",
    "GENMILL_MAX_STREAMS_PER_ACCOUNT": "0",
}
"""The per-key and per-account limits off: the bench drives one key far past them to measure the task path."""
ECHO_BODY = b'{"model":"genmill/echo","task_type":"echo","input":{"payload":{"n":1}}}'
PACKAGES = (
    "genmill",
    "fastapi",
    "starlette",
    "uvicorn",
    "uvloop",
    "httptools",
    "pydantic",
    "sqlalchemy",
    "psycopg",
    "celery",
    "kombu",
    "redis",
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def http_get(url: str, headers: dict[str, str] | None = None, timeout: float = 10) -> tuple[int, bytes]:
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return int(r.status), bytes(r.read())
    except urllib.error.HTTPError as e:
        return int(e.code), bytes(e.read())


def rss_mb(pid: int) -> float:
    """Resident set size of a process in MB (0 once it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def process_tree(pid: int) -> list[int]:
    """`pid` and every process below it (a `genmill serve --processes N` supervisor and its API processes)."""
    found, index = [pid], 0
    while index < len(found):
        with contextlib.suppress(OSError):
            for task in Path(f"/proc/{found[index]}/task").iterdir():
                found += [int(child) for child in (task / "children").read_text().split()]
        index += 1
    return found


def largest_rss_mb(pid: int) -> float:
    """The RSS of the largest process in `pid`'s tree, MB: with several API processes, one process's footprint
    (the figure a per-process memory limit is about), not their sum."""
    return max(rss_mb(member) for member in process_tree(pid))


class RssSampler:
    """Samples a server's RSS (its largest process) every `interval` seconds in a thread while it is open; `peak`
    in MB.

    With `record`, the peak is also kept there under `label` (the larger of this and any earlier peak).
    """

    def __init__(
        self, pid: int, record: dict[str, float] | None = None, label: str = "", interval: float = 0.1
    ) -> None:
        self.pid = pid
        self.record = record
        self.label = label
        self.interval = interval
        self.samples: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.samples.append(largest_rss_mb(self.pid))
            self._stop.wait(self.interval)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.samples.append(largest_rss_mb(self.pid))
        if self.record is not None:
            self.record[self.label] = round(max(self.record.get(self.label, 0.0), self.peak), 1)

    @property
    def peak(self) -> float:
        return max(self.samples, default=0.0)


@dataclass
class Served:
    """One HTTP server process on 127.0.0.1 (genmill, or the bare app under the same uvicorn)."""

    name: str
    argv: list[str]
    env: dict[str, str]
    workdir: Path
    port: int = 0
    proc: subprocess.Popen[bytes] | None = None
    startup_s: float = 0.0
    peak_rss_mb: dict[str, float] = field(default_factory=dict)
    _launched: float = 0.0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def launch(self) -> None:
        """Start the process without waiting for it (see `wait_ready`), so several servers start at once."""
        self.port = free_port()
        log = open(self.workdir / f"{self.name}.log", "ab")  # noqa: SIM115 - the child owns it
        self._launched = time.perf_counter()
        self.proc = subprocess.Popen(
            [*self.argv, "--port", str(self.port)], env=self.env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT
        )
        log.close()

    def wait_ready(self) -> None:
        assert self.proc is not None
        deadline = time.time() + 120
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited during start-up: {self.log_tail()}")
            with contextlib.suppress(OSError):
                if http_get(self.url + "/healthz", timeout=2)[0] == 200:
                    self.startup_s = time.perf_counter() - self._launched
                    return
            time.sleep(0.05)
        raise RuntimeError(f"{self.name} did not answer /healthz: {self.log_tail()}")

    def start(self) -> None:
        self.launch()
        self.wait_ready()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)

    def log_tail(self, chars: int = 3000) -> str:
        path = self.workdir / f"{self.name}.log"
        return path.read_text(errors="replace")[-chars:] if path.exists() else ""

    def sample_rss(self, label: str) -> RssSampler:
        """`with server.sample_rss("create"):` records the peak RSS under that label."""
        return RssSampler(self.pid, self.peak_rss_mb, label)

    def __enter__(self) -> Served:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def genmill_env(data_dir: Path, database_url: str = "", backends: str = "") -> dict[str, str]:
    """Environment of a genmill server: its data folder, database and enabled backends (empty: all), nothing else
    inherited from GENMILL_* variables of the caller that would change what is measured."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GENMILL_")}
    env.update({"GENMILL_DATA_DIR": str(data_dir), "HF_HUB_OFFLINE": "1", **NO_USE_LIMITS})
    if database_url:
        env["GENMILL_DATABASE_URL"] = database_url
    if backends:
        env["GENMILL_BACKENDS"] = backends
    return env


def genmill_server(name: str, workdir: Path, env: dict[str, str], *flags: str) -> Served:
    return Served(name, [*GENMILL, "serve", "--log-level", "warning", *flags], env, workdir)


def bare_server(workdir: Path, processes: int = 1) -> Served:
    """The bare app with as many API processes as the genmill server it is the baseline of."""
    argv = [sys.executable, "-m", "bench.bare_app", "--log-level", "warning", "--processes", str(processes)]
    return Served("bare-fastapi" if processes == 1 else f"bare-fastapi-{processes}p", argv, {**os.environ}, workdir)


def database_url(env: dict[str, str]) -> str:
    """The database a server with this environment uses (its data folder's SQLite unless a URL is set)."""
    from genmill.settings import Settings

    return Settings(
        data_dir=Path(env["GENMILL_DATA_DIR"]), database_url=env.get("GENMILL_DATABASE_URL", "")
    ).resolved_database_url()


def create_key(env: dict[str, str]) -> str:
    """Migrate the database, then a key on a fresh account with ample credits and no practical concurrency
    limit (so tasks stay pending rather than staged). Done in-process: the same calls `genmill keys create` makes."""
    from genmill.store import Store
    from genmill.store.migrate import upgrade

    url = database_url(env)
    upgrade(url)
    store = Store.from_url(url)
    try:
        account = store.accounts.create_account("bench", credits=10**12, max_concurrency=10**8)
        plaintext, _ = store.accounts.create_key(account.account_id, "bench")
    finally:
        store.close()
    return plaintext


def announce_remote_worker(server: Served) -> None:
    """Register a remote worker that serves `genmill/echo` but never claims, so an API-only server
    (`--no-workers`) accepts echo tasks and leaves them pending: the create path alone, as on an API replica."""
    from genmill.store import Store

    store = Store.from_url(database_url(server.env))
    try:
        token, _ = store.workers.create_token("bench")
    finally:
        store.close()
    body = json.dumps({"name": "bench-idle", "capabilities": [{"model": "genmill/echo", "task_type": "echo"}]})
    req = urllib.request.Request(
        server.url + "/api/v1/workers/register",
        data=body.encode(),
        method="POST",
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=30) as r:
        if r.status != 200:
            raise RuntimeError(f"{server.name}: worker registration answered {r.status}")


def postgres_database() -> contextlib.AbstractContextManager[str]:
    """A fresh PostgreSQL database for one server; dropped afterwards."""
    from genmill.testing.postgres import temporary_database

    return temporary_database(PG_ADMIN_URL, prefix="genmill_bench_")


def postgres_available() -> str:
    """Empty when PostgreSQL answers, else why not."""
    from genmill.testing.postgres import unreachable_reason

    return unreachable_reason(PG_ADMIN_URL)


def scratch_dir(parent: Path | None = None, prefix: str = "genmill-bench-") -> Path:
    """A fresh folder (a server's data folder), inside `parent` when given so one removal cleans a run."""
    return Path(tempfile.mkdtemp(prefix=prefix, dir=parent))


def _package_versions() -> dict[str, str]:
    found = {}
    for name in PACKAGES:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = "not installed"
    return found


def _command_output(argv: Sequence[str]) -> str:
    try:
        out = subprocess.run(list(argv), capture_output=True, text=True, timeout=10)
        return (out.stdout or out.stderr).strip().splitlines()[0]
    except (OSError, subprocess.SubprocessError, IndexError):
        return "unavailable"


def _server_versions() -> dict[str, str]:
    wrk_version = _command_output(["wrk", "-v"]).split(" [")[0].removeprefix("wrk ")
    found: dict[str, str] = {"sqlite": sqlite3.sqlite_version, "wrk": wrk_version}
    try:
        import sqlalchemy as sa

        engine = sa.create_engine(PG_ADMIN_URL)
        with engine.connect() as conn:
            found["postgresql"] = str(conn.exec_driver_sql("SHOW server_version").scalar_one())
        engine.dispose()
    except Exception:
        found["postgresql"] = "unavailable"
    try:
        import redis

        found["redis-server"] = str(redis.Redis.from_url(REDIS_URL).info("server")["redis_version"])
    except Exception:
        found["redis-server"] = "unavailable"
    return found


def load_average() -> list[float]:
    """1, 5 and 15 minute load averages: other work on the machine shows up here and in the figures."""
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return []


def machine_facts() -> dict[str, Any]:
    meminfo = Path("/proc/meminfo").read_text() if Path("/proc/meminfo").exists() else ""
    mem_kb = next((int(line.split()[1]) for line in meminfo.splitlines() if line.startswith("MemTotal:")), 0)
    cpuinfo = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    cpu = next((line.split(":", 1)[1].strip() for line in cpuinfo.splitlines() if line.startswith("model name")), "")
    return {
        "load_average": load_average(),
        "nproc": os.cpu_count() or 0,
        "cpu": cpu or platform.processor(),
        "ram_gb": round(mem_kb / 1024 / 1024, 1),
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "packages": _package_versions(),
        "servers": _server_versions(),
    }


def save_results(
    results: dict[str, Any], out: Path, doc: Path | None, write_doc: Callable[[Path, dict[str, Any]], None], label: str
) -> None:
    """Write a run's results file and, when `doc` is given, the generated block of its page."""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"[{label}] results written to {out}")
    if doc is not None:
        write_doc(doc, results)
        print(f"[{label}] {doc} updated")
