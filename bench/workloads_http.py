"""Workloads over HTTP: create-task throughput (1), get latency under load and as the table grows (4).

Every genmill figure is measured next to its baseline in the same run: the bare FastAPI app on the same
uvicorn for throughput and latency under load, and the 10k-task table for the growth.
"""

from __future__ import annotations

import asyncio
import json
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from bench import loadgen, wrk
from bench.common import (
    ECHO_BODY,
    Served,
    announce_remote_worker,
    bare_server,
    create_key,
    database_url,
    genmill_env,
    genmill_server,
    largest_rss_mb,
    postgres_database,
    scratch_dir,
)
from bench.plan import Context, create_request, get_request, key_headers, processes_of, ratio
from bench.seed import account_id_of, seed_tasks

GET_CONNECTIONS = 8
LOAD_SHARE = 0.5
"""Share of the measured create throughput offered while get latency is measured."""


def _create_ids(server: Served, key: str, count: int) -> list[str]:
    """Create `count` echo tasks and return their ids (the tasks gets are measured on)."""
    result = loadgen.run(loadgen.closed_loop(server.port, lambda _: create_request(key), count, 8, keep=True))
    ids = [json.loads(body)["data"]["task_id"] for body in result.bodies.values() if body.startswith(b'{"code":200')]
    if not ids:
        raise RuntimeError(f"{server.name}: no task could be created: {server.log_tail()}")
    return ids


def _closed(ctx: Context, server: Served, script: str, make: loadgen.MakeRequest, connections: int) -> dict[str, Any]:
    """Closed-loop throughput and latency with wrk, or with the asyncio generator where wrk is not installed."""
    seconds = ctx.sizes.http_seconds
    if wrk.available():
        return wrk.run(server.url, script, duration=seconds, connections=connections)
    result = loadgen.run(loadgen.closed_loop_for(server.port, make, seconds, connections))
    return {**result.summary(), "connections": connections, "client": "loadgen"}


def _create_throughput(ctx: Context, server: Served, key: str) -> dict[str, Any]:
    script = wrk.post_script("/api/v1/task", ECHO_BODY, key_headers(key))
    with server.sample_rss("create"):
        figures = _closed(ctx, server, script, lambda _: create_request(key), ctx.sizes.connections)
    ctx.say(f"create on {server.name}: {figures['rps']} req/s, p50 {figures['p50_ms']} ms, p99 {figures['p99_ms']} ms")
    return figures


async def _gets_while_creating(port: int, key: str, ids: list[str], rate: float, ctx: Context) -> dict[str, Any]:
    sizes = ctx.sizes
    creates, gets = await asyncio.gather(
        loadgen.open_loop(port, lambda _: create_request(key), rate, sizes.load_seconds, 64),
        loadgen.open_loop(
            port, lambda i: get_request(key, ids[i % len(ids)]), sizes.get_rate, sizes.load_seconds, GET_CONNECTIONS
        ),
    )
    return {"create_rate": rate, "creates": creates.summary(), "gets": gets.summary()}


def baseline_name(processes: int) -> str:
    """The bare app's name in the results when it runs `processes` API processes."""
    return "bare" if processes == 1 else f"bare-{processes}p"


def create_and_get(ctx: Context) -> tuple[dict[str, Any], dict[str, Any]]:
    """Workload 1 and the first half of workload 4, on the bare app, genmill on SQLite and genmill on PostgreSQL.

    Each genmill server is compared with the bare app running as many API processes as it does: genmill on
    SQLite runs one process (genmill.processes), genmill on PostgreSQL `--processes N`, so the bare app runs once
    with one process and, when N > 1, once more with N. The servers run side by side (idle ones cost nothing).
    While gets are measured, each genmill server is offered the goal's create rate or half its own create
    throughput if lower (a load it sustains, so the gets measure latency under load rather than a growing queue),
    and its bare baseline is measured at that same rate next to it.
    """
    engines = [("sqlite", "")]
    with ExitStack() as stack:
        if ctx.postgres:
            engines.append(("postgres", stack.enter_context(postgres_database())))
        counts = sorted({processes_of(ctx.sizes, engine) for engine, _ in engines})
        targets: list[tuple[str, Served, str]] = [
            (baseline_name(n), bare_server(ctx.workdir, n), "bench-key") for n in counts
        ]
        baseline_of: dict[str, str] = {}
        for engine, url in engines:
            env = genmill_env(scratch_dir(ctx.workdir), url, ctx.sizes.backends)
            key = create_key(env)
            processes = processes_of(ctx.sizes, engine)
            flags = ("--no-workers", "--processes", str(processes))
            targets.append((engine, genmill_server(f"genmill-{engine}-api", ctx.workdir, env, *flags), key))
            baseline_of[engine] = baseline_name(processes)
        for _, server, _ in targets:  # start side by side, then wait for each
            stack.callback(server.stop)
            server.launch()
        for name, server, _ in targets:
            server.wait_ready()
            if name in baseline_of:
                announce_remote_worker(server)
        idle = {name: round(largest_rss_mb(server.pid), 1) for name, server, _ in targets}
        ids = {name: _create_ids(server, key, ctx.sizes.prepared_ids) for name, server, key in targets}
        created = {name: _create_throughput(ctx, server, key) for name, server, key in targets}
        by_name = {name: (server, key) for name, server, key in targets}
        under_load: dict[str, Any] = {}
        for name, (server, key) in by_name.items():
            if name not in baseline_of:
                continue
            bare, bare_key = by_name[baseline_of[name]]
            rate = round(min(ctx.sizes.create_rate_goal, LOAD_SHARE * created[name]["rps"]), 1)
            with bare.sample_rss("get_under_load"):
                baseline = loadgen.run(_gets_while_creating(bare.port, bare_key, ids[baseline_of[name]], rate, ctx))
            with server.sample_rss("get_under_load"):
                measured = loadgen.run(_gets_while_creating(server.port, key, ids[name], rate, ctx))
            gets, base_gets = measured["gets"], baseline["gets"]
            under_load[name] = {
                **measured,
                "baseline": baseline,
                "baseline_name": baseline_of[name],
                "p50_ratio": ratio(gets["p50_ms"], base_gets["p50_ms"]),
                "p99_ratio": ratio(gets["p99_ms"], base_gets["p99_ms"]),
            }
            ctx.say(f"get on {name} under {rate} creates/s: p50 {gets['p50_ms']} ms, p99 {gets['p99_ms']} ms")
        memory = {name: {"idle": idle[name], **server.peak_rss_mb} for name, server, _ in targets}
    create: dict[str, Any] = {"connections": ctx.sizes.connections, "seconds": ctx.sizes.http_seconds}
    for count in counts:
        create[baseline_name(count)] = {**created[baseline_name(count)], "processes": count}
    for engine, base_name in baseline_of.items():
        run, base = created[engine], created[base_name]
        create[engine] = {
            **run,
            "processes": processes_of(ctx.sizes, engine),
            "baseline": base_name,
            "rps_ratio": ratio(run["rps"], base["rps"]),
            "p50_ratio": ratio(run["p50_ms"], base["p50_ms"]),
            "p99_ratio": ratio(run["p99_ms"], base["p99_ms"]),
        }
    return create, {"under_load": under_load, "memory": memory}


def _get_figures(ctx: Context, server: Served, key: str, ids: list[str], label: str) -> dict[str, Any]:
    """Closed-loop throughput (wrk, 8 connections) and open-loop latency at a fixed rate, over random ids."""
    ids_file = ctx.workdir / f"ids-{server.name}-{label}.txt"
    ids_file.write_text("\n".join(ids) + "\n")
    script = wrk.get_ids_script("/api/v1/task/", ids_file, {"X-API-Key": key})
    with server.sample_rss(f"get_{label}"):
        closed = _closed(ctx, server, script, lambda i: get_request(key, ids[(i * 7919) % len(ids)]), GET_CONNECTIONS)
        rate, seconds = ctx.sizes.growth_rate, ctx.sizes.load_seconds
        opened = loadgen.run(
            loadgen.open_loop(server.port, lambda i: get_request(key, ids[(i * 7919) % len(ids)]), rate, seconds, 8)
        )
    return {"closed": closed, "open": {"rate": rate, **opened.summary()}}


def _growth_on(ctx: Context, engine: str, url: str) -> dict[str, Any]:
    """One server over one database: seed the small table, measure gets, seed up to the large one, measure again."""
    sizes = ctx.sizes
    data = scratch_dir(ctx.workdir)
    env = genmill_env(data, url, ctx.sizes.backends)
    key = create_key(env)
    db_url = database_url(env)
    account = account_id_of(db_url)
    figures: dict[str, Any] = {}
    drawn: list[str] = []
    seeded = 0
    flags = ("--no-workers", "--processes", str(processes_of(sizes, engine)))
    with genmill_server(f"genmill-{engine}-growth", ctx.workdir, env, *flags) as server:
        for size in (sizes.seed_small, sizes.seed_large):
            started = time.perf_counter()
            ids = seed_tasks(db_url, account, size - seeded, offset=seeded)
            seconds = time.perf_counter() - started
            # Lookups spread over the whole table: earlier ids stay in the draw, in proportion.
            drawn = ids + drawn[: max(1, len(ids) * seeded // size)] if seeded else ids
            ctx.say(f"seeded {size - seeded} tasks on {engine} in {seconds:.1f} s")
            seeded = size
            result = _get_figures(ctx, server, key, drawn, str(size))
            result["seed_seconds"] = round(seconds, 1)
            figures[str(size)] = result
            opened = result["open"]
            ctx.say(f"get at {size} tasks on {engine}: p50 {opened['p50_ms']} ms, p99 {opened['p99_ms']} ms")
    small, large = figures[str(sizes.seed_small)], figures[str(sizes.seed_large)]
    db_files = list(Path(data).glob("genmill.db*"))
    return {
        "small": sizes.seed_small,
        "large": sizes.seed_large,
        "connections": GET_CONNECTIONS,
        "by_size": figures,
        "p50_growth": ratio(large["open"]["p50_ms"], small["open"]["p50_ms"]),
        "p99_growth": ratio(large["open"]["p99_ms"], small["open"]["p99_ms"]),
        "rps_ratio": ratio(large["closed"]["rps"], small["closed"]["rps"]),
        "closed_p50_growth": ratio(large["closed"]["p50_ms"], small["closed"]["p50_ms"]),
        "peak_rss_mb": max(server.peak_rss_mb.values(), default=0.0),
        **({"db_mb": round(sum(p.stat().st_size for p in db_files) / 1e6, 1)} if db_files else {}),
    }


def memory_echo_only(ctx: Context) -> dict[str, float]:
    """RSS of an API process that enables only the echo backend (`GENMILL_BACKENDS=echo`): idle and under the
    create load, to tell what the other backends' availability checks cost a default deployment's API process."""
    env = genmill_env(scratch_dir(ctx.workdir), "", "echo")
    key = create_key(env)
    with genmill_server("genmill-sqlite-echo-only", ctx.workdir, env, "--no-workers") as server:
        announce_remote_worker(server)
        idle = round(largest_rss_mb(server.pid), 1)
        _create_throughput(ctx, server, key)
    return {"idle": idle, **server.peak_rss_mb}


def growth(ctx: Context) -> dict[str, Any]:
    """The second half of workload 4: get latency with `seed_small` and with `seed_large` tasks stored."""
    results = {"sqlite": _growth_on(ctx, "sqlite", "")}
    if ctx.postgres:
        with postgres_database() as url:
            results["postgres"] = _growth_on(ctx, "postgres", url)
    return results
