"""Where the API process's memory goes under the bench's loads, on SQLite, at a small scale.

    PYTHONPATH=src .venv/bin/python -m bench.memory_profile [--seconds 10] [--rate 200] [--tracemalloc]

Starts `genmill serve --no-workers` on a fresh SQLite data folder the way workload 1 does (a bench key, a remote
worker that never claims), then runs the two loads whose peak RSS docs/benchmarks.md section 5 reports: creates
closed-loop over `--connections` connections, then creates at `--rate` per second with gets at `--get-rate`
(open-loop, as "get under load"). After each phase it prints the RSS (anonymous and file-backed), the threads,
the open database connections and what the native allocators hold (SQLite's `sqlite3_memory_used`, glibc's
`mallinfo2`: the server runs under a small wrapper that writes them on SIGUSR1); with `--tracemalloc`, also the
largest Python allocation sites. Python's objects barely grow under these loads, native memory does: compare
runs with `--env MALLOC_ARENA_MAX=N` (glibc's own variable) or other server settings (`--env NAME=VALUE`).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import sys
import time
import tracemalloc
from pathlib import Path
from typing import Any

from bench import loadgen
from bench.common import (
    GENMILL,
    RssSampler,
    announce_remote_worker,
    create_key,
    genmill_env,
    genmill_server,
    scratch_dir,
)
from bench.plan import create_request, get_request

WRAPPER = """
import ctypes, json, os, runpy, signal, sys, threading, tracemalloc
if os.environ.get("BENCH_TRACEMALLOC"):
    tracemalloc.start()
class MallInfo2(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in
                "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost".split()]
def native():
    import _sqlite3
    libc, lite = ctypes.CDLL(None), ctypes.CDLL(_sqlite3.__file__)
    libc.mallinfo2.restype = MallInfo2
    lite.sqlite3_memory_used.restype = lite.sqlite3_memory_highwater.restype = ctypes.c_int64
    info = libc.mallinfo2()
    mb = lambda n: round(n / 2**20, 1)
    return {"sqlite_used": mb(lite.sqlite3_memory_used()), "sqlite_high": mb(lite.sqlite3_memory_highwater(0)),
            "malloc_arena": mb(info.arena), "malloc_mmap": mb(info.hblkhd), "malloc_in_use": mb(info.uordblks),
            "malloc_free": mb(info.fordblks), "threads": threading.active_count()}
def dump(_signum, _frame):
    base = os.environ["BENCH_DUMP"]
    with open(base + ".json", "w") as out:
        json.dump(native(), out)
    if tracemalloc.is_tracing():
        tracemalloc.take_snapshot().dump(base + ".tracemalloc")
signal.signal(signal.SIGUSR1, dump)
sys.argv = ["genmill"] + sys.argv[1:]
runpy.run_module("genmill.cli", run_name="__main__")
"""


def memory_facts(pid: int) -> dict[str, Any]:
    """RSS split into anonymous and file-backed memory, and the thread count, from /proc."""
    facts: dict[str, Any] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "RssAnon", "RssFile", "Threads"):
            facts[name] = int(value.split()[0]) // 1024 if name != "Threads" else int(value)
    links = [os.readlink(fd) for fd in Path(f"/proc/{pid}/fd").iterdir() if fd.is_symlink()]
    facts["db_connections"] = sum(link.endswith(".db") for link in links)
    return facts


def top_allocations(path: Path, previous: tracemalloc.Snapshot | None, limit: int) -> tracemalloc.Snapshot:
    snapshot = tracemalloc.Snapshot.load(str(path))
    total = sum(stat.size for stat in snapshot.statistics("filename"))
    print(f"  traced Python memory: {total / 2**20:.1f} MB")
    stats = snapshot.compare_to(previous, "lineno") if previous else snapshot.statistics("lineno")
    for stat in stats[:limit]:
        print(f"    {stat}")
    return snapshot


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--rate", type=float, default=200, help="creates/s while gets are measured")
    parser.add_argument("--get-rate", type=float, default=50)
    parser.add_argument("--backends", default="", help="GENMILL_BACKENDS (empty: every backend, as the bench)")
    parser.add_argument("--tracemalloc", action="store_true")
    parser.add_argument("--top", type=int, default=15)
    parser.add_argument("--env", action="append", default=[], help="NAME=VALUE for the server")
    args = parser.parse_args()

    work = scratch_dir(prefix="genmill-memory-")
    try:
        _profile(args, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _profile(args: argparse.Namespace, work: Path) -> None:
    env = genmill_env(scratch_dir(work), "", args.backends)
    env.update(dict(item.split("=", 1) for item in args.env))
    key = create_key(env)
    server = genmill_server("genmill-sqlite-api", work, env, "--no-workers")
    dump = work / "dump"
    server.argv = [sys.executable, "-c", WRAPPER, *server.argv[len(GENMILL) :]]
    server.env = {**env, "BENCH_DUMP": str(dump), **({"BENCH_TRACEMALLOC": "1"} if args.tracemalloc else {})}
    previous: tracemalloc.Snapshot | None = None

    def report(phase: str, peak: float) -> None:
        nonlocal previous
        print(f"{phase}: peak {peak:.1f} MB, now {json.dumps(memory_facts(server.pid))}")
        os.kill(server.pid, signal.SIGUSR1)
        time.sleep(2 if args.tracemalloc else 0.5)
        print(f"  native (MB): {Path(f'{dump}.json').read_text()}")
        if args.tracemalloc:
            previous = top_allocations(Path(f"{dump}.tracemalloc"), previous, args.top)

    with server:
        announce_remote_worker(server)
        time.sleep(1)
        report("idle", memory_facts(server.pid)["VmRSS"])
        make_create = lambda _: create_request(key)  # noqa: E731
        ids_run = loadgen.run(loadgen.closed_loop(server.port, make_create, 200, 8, keep=True))
        ids = [json.loads(b)["data"]["task_id"] for b in ids_run.bodies.values() if b.startswith(b'{"code":200')]
        with RssSampler(server.pid) as sampler:
            created = loadgen.run(loadgen.closed_loop_for(server.port, make_create, args.seconds, args.connections))
        print(f"create: {created.summary()}")
        report("create", sampler.peak)

        async def under_load() -> tuple[loadgen.Result, loadgen.Result]:
            return await asyncio.gather(
                loadgen.open_loop(server.port, make_create, args.rate, args.seconds, 64),
                loadgen.open_loop(
                    server.port, lambda i: get_request(key, ids[i % len(ids)]), args.get_rate, args.seconds, 8
                ),
            )

        with RssSampler(server.pid) as sampler:
            creates, gets = loadgen.run(under_load())
        print(f"get under load: creates {creates.summary()}\n  gets {gets.summary()}")
        report("get under load", sampler.peak)


if __name__ == "__main__":
    main()
