"""Run every benchmark workload against its baseline and write the results (JSON) and docs/benchmarks.md.

    .venv/bin/python -m bench [--quick] [--out bench/results/DATE.json] [--doc docs/benchmarks.md]

1. create-task throughput and latency (wrk, many connections): genmill on SQLite and PostgreSQL vs a bare
   FastAPI app on the same uvicorn that only validates the same body;
2. end-to-end no-op tasks/s (create → worker runs `genmill/echo` → completed, read back) vs Celery + Redis;
3. dispatch latency (create → the task's code starts), idle and under load, vs Celery;
4. get-task latency under a create load (vs the bare app), and at `--large` vs 10k stored tasks;
5. RSS of the API process under each load (vs the bare app).

Needs wrk (`apt-get install wrk`; without it an asyncio generator measures throughput), PostgreSQL on
127.0.0.1:5432 (`GENMILL_BENCH_PG_ADMIN`) and Redis on 127.0.0.1:6379 (`GENMILL_BENCH_REDIS`, database 15 is
emptied) with `pip install 'genmill[bench]'`; a part whose service is missing is skipped and says why. `--quick`
runs every workload at tiny sizes in seconds (the test suite's smoke test) and writes no doc unless `--doc`;
`--render RESULTS.json` only rewrites the doc from an earlier results file.
"""

from __future__ import annotations

import argparse
import json
import shlex
import shutil
import sys
import time
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import report
from bench.common import REDIS_URL, ROOT, load_average, machine_facts, postgres_available, save_results, scratch_dir
from bench.plan import Context, Sizes
from bench.workloads_http import create_and_get, growth, memory_echo_only
from bench.workloads_tasks import tasks_workloads
from genmill.processes import cores

WORKLOADS = ("create", "end_to_end", "dispatch", "get", "memory")


def celery_available() -> str:
    """Empty when Celery is installed and Redis answers, else why not."""
    try:
        import celery  # noqa: F401
        import redis

        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2).ping()
        return ""
    except Exception as exc:
        return f"Celery baseline unavailable ({type(exc).__name__}: {str(exc)[:200]}); pip install 'genmill[bench]'"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0] if __doc__ else "")
    ap.add_argument("--quick", action="store_true", help="tiny sizes: every workload in seconds")
    ap.add_argument("--out", type=Path, default=None, help="results file (default bench/results/DATE.json)")
    ap.add_argument("--doc", type=Path, default=None, help="Markdown to update (default docs/benchmarks.md)")
    ap.add_argument("--large", type=int, default=1_000_000, help="stored tasks of the growth measure")
    ap.add_argument("--workers", type=int, default=2, help="genmill worker threads = Celery worker processes")
    ap.add_argument(
        "--processes",
        type=int,
        default=cores(),
        help="API processes of genmill on PostgreSQL and of its bare baseline (default: one per core)",
    )
    ap.add_argument("--no-postgres", action="store_true", help="SQLite only")
    ap.add_argument("--no-celery", action="store_true", help="no Celery baseline")
    ap.add_argument("--keep", action="store_true", help="keep the scratch folder (server logs, databases)")
    ap.add_argument("--render", type=Path, default=None, help="only rewrite the doc from this results file")
    return ap.parse_args(argv)


def run(args: argparse.Namespace, command: str) -> dict[str, Any]:
    sizes = (
        Sizes.quick(args.workers, args.processes)
        if args.quick
        else Sizes.full(args.large, args.workers, args.processes)
    )
    workdir = scratch_dir(prefix="genmill-bench-run-")
    ctx = Context(sizes=sizes, workdir=workdir, postgres=not args.no_postgres, celery=not args.no_celery)
    if ctx.postgres and (why := postgres_available()):
        ctx.postgres, ctx.skipped["postgres"] = False, why
    if ctx.celery and (why := celery_available()):
        ctx.celery, ctx.skipped["celery"] = False, why
    for part, why in ctx.skipped.items():
        ctx.say(f"skipping {part}: {why}")
    ctx.say(f"scratch folder {workdir}")
    began = time.perf_counter()
    results: dict[str, Any] = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "command": command,
        "quick": args.quick,
        "sizes": asdict(sizes),
        "machine": machine_facts(),
    }
    ok = False
    try:
        create, get_part = create_and_get(ctx)
        results["create"] = create
        results["memory"] = get_part.pop("memory")
        results["get"] = get_part
        end_to_end, dispatch, memory = tasks_workloads(ctx)
        results["end_to_end"], results["dispatch"] = end_to_end, dispatch
        results["memory"].update(memory)
        if not sizes.backends:  # servers ran with every built-in backend: show what echo alone costs
            results["memory"]["sqlite-echo-backend-only"] = memory_echo_only(ctx)
        results["get"]["growth"] = growth_part = growth(ctx)
        for engine, run_ in growth_part.items():
            results["memory"].setdefault(f"{engine}-{sizes.seed_large}-tasks", {})["get"] = run_["peak_rss_mb"]
        ok = True
    finally:
        if ok and not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            ctx.say(f"server logs and databases kept in {workdir}")
    results["wall_seconds"] = round(time.perf_counter() - began, 1)
    results["machine"]["load_average_after"] = load_average()
    results["skipped"] = ctx.skipped
    results["goals"] = report.goals(results)
    return results


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.render is not None:
        doc = args.doc or ROOT / "docs" / "benchmarks.md"
        report.write_doc(doc, json.loads(args.render.read_text()))
        print(f"[bench] {doc} rendered from {args.render}")
        return 0
    command = "python -m bench " + shlex.join(sys.argv[1:] if argv is None else argv)
    results = run(args, command.strip())
    stamp = datetime.now(UTC).strftime("%Y-%m-%d")
    out = args.out or ROOT / "bench" / "results" / f"{stamp}{'-quick' if args.quick else ''}.json"
    doc = args.doc or (None if args.quick else ROOT / "docs" / "benchmarks.md")
    save_results(results, out, doc, report.write_doc, "bench")
    for goal in results["goals"]:
        verdict = "n/a " if goal["met"] is None else "met " if goal["met"] else "MISS"
        print(f"[bench] {verdict} {goal['goal']}: {goal['measured']} (target {goal['target']}) {goal['gap']}")
    missing = [k for k in WORKLOADS if not results.get(k)]
    return 1 if missing else 0


if __name__ == "__main__":
    sys.exit(main())
