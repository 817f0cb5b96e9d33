"""`genmill serve --processes 2` on PostgreSQL as a real process: creates land on both API processes, a stream held
by one sees the events the other commits, a revoked key is refused by both, and kill -9 of the process that runs
the workers loses no acknowledged task (the supervisor starts it again).
"""

from __future__ import annotations

import http.client
import json
import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from tests.e2e.harness import TERMINAL, Server

from genmill.store.tables import tasks
from genmill.testing.postgres import temporary_database

AUTH_CACHE_SECONDS = 1.0


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[Server, str]]:
    with temporary_database(prefix="genmill_procs_") as url:
        srv = Server(
            tmp_path,
            GENMILL_DATABASE_URL=url,
            GENMILL_AUTH_CACHE_SECONDS=str(AUTH_CACHE_SECONDS),
            GENMILL_LEASE_SECONDS="3",
            GENMILL_HEARTBEAT_SECONDS="0.5",
            GENMILL_REAPER_SECONDS="0.5",
            GENMILL_MAX_ATTEMPTS="6",
            GENMILL_WORKERS="2",
        )
        srv.cli("db", "upgrade")
        srv.start("--processes", "2")
        try:
            yield srv, url
        finally:
            if srv.proc is not None and srv.proc.poll() is None:
                assert srv.stop() == 0


class Connection:
    """One keep-alive connection, so that every request on it is answered by the same API process."""

    def __init__(self, srv: Server) -> None:
        self.http = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=60)
        self.process = int(self.request("GET", "/healthz")[1]["data"]["process"])

    def request(self, method: str, path: str, key: str | None = None, body: Any = None) -> tuple[int, Any]:
        headers = {"Content-Type": "application/json", **({"X-API-Key": key} if key else {})}
        self.http.request(method, path, json.dumps(body) if body is not None else None, headers)
        response = self.http.getresponse()
        return response.status, json.loads(response.read())

    def close(self) -> None:
        self.http.close()


def on_process(srv: Server, index: int) -> Connection:
    """A connection that API process `index` answers (the kernel picks by the client's port: try new ones)."""
    for _ in range(200):
        connection = Connection(srv)
        if connection.process == index:
            return connection
        connection.close()
    raise AssertionError(f"no connection reached API process {index}")


def echo(n: int, sleep_ms: int = 0) -> dict[str, Any]:
    return {"model": "genmill/echo", "task_type": "echo", "input": {"payload": {"n": n}, "sleep_ms": sleep_ms}}


def wait_ended(connection: Connection, key: str, task_id: str) -> dict[str, Any]:
    deadline = time.time() + 120
    while time.time() < deadline:
        code, answer = connection.request("GET", f"/api/v1/task/{task_id}", key)
        assert code == 200, answer
        if answer["data"]["status"] in TERMINAL:
            return dict(answer["data"])
        time.sleep(0.1)
    raise AssertionError(f"task {task_id} did not end")


def test_creates_on_both_processes_are_run_and_read_from_either(server: tuple[Server, str]) -> None:
    srv, _ = server
    key = srv.new_key("spread")
    connections = [on_process(srv, 0), on_process(srv, 1)]
    created: dict[int, list[str]] = {0: [], 1: []}
    for index, connection in enumerate(connections):
        for n in range(5):
            code, answer = connection.request("POST", "/api/v1/task", key, echo(index * 10 + n))
            assert code == 200, answer
            created[index].append(answer["data"]["task_id"])
    for index, task_ids in created.items():
        other = connections[1 - index]
        for task_id in task_ids:
            assert wait_ended(other, key, task_id)["status"] == "completed"
    for connection in connections:
        connection.close()


def test_a_stream_on_one_process_sees_what_the_other_commits(server: tuple[Server, str]) -> None:
    """Process 0 runs the workers; the stream is held by process 1. It ends only if the events committed by
    process 0 reach process 1 (LISTEN/NOTIFY): without them it would wait on keep-alives for ever."""
    srv, _ = server
    key = srv.new_key("stream")
    creator = on_process(srv, 0)
    code, answer = creator.request("POST", "/api/v1/task", key, echo(1, sleep_ms=1500))
    assert code == 200, answer
    task_id = answer["data"]["task_id"]
    watcher = on_process(srv, 1)
    watcher.http.request("GET", f"/api/v1/task/{task_id}/events", headers={"X-API-Key": key})
    response = watcher.http.getresponse()
    assert response.status == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    statuses = [
        json.loads(line[len("data: ") :])["status"]
        for line in response.read().decode().splitlines()
        if line.startswith("data: ")
    ]
    assert statuses[-1] == "completed", statuses
    assert "processing" in statuses, statuses
    creator.close()
    watcher.close()


def test_a_revoked_key_is_refused_by_every_process(server: tuple[Server, str]) -> None:
    srv, _ = server
    key = srv.new_key("revoked")
    key_id = srv.cli("keys", "list").split()[0]
    connections = [on_process(srv, 0), on_process(srv, 1)]
    for connection in connections:  # both processes now hold the key in their caches
        assert connection.request("GET", "/account/info", key)[0] == 200
    srv.cli("keys", "revoke", key_id)
    time.sleep(AUTH_CACHE_SECONDS + 0.5)  # the documented bound: GENMILL_AUTH_CACHE_SECONDS
    for connection in connections:
        code, answer = connection.request("GET", "/account/info", key)
        assert code == 401, (connection.process, answer)
        connection.close()


def supervised_pid(srv: Server, index: int) -> int:
    """The pid the supervisor last gave API process `index` (from its log)."""
    pids = re.findall(rf"API process {index} of \d+ started \(pid (\d+)\)", srv.log_text())
    assert pids, srv.log_text()
    return int(pids[-1])


def test_kill_9_of_the_process_running_the_workers_loses_nothing_acknowledged(server: tuple[Server, str]) -> None:
    import os
    import signal

    srv, url = server
    key = srv.new_key("kill")
    acknowledged: list[str] = []
    stop = threading.Event()

    def client() -> None:
        n = 0
        while not stop.is_set():
            n += 1
            try:
                connection = Connection(srv)  # a new connection each time: spread over both processes
                code, answer = connection.request("POST", "/api/v1/task", key, echo(n, sleep_ms=200))
                connection.close()
            except (OSError, http.client.HTTPException):  # the killed process cut this request: not acknowledged
                continue
            if code == 200:
                acknowledged.append(answer["data"]["task_id"])
            else:
                time.sleep(0.1)

    threads = [threading.Thread(target=client) for _ in range(3)]
    for thread in threads:
        thread.start()
    time.sleep(2)
    leader = supervised_pid(srv, 0)
    os.kill(leader, signal.SIGKILL)
    time.sleep(3)
    stop.set()
    for thread in threads:
        thread.join(60)
    assert supervised_pid(srv, 0) != leader  # the supervisor started process 0 again
    assert srv.proc is not None and srv.proc.poll() is None
    engine = sa.create_engine(url)
    try:
        deadline = time.time() + 120
        with engine.connect() as conn:
            while time.time() < deadline:
                rows = dict(conn.execute(sa.select(tasks.c.task_id, tasks.c.status)).all())
                conn.rollback()
                if all(rows.get(task_id) == "completed" for task_id in acknowledged):
                    break
                time.sleep(0.5)
    finally:
        engine.dispose()
    print(f"\nprocesses: {len(acknowledged)} tasks acknowledged around a kill -9 of API process 0")
    assert len(acknowledged) > 10
    assert [t for t in acknowledged if rows.get(t) != "completed"] == []
    on_process(srv, 0).close()  # the new process 0 answers too


def test_more_processes_than_the_database_has_connections_for_is_warned(caplog: pytest.LogCaptureFixture) -> None:
    from genmill.processes import check_connection_budget, connections_needed

    with temporary_database(prefix="genmill_procs_") as url:
        engine = sa.create_engine(url)
        with engine.connect() as conn:
            allowed = int(conn.exec_driver_sql("SHOW max_connections").scalar_one())
        engine.dispose()
        fits = max(1, allowed // connections_needed(1))
        with caplog.at_level("WARNING", logger="genmill.processes"):
            check_connection_budget(url, fits)
            assert caplog.records == []
            check_connection_budget(url, fits + 1)
    assert "more than its max_connections" in caplog.text
