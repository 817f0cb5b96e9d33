"""The sizes of one bench run (full or `--quick`) and the context every workload receives."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.common import ECHO_BODY


@dataclass(frozen=True)
class Sizes:
    http_seconds: float
    """How long each closed-loop wrk run lasts."""
    connections: int
    """Concurrent clients of the throughput runs."""
    load_seconds: float
    """How long each fixed-rate run (get under load, dispatch under load) lasts."""
    create_rate_goal: float
    """Creates per second offered while get latency is measured (the goal's 1k/s, capped by what the server does)."""
    get_rate: float
    """Gets per second sent while creates run (few, so that the gets measure the load rather than make it)."""
    growth_rate: float
    """Gets per second of the open-loop latency measure at each table size."""
    e2e_tasks: int
    dispatch_idle: int
    seed_small: int
    seed_large: int
    workers: int
    prepared_ids: int
    """Tasks created up front on each server, the ones gets are measured on."""
    backends: str
    """GENMILL_BACKENDS of the servers: empty (every built-in backend, as deployed) or "echo" (fast start-up)."""
    processes: int = 1
    """API processes of genmill on PostgreSQL (`genmill serve --processes`) and of its bare baseline; genmill on
    SQLite runs one process (genmill.processes: its events do not cross processes), next to a one-process bare."""

    @staticmethod
    def full(seed_large: int = 1_000_000, workers: int = 2, processes: int = 1) -> Sizes:
        return Sizes(
            http_seconds=10,
            connections=64,
            load_seconds=10,
            create_rate_goal=1000,
            get_rate=50,
            growth_rate=100,
            e2e_tasks=1000,
            dispatch_idle=200,
            seed_small=10_000,
            seed_large=seed_large,
            workers=workers,
            prepared_ids=200,
            backends="",
            processes=processes,
        )

    @staticmethod
    def quick(workers: int = 2, processes: int = 1) -> Sizes:
        return Sizes(
            http_seconds=1,
            connections=8,
            load_seconds=1,
            create_rate_goal=50,
            get_rate=20,
            growth_rate=20,
            e2e_tasks=40,
            dispatch_idle=5,
            seed_small=300,
            seed_large=1500,
            workers=workers,
            prepared_ids=20,
            backends="echo",
            processes=processes,
        )


@dataclass
class Context:
    sizes: Sizes
    workdir: Path
    postgres: bool
    celery: bool
    skipped: dict[str, str] = field(default_factory=dict)
    log_lines: list[str] = field(default_factory=list)

    began: float = field(default_factory=time.perf_counter)

    def say(self, text: str) -> None:
        print(f"[bench {time.perf_counter() - self.began:6.1f}s] {text}", flush=True)
        self.log_lines.append(text)


def processes_of(sizes: Sizes, engine: str) -> int:
    """API processes of a genmill server on `engine` in this run (SQLite: always 1)."""
    return sizes.processes if engine == "postgres" else 1


def key_headers(key: str) -> dict[str, str]:
    return {"X-API-Key": key, "Content-Type": "application/json"}


def ratio(value: float, base: float) -> float | None:
    return round(value / base, 3) if base else None


def create_request(key: str, body: bytes = ECHO_BODY, extra: dict[str, str] | None = None) -> bytes:
    from bench.loadgen import build_request

    return build_request("POST", "/api/v1/task", {**key_headers(key), **(extra or {})}, body)


def get_request(key: str, task_id: str, extra: dict[str, str] | None = None) -> bytes:
    from bench.loadgen import build_request

    return build_request("GET", f"/api/v1/task/{task_id}", {"X-API-Key": key, **(extra or {})})


def pick(summary: dict[str, Any], *names: str) -> dict[str, Any]:
    return {name: summary[name] for name in names if name in summary}
