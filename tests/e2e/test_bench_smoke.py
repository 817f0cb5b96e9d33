"""The benchmark command runs: `python -m bench --quick` at tiny sizes writes a results file with every workload.

Only that it runs and what it writes are checked; no figure is asserted (timings depend on the machine). Parts
whose service is missing here (PostgreSQL, Redis/Celery, wrk) are skipped by the bench itself, which says why.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
WORKLOADS = ("create", "end_to_end", "dispatch", "get", "memory")


def test_the_bench_command_runs_every_workload_on_a_tiny_size(tmp_path: Path) -> None:
    out, doc = tmp_path / "results.json", tmp_path / "benchmarks.md"
    run = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--out", str(out), "--doc", str(doc)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    results = json.loads(out.read_text())
    for workload in WORKLOADS:
        assert results.get(workload), f"{workload} missing from the results"
    assert results["quick"] is True
    assert {"bare", "sqlite"} <= set(results["create"])
    assert "sqlite" in results["end_to_end"] and "sqlite" in results["dispatch"]
    assert {"under_load", "growth"} <= set(results["get"])
    assert "baseline" in results["get"]["under_load"]["sqlite"]
    assert results["machine"]["nproc"] >= 1 and results["machine"]["packages"]["genmill"]
    assert all({"goal", "target", "measured", "met"} <= set(goal) for goal in results["goals"])
    text = doc.read_text()
    assert "<!-- bench:results:begin" in text and "### Goals" in text


def test_the_store_calls_bench_runs_on_a_tiny_size() -> None:
    run = subprocess.run(
        [sys.executable, "-m", "bench.store_calls", "--tasks", "20"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "claim_next_task + complete (70 tasks)" in run.stdout  # every queued task was claimed and completed
    for call in ("empty write transaction (baseline)", "authenticate", "tasks.create", "tasks.get"):
        assert call in run.stdout


def test_the_scale_out_bench_runs_on_a_tiny_size(tmp_path: Path) -> None:
    """`python -m bench.scale --quick`: two API processes and one remote worker on PostgreSQL (skipped by the bench
    itself, which says so, where PostgreSQL does not answer)."""
    out, doc = tmp_path / "scale.json", tmp_path / "deploy.md"
    run = subprocess.run(
        [sys.executable, "-m", "bench.scale", "--quick", "--out", str(out), "--doc", str(doc)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    if "[scale] skipped" in run.stdout:
        pytest.skip(run.stdout.strip())
    cells = json.loads(out.read_text())["cells"]
    assert [(c["api_processes"], c["workers"]) for c in cells] == [(2, 1)]
    assert cells[0]["completed"] == cells[0]["tasks"]  # every task ran through the remote worker
    assert set(cells[0]["cpu_ms_per_task"]) == {"api", "workers", "postgres"}
    assert "<!-- bench:scale:begin" in doc.read_text()
