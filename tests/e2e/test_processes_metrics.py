"""`/metrics` under `genmill serve --processes 2` on PostgreSQL: whichever process a scrape reaches, the transition
counters are the sum of what both processes committed (creates on process 1, runs on process 0's workers), the
database gauges appear once, and a restarted process neither loses nor doubles what was counted before."""

from __future__ import annotations

import http.client
import os
import signal
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample
from tests.e2e.harness import Server
from tests.e2e.test_processes import Connection, echo, on_process, supervised_pid, wait_ended

from genmill.testing.postgres import temporary_database

MODEL = "genmill/echo"
DATABASE_GAUGES = ("genmill_database_up", "genmill_tasks", "genmill_workers", "genmill_ledger_credits_consumed_total")


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    with temporary_database(prefix="genmill_metrics_") as url:
        srv = Server(tmp_path, GENMILL_DATABASE_URL=url, GENMILL_WORKERS="2")
        srv.cli("db", "upgrade")
        srv.start("--processes", "2")
        try:
            yield srv
        finally:
            if srv.proc is not None and srv.proc.poll() is None:
                assert srv.stop() == 0


def scrape(connection: Connection) -> list[Sample]:
    connection.http.request("GET", "/metrics")
    response = connection.http.getresponse()
    text = response.read().decode()
    assert response.status == 200, text
    return [s for family in text_string_to_metric_families(text) for s in family.samples]


def transitions(found: list[Sample]) -> dict[str, float]:
    return {
        s.labels["status"]: s.value
        for s in found
        if s.name == "genmill_task_transitions_total" and s.labels["model"] == MODEL
    }


def check_scrape(found: list[Sample], tasks: int) -> None:
    """Every task went pending → processing → completed once; each database series is there exactly once."""
    assert transitions(found) == {"pending": tasks, "processing": tasks, "completed": tasks}
    run_count = [s.value for s in found if s.name == "genmill_task_run_seconds_count" and s.labels["model"] == MODEL]
    assert run_count == [tasks]
    series = Counter((s.name, tuple(sorted(s.labels.items()))) for s in found)
    assert [key for key, times in series.items() if times > 1] == []
    names = Counter(s.name for s in found)
    for gauge in DATABASE_GAUGES:
        assert names[gauge] >= 1, gauge
    assert names["genmill_database_up"] == 1
    up = [s.value for s in found if s.name == "genmill_database_up"]
    assert up == [1]
    completed = [
        s.value for s in found if s.name == "genmill_tasks" and s.labels == {"model": MODEL, "status": "completed"}
    ]
    assert completed == [tasks]


def run_on(connection: Connection, key: str, count: int, start: int) -> None:
    task_ids = []
    for n in range(count):
        code, answer = connection.request("POST", "/api/v1/task", key, echo(start + n))
        assert code == 200, answer
        task_ids.append(answer["data"]["task_id"])
    for task_id in task_ids:
        assert wait_ended(connection, key, task_id)["status"] == "completed"


def scrape_both(srv: Server, tasks: int) -> None:
    """Several scrapes on each process, each on a connection the kernel gave that process."""
    for index in (0, 1, 0, 1):
        connection = on_process(srv, index)
        check_scrape(scrape(connection), tasks)
        connection.close()


def test_counters_sum_both_processes_and_survive_a_restart(server: Server) -> None:
    srv = server
    key = srv.new_key("metrics")
    first, second = on_process(srv, 0), on_process(srv, 1)
    run_on(first, key, 3, 0)
    run_on(second, key, 4, 10)
    first.close()
    second.close()
    scrape_both(srv, 7)

    before = supervised_pid(srv, 1)
    os.kill(before, signal.SIGKILL)
    deadline = time.time() + 60
    while supervised_pid(srv, 1) == before and time.time() < deadline:
        time.sleep(0.1)
    assert supervised_pid(srv, 1) != before
    restarted = wait_for_process(srv, 1)
    run_on(restarted, key, 2, 100)
    restarted.close()
    scrape_both(srv, 9)


def wait_for_process(srv: Server, index: int) -> Connection:
    deadline = time.time() + 60
    while True:
        try:
            return on_process(srv, index)
        except (OSError, http.client.HTTPException, AssertionError):
            if time.time() > deadline:
                raise
            time.sleep(0.2)
