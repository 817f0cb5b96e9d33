"""Run the reliability scenarios against real genmill processes and write the results and docs/reliability.md.

    python -m bench.reliability [--quick] [--engines sqlite,postgresql] [--scenarios fuzz,access,...]
                                [--pg-restart] [--out RESULTS.json] [--doc docs/reliability.md] [--keep]
    python -m bench.reliability --render RESULTS.json [--doc docs/reliability.md]

Scenarios (docs/reliability.md says what each does): fuzz (schemathesis, the catalog's input schemas, hostile
inputs), access (the cross-account matrix), overspend, cancel (cancel vs claim), kill (kill -9 of server and
workers), drip-webhook, drip-input, flood; pg-restart only with --pg-restart (a PostgreSQL cluster of the suite's
own). PostgreSQL at 127.0.0.1:5432 (`GENMILL_BENCH_PG_ADMIN`) gets a throw-away database per deployment; without
it the postgresql rows are skipped and say why. A full run writes bench/results/reliability-DATE.json and the
table in docs/reliability.md; `--quick` writes no doc unless `--doc`. Exit status 1 when a row failed.
"""

from __future__ import annotations

import argparse
import json
import shlex
import shutil
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

from bench.common import ROOT, load_average, machine_facts, postgres_available, save_results, scratch_dir
from bench.reliability import report
from bench.reliability.access import run_access
from bench.reliability.deployment import ENGINES, Deployment, database
from bench.reliability.faults import pg_restart_unavailable, run_kill, run_pg_restart
from bench.reliability.fuzz import run_fuzz
from bench.reliability.peers import run_drip_input, run_drip_webhook, run_flood
from bench.reliability.races import run_cancel_race, run_overspend
from bench.reliability.scenario import Row, RunContext, Sizes

SHARED: dict[str, tuple[str, Callable[[RunContext, Deployment], Row]]] = {
    "fuzz": ("schemathesis + hostile inputs", run_fuzz),
    "access": ("cross-account matrix", run_access),
    "overspend": ("overspend race", run_overspend),
    "cancel": ("cancel vs claim race", run_cancel_race),
}
"""Scenarios that share one deployment per engine (each with accounts of its own)."""
OWN: dict[str, tuple[str, Callable[[RunContext, str], Row]]] = {
    "kill": ("kill -9 server and workers", run_kill),
    "drip-webhook": ("dripping webhook receiver", run_drip_webhook),
    "drip-input": ("dripping input URL", run_drip_input),
    "flood": ("connection flood", run_flood),
}
"""Scenarios that break or hold their deployment, so each starts its own."""
DEFAULT = (*SHARED, *OWN)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m bench.reliability", description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small sizes: the test suite's mode")
    ap.add_argument("--engines", default=",".join(ENGINES), help="comma-separated: sqlite,postgresql")
    ap.add_argument("--scenarios", default=",".join(DEFAULT), help=f"comma-separated, of {', '.join(DEFAULT)}")
    ap.add_argument("--pg-restart", action="store_true", help="also restart PostgreSQL under load (own cluster)")
    ap.add_argument("--out", type=Path, default=None, help="results file (default bench/results/reliability-DATE.json)")
    ap.add_argument("--doc", type=Path, default=None, help="Markdown to update (default docs/reliability.md)")
    ap.add_argument("--keep", action="store_true", help="keep the scratch folder (server and worker logs)")
    ap.add_argument("--render", type=Path, default=None, help="only rewrite the doc from this results file")
    args = ap.parse_args(argv)
    unknown = {s for s in args.scenarios.split(",") if s} - set(DEFAULT)
    unknown |= {e for e in args.engines.split(",") if e} - set(ENGINES)
    if unknown:
        ap.error(f"unknown: {', '.join(sorted(unknown))}")
    return args


def guarded(test: str, engine: str, ctx: RunContext, run: Callable[[], Row]) -> Row:
    """A scenario that raises becomes a failed row naming the error; the others still run."""
    ctx.say(f"{test} on {engine}")
    started = time.monotonic()
    try:
        row = run()
    except Exception as exc:
        row = Row.begin(test, engine)
        row.fail(f"scenario error: {type(exc).__name__}: {str(exc)[:300]}")
        ctx.say(traceback.format_exc())
    row.seconds = round(time.monotonic() - started, 1)
    ctx.say(f"  {'pass' if row.passed else 'FAIL'} in {row.seconds} s: {'; '.join(row.failures or row.notes)[:400]}")
    return row


def run_engine(ctx: RunContext, engine: str, chosen: list[str]) -> list[Row]:
    rows: list[Row] = []
    shared = [name for name in chosen if name in SHARED]
    if shared:
        workdir = ctx.scratch(f"shared-{engine}")
        with database(engine, workdir) as url, Deployment(engine, url, workdir) as dep:
            for name in shared:
                test, scenario = SHARED[name]
                rows.append(guarded(test, engine, ctx, partial(scenario, ctx, dep)))
    for name in (n for n in chosen if n in OWN):
        test, own = OWN[name]
        rows.append(guarded(test, engine, ctx, partial(own, ctx, engine)))
    return rows


def _commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
        dirty = subprocess.run(["git", "status", "--porcelain"], cwd=ROOT, capture_output=True, text=True).stdout
        return out.stdout.strip() + ("+changes" if dirty.strip() else "")
    except OSError:
        return "unknown"


def run(args: argparse.Namespace, command: str) -> dict[str, Any]:
    sizes = Sizes.quick() if args.quick else Sizes.full()
    workdir = scratch_dir(prefix="genmill-reliability-")
    ctx = RunContext(sizes=sizes, workdir=workdir, quick=args.quick)
    chosen = [s for s in args.scenarios.split(",") if s]
    engines = [e for e in args.engines.split(",") if e]
    skipped: dict[str, str] = {}
    if "postgresql" in engines and (why := postgres_available()):
        engines.remove("postgresql")
        skipped["postgresql"] = why
    machine = machine_facts()
    began = time.perf_counter()
    rows: list[Row] = []
    try:
        for engine in engines:
            rows += run_engine(ctx, engine, chosen)
        if args.pg_restart:
            if why := pg_restart_unavailable():
                skipped["pg-restart"] = why
            else:
                rows.append(guarded("PostgreSQL restart", "postgresql", ctx, partial(run_pg_restart, ctx)))
        else:
            skipped["pg-restart"] = "needs --pg-restart (restarts a PostgreSQL cluster of the suite's own)"
    finally:
        if args.keep or any(not r.passed for r in rows):
            ctx.say(f"server and worker logs kept in {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    machine["load_average_after"] = load_average()
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "command": command,
        "commit": _commit(),
        "quick": args.quick,
        "sizes": sizes.__dict__,
        "machine": machine,
        "wall_seconds": round(time.perf_counter() - began, 1),
        "skipped": skipped,
        "rows": [r.to_json() for r in rows],
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.render is not None:
        doc = args.doc or ROOT / "docs" / "reliability.md"
        report.write_doc(doc, json.loads(args.render.read_text()))
        print(f"[reliability] {doc} rendered from {args.render}")
        return 0
    command = "python -m bench.reliability " + shlex.join(sys.argv[1:] if argv is None else argv)
    results = run(args, command.strip())
    stamp = datetime.now(UTC).strftime("%Y-%m-%d")
    out = args.out or ROOT / "bench" / "results" / f"reliability-{stamp}{'-quick' if args.quick else ''}.json"
    doc = args.doc or (None if args.quick else ROOT / "docs" / "reliability.md")
    save_results(results, out, doc, report.write_doc, "reliability")
    failed = [r for r in results["rows"] if not r["passed"]]
    for r in results["rows"]:
        print(
            f"[reliability] {'pass' if r['passed'] else 'FAIL'} {r['test']} ({r['engine']}): {'; '.join(r['failures'])}"
        )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
