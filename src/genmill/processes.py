"""`genmill serve --processes N`: several API processes on one port, under a small supervisor.

One Python process serves requests on one core: the interpreter lock keeps its JSON, validation and routing on a
single CPU however many threads wait on the database. So the server forks N copies of itself, each a complete
`create_app` with its own uvicorn, its own database pool and its own LISTEN connection.

- **One port, balanced by the kernel.** The supervisor binds N listening sockets to the same address with
  `SO_REUSEPORT` before it forks, one per process. The kernel spreads new connections over them by a hash of
  the client's address and port, so 64 benchmark connections land about evenly, where one shared socket lets
  whichever process wakes first take them all. The supervisor keeps its copy of every socket open, so when a
  process dies its queue of waiting connections survives until the replacement takes it over.
- **The singletons run once.** Process 0 alone runs the in-process workers (GENMILL_WORKERS), the reaper and
  the webhook dispatcher. The others are API only; they build the same backends (without loading weights) so
  that every process accepts and refuses the same creates. On PostgreSQL these parts are safe to run twice
  anyway (leases, `SKIP LOCKED`, the sweeps' advisory locks), so a fleet of hosts each with its own process 0
  stays correct; the rule here keeps one host from paying for N reapers and loading its models N times.
- **Correct across processes.** Task events travel by PostgreSQL LISTEN/NOTIFY (`genmill.store.notify`): a
  create on process 1 wakes process 0's workers and remote workers long-polling on any process; an event
  committed anywhere reaches a stream held by any process. The API-key cache is per process and bounded by
  GENMILL_AUTH_CACHE_SECONDS: a revoked key is refused by every process at most that long after the revoke.
  Rate limits (GENMILL_RATE_LIMIT_*) are token buckets per process: an account may reach N times the rate.
- **SQLite is one process.** Its event bus has no channel between processes (no NOTIFY), so a stream or a
  `Prefer: wait` on one process would not see a task another completed; `--processes` above 1 is refused there.
- **One set of metrics.** A scrape of `/metrics` reaches one process at random, so the processes keep their
  counters and histograms in prometheus-client's multiprocess files (PROMETHEUS_MULTIPROC_DIR: the operator's,
  or a fresh temporary directory; wiped at start) and any of them answers with the sum (`genmill.engine.metrics`).
  The supervisor marks a dead process dead there, so its live gauges stop counting while its counts stay.
- **Failures and shutdown.** A process that dies (kill -9, out of memory) is started again at once with the
  same index, so process 0's singletons come back; what it had acknowledged is committed, and the tasks its
  workers held are re-run when their leases lapse. SIGTERM or SIGINT to the supervisor is passed to every
  process, each finishes its requests in flight and its workers their tasks (uvicorn's graceful shutdown), and
  the supervisor waits for them. A process whose supervisor dies dies with it.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import shutil
import signal
import socket
import tempfile
import threading
import time
import traceback
from collections.abc import Callable
from types import FrameType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from genmill.httpserver import ServerLimits
    from genmill.settings import Settings

log = logging.getLogger("genmill.processes")

BACKLOG = 2048
STOP_SECONDS = 60.0
"""How long the supervisor waits for its processes after a stop before it kills what is left."""

QUICK_DEATH_SECONDS = 5.0
"""A process that dies sooner than this after its start is restarted after a pause that grows with each such
death (up to `MAX_RESTART_PAUSE`), so a process that cannot start does not spin a core."""

MAX_RESTART_PAUSE = 5.0

PORT_PATIENCE = 3.0
"""How long `genmill serve` waits for its port to be free before it gives up (see `_free`)."""


def cores() -> int:
    """The cores this process may run on (its CPU affinity where the platform knows it)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def default_processes(dialect: str) -> int:
    """`--processes` when it is not given: one per core on PostgreSQL, 1 on SQLite (see the module docstring)."""
    return cores() if dialect == "postgresql" else 1


def processes_problem(count: int, dialect: str) -> str | None:
    """Why `--processes count` cannot serve this database, or None."""
    if count < 1:
        return "--processes must be at least 1"
    if count > 1 and dialect != "postgresql":
        return (
            f"--processes {count} needs PostgreSQL: on {dialect} a task's events reach only the process that "
            "committed them, so streams and waits on the other processes would not see them"
        )
    return None


def _free(family: socket.AddressFamily, host: str, port: int, *, patience: float = PORT_PATIENCE) -> int:
    """The port, once nothing listens on it (port 0: a free one). A server killed a moment ago may still have
    processes closing their sockets (the kernel kills them with their supervisor), so this waits up to
    `patience` seconds before it lets "Address already in use" through."""
    deadline = time.monotonic() + patience
    while True:
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((host, port))
                return int(probe.getsockname()[1])
            except OSError as exc:
                if exc.errno != errno.EADDRINUSE or time.monotonic() > deadline:
                    raise
        time.sleep(0.1)


def listening_sockets(host: str, port: int, count: int) -> list[socket.socket]:
    """`count` listening sockets on the same address with SO_REUSEPORT (port 0: a free port).

    SO_REUSEPORT would also let this server share a port with another server of the same user that set it,
    silently splitting its traffic; so the address is first bound once without it, which fails as a plain
    `bind` does ("Address already in use") when anything listens there (see `_free`)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    port = _free(family, host, port)
    sockets: list[socket.socket] = []
    try:
        for _ in range(count):
            sock = socket.socket(family, socket.SOCK_STREAM)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            sock.bind((host, port))
            port = sock.getsockname()[1]
            sock.listen(BACKLOG)
            sock.set_inheritable(True)
    except OSError:
        for sock in sockets:
            sock.close()
        raise
    return sockets


def _die_with_supervisor(parent: int) -> None:
    """In a served process: die with the supervisor. On Linux the kernel kills this process the moment its
    supervisor dies (PR_SET_PDEATHSIG), so a kill -9 of `genmill serve` ends the whole server as it did with one
    process; elsewhere a watcher asks it to stop (SIGTERM, uvicorn's graceful path) within a second."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, signal.SIGKILL)
    except (OSError, AttributeError):  # pragma: no cover - not Linux
        pass
    if os.getppid() != parent:  # the supervisor died before the line above took effect
        os._exit(1)

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="genmill-supervisor-watch", daemon=True).start()


class Supervisor:
    """Forks one process per socket, runs `serve(index, sock)` in each, restarts those that die, stops them all
    on SIGTERM or SIGINT. Fork happens before anything in the supervisor starts a thread or opens a database."""

    def __init__(
        self,
        sockets: list[socket.socket],
        serve: Callable[[int, socket.socket], None],
        *,
        ended: Callable[[int], None] = lambda pid: None,
    ) -> None:
        self.sockets = sockets
        self.serve = serve
        self.ended = ended
        """Called with the pid of each process that ended, before any replacement starts."""
        self.children: dict[int, int] = {}
        """pid -> index of each running process."""
        self.started: dict[int, float] = {}
        self.quick_deaths: dict[int, int] = {}
        self.restarts = 0
        self.stopping = False

    def run(self) -> int:
        """Serve until told to stop; 0 once every process has stopped."""
        previous = {sig: signal.signal(sig, self._on_stop) for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            for first in range(len(self.sockets)):
                self._spawn(first)
            while self.children:
                try:
                    pid, status = os.wait()
                except ChildProcessError:
                    break
                ended = self.children.pop(pid, None)
                if ended is not None:
                    self.ended(pid)
                if ended is not None and not self.stopping:
                    self._restart(ended, pid, status)
            return 0
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            for sock in self.sockets:
                sock.close()

    def _restart(self, index: int, pid: int, status: int) -> None:
        lived = time.monotonic() - self.started.pop(index, time.monotonic())
        how = f"signal {os.WTERMSIG(status)}" if os.WIFSIGNALED(status) else f"exit status {os.WEXITSTATUS(status)}"
        self.quick_deaths[index] = self.quick_deaths.get(index, 0) + 1 if lived < QUICK_DEATH_SECONDS else 0
        pause = min(MAX_RESTART_PAUSE, 0.5 * self.quick_deaths[index])
        log.warning("API process %d (pid %d) ended (%s) after %.1fs; starting it again", index, pid, how, lived)
        if pause:
            time.sleep(pause)
        if not self.stopping:
            self.restarts += 1
            self._spawn(index)

    def _spawn(self, index: int) -> None:
        parent = os.getpid()
        pid = os.fork()
        if pid == 0:  # the served process: never returns into the supervisor's loop
            code = 0
            try:
                for sig in (signal.SIGTERM, signal.SIGINT):
                    signal.signal(sig, signal.SIG_DFL)
                for other, sock in enumerate(self.sockets):
                    if other != index:
                        sock.close()
                _die_with_supervisor(parent)
                self.serve(index, self.sockets[index])
            except BaseException:
                traceback.print_exc()
                code = 1
            finally:
                logging.shutdown()
                os._exit(code)
        self.children[pid] = index
        self.started[index] = time.monotonic()
        log.info("API process %d of %d started (pid %d)", index, len(self.sockets), pid)

    def _on_stop(self, signum: int, _frame: FrameType | None) -> None:
        if self.stopping:
            return
        self.stopping = True
        log.info("stopping %d API processes", len(self.children))
        for pid in list(self.children):
            self._signal(pid, signal.SIGTERM)
        threading.Thread(target=self._kill_after_grace, name="genmill-stop-grace", daemon=True).start()

    def _kill_after_grace(self) -> None:
        deadline = time.monotonic() + STOP_SECONDS
        while self.children and time.monotonic() < deadline:
            time.sleep(0.2)
        for pid in list(self.children):
            log.warning("API process pid %d did not stop within %.0fs; killing it", pid, STOP_SECONDS)
            self._signal(pid, signal.SIGKILL)

    @staticmethod
    def _signal(pid: int, signum: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signum)


def connections_needed(count: int) -> int:
    """PostgreSQL connections `count` API processes may open at most: each one's pool and its LISTEN connection."""
    from genmill.store.engine import POOL_OVERFLOW, POOL_SIZE

    return count * (POOL_SIZE + POOL_OVERFLOW + 1)


def check_connection_budget(url: str, count: int) -> None:
    """Warn when `count` processes could open more connections than the server's `max_connections` allows (the
    pools open connections only as load needs them, so this is a warning: under a heavy load some requests would
    answer 503 with "too many clients")."""
    import sqlalchemy as sa

    engine = sa.create_engine(url, poolclass=sa.NullPool)
    try:
        with engine.connect() as conn:
            allowed = int(conn.exec_driver_sql("SHOW max_connections").scalar_one())
    finally:
        engine.dispose()
    needed = connections_needed(count)
    if needed > allowed:
        log.warning(
            "%d API processes may open up to %d PostgreSQL connections, more than its max_connections (%d), shared "
            "with every other replica and worker host: lower --processes, raise max_connections or put PgBouncer in "
            "front (docs/deploy.md)",
            count,
            needed,
            allowed,
        )


METRICS_DIR_ENV = "PROMETHEUS_MULTIPROC_DIR"


def shared_metrics_directory() -> tuple[str, bool]:
    """The directory the processes keep their metrics in, emptied, and whether this server made it (and removes
    it at the end). It is set in the environment before any fork, and prometheus-client is not imported by the
    supervisor, so every process's metrics are multiprocess ones (`share_across_processes` makes sure)."""
    given = os.environ.get(METRICS_DIR_ENV)
    if given:
        os.makedirs(given, exist_ok=True)
        for name in os.listdir(given):
            if name.endswith(".db"):
                os.remove(os.path.join(given, name))
        return given, False
    made = tempfile.mkdtemp(prefix="genmill-metrics-")
    os.environ[METRICS_DIR_ENV] = made
    return made, True


def serve_processes(
    settings: Settings,
    count: int,
    limits: ServerLimits,
    log_level: str,
    *,
    before_serving: Callable[[], None] = lambda: None,
) -> int:
    """`genmill serve --processes count` (count > 1, PostgreSQL): migrate once, check the connection budget,
    bind, fork; process 0 runs the in-process workers, the reaper and the webhook dispatcher. `before_serving`
    runs first thing in each API process (set-up that starts threads, which must not exist at a fork)."""
    from genmill.store.migrate import upgrade

    url = settings.resolved_database_url()
    upgrade(url)
    check_connection_budget(url, count)
    sockets = listening_sockets(settings.host, settings.port, count)

    def serve_one(index: int, sock: socket.socket) -> None:
        from genmill.app import create_app
        from genmill.engine.metrics import share_across_processes
        from genmill.httpserver import serve

        share_across_processes()
        before_serving()
        app = create_app(settings, run_workers=index == 0, process_index=index)
        serve(app, host=settings.host, port=settings.port, log_level=log_level, limits=limits, sockets=[sock])

    directory, made = shared_metrics_directory()

    def mark_dead(pid: int) -> None:
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid, directory)  # type: ignore[no-untyped-call]  # untyped upstream

    try:
        return Supervisor(sockets, serve_one, ended=mark_dead).run()
    finally:
        if made:
            shutil.rmtree(directory, ignore_errors=True)
