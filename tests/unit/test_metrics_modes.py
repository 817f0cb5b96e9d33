"""`/metrics`' two modes: one process answers from its own registry as before (database gauges and model cache
numbers collected there); under `--processes N` (prometheus-client's multiprocess values) a scrape sums every
process's files, adds the database gauges once, and the model cache's counts are copied by their growth only."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client import generate_latest, values
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from genmill.catalog import build_catalog
from genmill.domain.records import EventRef
from genmill.engine.metrics import SHARING, ServerMetrics, multiprocess_values
from genmill.store import Store
from genmill.worker.backendset import BackendSet


def server_metrics(store: Store) -> tuple[ServerMetrics, BackendSet]:
    backends = BackendSet([], build_catalog())
    return ServerMetrics(store, [backends], worker_seen_seconds=60, in_process_slots=2), backends


def parsed(text: bytes) -> list[Sample]:
    return [s for family in text_string_to_metric_families(text.decode()) for s in family.samples]


def test_one_process_answers_from_its_own_registry(sqlite_store: Store) -> None:
    assert not multiprocess_values()
    metrics, backends = server_metrics(sqlite_store)
    assert not metrics.shared and metrics.model_sync is None
    backends.cache.load_counts["tiny"] = 2
    metrics.transitions.labels("genmill/echo", "pending").inc()
    answer = metrics.exposition()
    assert answer == generate_latest(metrics.registry)
    found = parsed(answer)
    names = [s.name for s in found]
    assert names.count("genmill_database_up") == 1
    assert "genmill_task_transitions_created" in names  # the in-process registry's own series, as before
    loads = [s.value for s in found if s.name == "genmill_model_loads_total" and s.labels == {"backend": "tiny"}]
    assert loads == [2]


class FakePid:
    """The process identity prometheus-client's multiprocess values write their file under."""

    def __init__(self) -> None:
        self.pid = 101

    def __call__(self) -> int:
        return self.pid


@pytest.fixture
def shared_values(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakePid]:
    pid = FakePid()
    directory = tmp_path / "metrics"  # its own: every *.db file in it is read as a metrics file
    directory.mkdir()
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(directory))
    shared = values.MultiProcessValue(pid)  # type: ignore[no-untyped-call]  # untyped upstream
    monkeypatch.setattr(values, "ValueClass", shared)
    monkeypatch.setattr(SHARING, "across_processes", True)
    yield pid


def test_one_process_ignores_a_multiproc_dir_in_its_environment(
    sqlite_store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """PROMETHEUS_MULTIPROC_DIR set for a single process (prometheus-client then writes files): still its own
    registry, never stale files left in that directory."""
    directory = tmp_path / "metrics"
    directory.mkdir()
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(directory))
    monkeypatch.setattr(values, "ValueClass", values.MultiProcessValue())  # type: ignore[no-untyped-call]
    metrics, _ = server_metrics(sqlite_store)
    assert not metrics.shared
    assert metrics.exposition() == generate_latest(metrics.registry)


def test_shared_mode_sums_processes_and_reads_the_database_once(sqlite_store: Store, shared_values: FakePid) -> None:
    first, first_backends = server_metrics(sqlite_store)
    assert first.shared and first.model_sync is not None
    first.transitions.labels("genmill/echo", "pending").inc(3)
    first_backends.cache.load_counts["tiny"] = 1
    first.observe([EventRef(1, "missing", "account", "pending", "status", False)])  # syncs the model counts
    first.observe([EventRef(1, "missing", "account", "pending", "status", False)])  # adds nothing more
    shared_values.pid = 102  # another process: its own file, from zero
    second, _ = server_metrics(sqlite_store)
    second.transitions.labels("genmill/echo", "pending").inc(4)
    for answering in (first, second):
        found = parsed(answering.exposition())
        pending = [s.value for s in found if s.name == "genmill_task_transitions_total"]
        assert pending == [7]
        assert [s.name for s in found].count("genmill_database_up") == 1
        loads = [s.value for s in found if s.name == "genmill_model_loads_total"]
        assert loads == [1]
