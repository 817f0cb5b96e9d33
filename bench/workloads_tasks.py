"""Workloads through the workers: end-to-end no-op throughput (2) and dispatch latency (3), genmill vs Celery.

genmill runs `genmill/echo` tasks on `genmill serve --workers N`; Celery runs a no-op task on a worker with the
same concurrency, Redis as broker and result backend. Dispatch latency is the time from the create to the moment
the task's code starts: `output.started_at - meta.created_at` for genmill (both taken by the server),
`started_at - the client's clock just before apply_async` for Celery (one machine, one clock).
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from datetime import datetime
from typing import Any

from bench import loadgen
from bench.common import REDIS_URL, ROOT, create_key, genmill_env, genmill_server, postgres_database, scratch_dir
from bench.loadgen import percentile
from bench.plan import Context, create_request, get_request, processes_of, ratio

WAIT = {"Prefer": "wait=60"}


def latency_summary(seconds: list[float]) -> dict[str, Any]:
    return {
        "samples": len(seconds),
        "p50_ms": round(percentile(seconds, 50) * 1000, 3),
        "p99_ms": round(percentile(seconds, 99) * 1000, 3),
        "max_ms": round(percentile(seconds, 100) * 1000, 3),
    }


def _dispatch_of(body: bytes) -> float | None:
    task = json.loads(body)["data"]
    if task["status"] != "completed":
        return None
    created = datetime.fromisoformat(task["meta"]["created_at"]).timestamp()
    return float(task["output"]["started_at"]) - created


async def _wait_all(port: int, key: str, ids: list[str], connections: int) -> list[bytes]:
    """GET every task with `Prefer: wait=60`: each answer comes when the task is terminal (no polling)."""
    done = await loadgen.closed_loop(port, lambda i: get_request(key, ids[i], WAIT), len(ids), connections, keep=True)
    return [done.bodies[i] for i in sorted(done.bodies)]


async def _genmill_idle(port: int, key: str, count: int) -> list[float]:
    conn = loadgen.Connection(port)
    samples = []
    for _ in range(count):
        _, body = await conn.request(create_request(key, extra=WAIT))
        value = _dispatch_of(body)
        if value is not None:
            samples.append(value)
        await asyncio.sleep(0.01)  # let the worker go back to waiting
    conn.close()
    return samples


async def _genmill_throughput(port: int, key: str, tasks: int, connections: int) -> dict[str, Any]:
    begun = time.perf_counter()
    created = await loadgen.closed_loop(port, lambda _: create_request(key), tasks, connections, keep=True)
    create_seconds = time.perf_counter() - begun
    ids = [json.loads(b)["data"]["task_id"] for b in created.bodies.values() if b.startswith(b'{"code":200')]
    bodies = await _wait_all(port, key, ids, connections)
    seconds = time.perf_counter() - begun
    completed = sum(1 for b in bodies if json.loads(b)["data"]["status"] == "completed")
    return {
        "tasks": tasks,
        "completed": completed,
        "seconds": round(seconds, 3),
        "tasks_per_s": round(completed / seconds, 1),
        "create_phase_s": round(create_seconds, 3),
    }


async def _genmill_under_load(port: int, key: str, rate: float, seconds: float) -> list[float]:
    created = await loadgen.open_loop(port, lambda _: create_request(key), rate, seconds, 64, keep=True)
    ids = [json.loads(b)["data"]["task_id"] for b in created.bodies.values() if b.startswith(b'{"code":200')]
    samples = [_dispatch_of(b) for b in await _wait_all(port, key, ids, 32)]
    return [s for s in samples if s is not None]


def genmill_tasks(ctx: Context, engine: str, url: str, rate: float | None) -> dict[str, Any]:
    """Idle dispatch, then end-to-end throughput, then dispatch at `rate` (half its own throughput when None: a
    load it sustains, so the figure is dispatch under load rather than time spent in a growing queue)."""
    sizes = ctx.sizes
    env = genmill_env(scratch_dir(ctx.workdir), url, ctx.sizes.backends)
    key = create_key(env)
    flags = ("--workers", str(sizes.workers), "--processes", str(processes_of(sizes, engine)))
    server = genmill_server(f"genmill-{engine}-workers", ctx.workdir, env, *flags)
    with server:
        with server.sample_rss("idle_dispatch"):
            idle = loadgen.run(_genmill_idle(server.port, key, sizes.dispatch_idle))
        with server.sample_rss("end_to_end"):
            throughput = loadgen.run(_genmill_throughput(server.port, key, sizes.e2e_tasks, sizes.connections))
        load_rate = rate or round(max(1.0, throughput["tasks_per_s"] * 0.5), 1)
        with server.sample_rss("dispatch_under_load"):
            loaded = loadgen.run(_genmill_under_load(server.port, key, load_rate, sizes.load_seconds))
    ctx.say(f"end to end on genmill-{engine}: {throughput['tasks_per_s']} tasks/s")
    return {
        "end_to_end": {**throughput, "processes": processes_of(sizes, engine)},
        "dispatch": {"idle": latency_summary(idle), "under_load": {"rate": load_rate, **latency_summary(loaded)}},
        "memory": server.peak_rss_mb,
    }


class CeleryWorker:
    """`celery worker` for bench.celery_app as a subprocess, with `workers` prefork processes."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> CeleryWorker:
        import redis

        from bench.celery_app import noop

        redis.Redis.from_url(REDIS_URL).flushdb()
        log = open(self.ctx.workdir / "celery.log", "ab")
        argv = [sys.executable, "-m", "celery", "-A", "bench.celery_app", "worker", "-P", "prefork"]
        argv += ["-c", str(self.ctx.sizes.workers), "--loglevel", "WARNING"]
        argv += ["--without-gossip", "--without-mingle", "--without-heartbeat"]
        env = {**os.environ, "GENMILL_BENCH_REDIS": REDIS_URL}
        self.proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        noop.delay({"warm": True}).get(timeout=120)  # the worker is up and consuming
        return self

    def __exit__(self, *exc: object) -> None:
        import redis

        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        redis.Redis.from_url(REDIS_URL).flushdb()  # empty the bench database again


def _celery_idle(count: int) -> list[float]:
    from bench.celery_app import noop

    samples = []
    for i in range(count):
        sent = time.time()
        value = noop.delay({"n": i}).get(timeout=60)
        samples.append(float(value["started_at"]) - sent)
        time.sleep(0.01)
    return samples


def _celery_throughput(tasks: int) -> dict[str, Any]:
    from celery.result import ResultSet

    from bench.celery_app import noop

    begun = time.perf_counter()
    results = [noop.delay({"n": i}) for i in range(tasks)]
    create_seconds = time.perf_counter() - begun
    values = ResultSet(results).get(timeout=300)
    seconds = time.perf_counter() - begun
    completed = sum(1 for v in values if isinstance(v, dict) and "echo" in v)
    return {
        "tasks": tasks,
        "completed": completed,
        "seconds": round(seconds, 3),
        "tasks_per_s": round(completed / seconds, 1),
        "create_phase_s": round(create_seconds, 3),
    }


def _celery_under_load(rate: float, seconds: float) -> list[float]:
    from celery.result import ResultSet

    from bench.celery_app import noop

    sent: list[tuple[float, Any]] = []
    total = int(rate * seconds)
    begun = time.perf_counter()
    for i in range(total):
        delay = begun + i / rate - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        sent.append((time.time(), noop.delay({"n": i})))
    values = ResultSet([r for _, r in sent]).get(timeout=300)
    return [float(v["started_at"]) - t for (t, _), v in zip(sent, values, strict=True)]


def celery_tasks(ctx: Context, rate: float) -> dict[str, Any]:
    sizes = ctx.sizes
    with CeleryWorker(ctx):
        idle = _celery_idle(sizes.dispatch_idle)
        throughput = _celery_throughput(sizes.e2e_tasks)
        loaded = _celery_under_load(rate, sizes.load_seconds)
    ctx.say(f"end to end on celery: {throughput['tasks_per_s']} tasks/s")
    return {
        "end_to_end": throughput,
        "dispatch": {"idle": latency_summary(idle), "under_load": {"rate": rate, **latency_summary(loaded)}},
    }


def tasks_workloads(ctx: Context) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """Workloads 2 and 3 for genmill (SQLite, PostgreSQL) and Celery; returns (end_to_end, dispatch, memory).

    Each genmill engine's dispatch under load runs at half its own end-to-end throughput; Celery runs at the
    SQLite rate, so that pair compares at the same rate."""
    runs: dict[str, dict[str, Any]] = {"sqlite": genmill_tasks(ctx, "sqlite", "", None)}
    rate = runs["sqlite"]["dispatch"]["under_load"]["rate"]
    if ctx.postgres:
        with postgres_database() as url:
            runs["postgres"] = genmill_tasks(ctx, "postgres", url, None)
    if ctx.celery:
        runs["celery"] = celery_tasks(ctx, rate)
    celery = runs.get("celery")
    end_to_end: dict[str, Any] = {"workers": ctx.sizes.workers}
    dispatch: dict[str, Any] = {}
    for name, run in runs.items():
        e2e = dict(run["end_to_end"])
        if celery and name != "celery":
            e2e["ratio_to_celery"] = ratio(e2e["tasks_per_s"], celery["end_to_end"]["tasks_per_s"])
        end_to_end[name] = e2e
        disp = run["dispatch"]
        if celery and name != "celery":
            for phase in ("idle", "under_load"):
                disp[phase]["p50_ratio"] = ratio(disp[phase]["p50_ms"], celery["dispatch"][phase]["p50_ms"])
                disp[phase]["p99_ratio"] = ratio(disp[phase]["p99_ms"], celery["dispatch"][phase]["p99_ms"])
        dispatch[name] = disp
    memory = {f"{name}-workers": run["memory"] for name, run in runs.items() if "memory" in run}
    return end_to_end, dispatch, memory
