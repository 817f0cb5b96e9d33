"""Measure how long a task's `completed` webhook takes to reach a receiver after the task ended.

    .venv/bin/python bench/webhook_latency.py --tasks 200 --concurrency 8
    .venv/bin/python bench/webhook_latency.py --tasks 50 --one-at-a-time    # no queue: each task alone

Starts `genmill serve --workers 2` on a free port with a fresh SQLite data folder and
`GENMILL_ALLOW_PRIVATE_URLS=1`, and a webhook receiver (a standard-library `ThreadingHTTPServer` on 127.0.0.1) in
this process that notes the arrival time (`time.time()`) of every POST and parses its JSON body. After `--warmup`
tasks that are not counted, it creates `--tasks` Real-ESRGAN upscales of an 8x8 PNG (scale 2) from
`--concurrency` client threads, each with `config.webhook_config` pointing at the receiver with a secret, and
waits (at most `--timeout` seconds, else it exits naming what is missing) until every task's `completed`
delivery has arrived.

Latency of a task = arrival of its first `completed` delivery - the task's `meta.ended_at` (from that delivery's
body); server and receiver share the machine's clock. It is split at the dispatcher's `attempted_at` (from
`GET /api/v1/task/{id}/webhooks`), and the same is shown for the `pending` event (against `meta.created_at`) and
the `processing` event (against `meta.started_at`). As a baseline measured in the same run, the bench POSTs the
body of a received `completed` delivery to the receiver itself, one request at a time on a fresh connection,
with `http.client` (the bare baseline, for ratios) and with a new `httpx.Client` per POST as the dispatcher does.
It also reports the deliveries each task received, repeated `webhook-id`s and signature checks.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import http.client
import io
import json
import math
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import zlib
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx

GENMILL = [sys.executable, "-m", "genmill.cli"]
SECRET = "bench-secret"
HOOK_PATH = "/hook"
BASELINE_PATH = "/baseline"
RFC3339 = re.compile(r"^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})(?:\.(\d{1,9}))?(Z|[+-]\d{2}:\d{2})$")
EVENT_CLOCKS = (("pending", "created_at"), ("processing", "started_at"), ("completed", "ended_at"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def png(width: int, height: int) -> bytes:
    """A valid RGB PNG of a grey gradient, built with zlib alone."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return len(data).to_bytes(4, "big") + body + zlib.crc32(body).to_bytes(4, "big")

    rows = b"".join(
        b"\x00" + bytes((x * 31 + y * 17) % 256 for x in range(width) for _ in range(3)) for y in range(height)
    )
    header = width.to_bytes(4, "big") + height.to_bytes(4, "big") + bytes((8, 2, 0, 0, 0))
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


def parse_rfc3339(text: str) -> float:
    """Seconds since the epoch for an RFC 3339 time with up to 9 fraction digits (kept to float precision)."""
    match = RFC3339.match(text)
    if match is None:
        raise ValueError(f"not an RFC 3339 time: {text!r}")
    whole, fraction, zone = match.groups()
    moment = datetime.fromisoformat(whole + ("+00:00" if zone == "Z" else zone)).astimezone(UTC)
    return moment.timestamp() + (int(fraction) / 10 ** len(fraction) if fraction else 0.0)


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile (p in 0-100) of a non-empty list."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


@dataclass(frozen=True)
class Arrival:
    at: float
    path: str
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Receiver:
    url: str = ""
    arrivals: list[Arrival] = field(default_factory=list)
    completed: set[str] = field(default_factory=set)
    cond: threading.Condition = field(default_factory=threading.Condition)

    def record(self, arrival: Arrival) -> None:
        status, task_id = "", ""
        if arrival.path == HOOK_PATH:
            data = arrival.json["data"]
            status, task_id = data["status"], data["task_id"]
        with self.cond:
            self.arrivals.append(arrival)
            if status == "completed":
                self.completed.add(task_id)
            self.cond.notify_all()

    def wait_completed(self, task_ids: set[str], timeout: float) -> set[str]:
        """Block until every task's `completed` delivery arrived or `timeout` passed; returns the missing ids."""
        with self.cond:
            self.cond.wait_for(lambda: task_ids <= self.completed, timeout)
            return task_ids - self.completed

    def on(self, path: str) -> list[Arrival]:
        with self.cond:
            return [a for a in self.arrivals if a.path == path]


@contextmanager
def run_receiver() -> Iterator[Receiver]:
    receiver = Receiver()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length", "0")))
            at = time.time()
            receiver.record(Arrival(at, self.path, {k.lower(): v for k, v in self.headers.items()}, body))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    receiver.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@contextmanager
def run_server(data: Path, workers: int) -> Iterator[tuple[str, str]]:
    """`genmill serve` over a fresh data folder; yields (base URL, API key)."""
    env = {
        **os.environ,
        "GENMILL_DATA_DIR": str(data),
        "GENMILL_ALLOW_PRIVATE_URLS": "1",
        "HF_HUB_OFFLINE": "1",
        # One key creates far past the per-key rate limits here, on purpose: they are off.
        "GENMILL_RATE_LIMIT_CREATES_PER_SECOND": "0",
        "GENMILL_RATE_LIMIT_READS_PER_SECOND": "0",
        "GENMILL_FREE_TASKS_PER_SECOND": "0",
    }
    key = (
        subprocess.run(
            [*GENMILL, "keys", "create", "--credits", "100000000000", "--max-concurrency", "1000000"],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        .stdout.strip()
        .splitlines()[-1]
    )
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log_path = data / "server.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [*GENMILL, "serve", "--port", str(port), "--workers", str(workers), "--log-level", "warning"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            deadline = time.time() + 120
            while True:
                if proc.poll() is not None or time.time() > deadline:
                    raise SystemExit("genmill serve did not start:\n" + log_path.read_text(errors="replace")[-3000:])
                try:
                    if httpx.get(url + "/healthz").status_code == 200:
                        break
                except httpx.TransportError:
                    time.sleep(0.05)
            yield url, key
        finally:
            proc.terminate()
            proc.wait(30)


def create_tasks(url: str, key: str, hook: str, n: int, concurrency: int) -> list[str]:
    image = base64.b64encode(png(8, 8)).decode()
    body = json.dumps(
        {
            "model": "Qubico/image-toolkit",
            "task_type": "upscale",
            "input": {"image": image, "scale": 2},
            "config": {"webhook_config": {"endpoint": hook, "secret": SECRET}},
        }
    )
    headers = {"X-API-Key": key, "Content-Type": "application/json"}
    local = threading.local()

    def create(_: int) -> str:
        if not hasattr(local, "client"):
            local.client = httpx.Client(timeout=60)
        r = local.client.post(url + "/api/v1/task", content=body, headers=headers)
        if r.status_code != 200:
            raise SystemExit(f"creating a task failed: HTTP {r.status_code} {r.text[:500]}")
        return str(r.json()["data"]["task_id"])

    with ThreadPoolExecutor(concurrency) as pool:
        return list(pool.map(create, range(n)))


def baseline(receiver: Receiver, body: bytes, n: int, *, like_dispatcher: bool) -> list[float]:
    """Latencies (s) of loopback POSTs of `body` to the receiver, one at a time, each on a fresh connection.

    Bare: `http.client`. Like the dispatcher: a fresh `httpx.Client` per POST (its construction included).
    """
    host, port = receiver.url.removeprefix("http://").split(":")
    headers = {"Content-Type": "application/json"}
    latencies = []
    for _ in range(n):
        before = len(receiver.on(BASELINE_PATH))
        started = time.time()
        if like_dispatcher:
            with httpx.Client(trust_env=False, limits=httpx.Limits(max_keepalive_connections=0)) as client:
                client.post(receiver.url + BASELINE_PATH, content=body, headers=headers).raise_for_status()
        else:
            conn = http.client.HTTPConnection(host, int(port), timeout=30)
            try:
                conn.request("POST", BASELINE_PATH, body=body, headers=headers)
                conn.getresponse().read()
            finally:
                conn.close()
        latencies.append(receiver.on(BASELINE_PATH)[before].at - started)
    return latencies


def signed_ok(arrival: Arrival) -> bool:
    """The Standard Webhooks signature (the task secret as UTF-8 bytes is the key) and the PiAPI secret header."""
    h = arrival.headers
    signed = f"{h['webhook-id']}.{h['webhook-timestamp']}.".encode() + arrival.body
    expected = "v1," + base64.b64encode(hmac.new(SECRET.encode(), signed, hashlib.sha256).digest()).decode()
    return hmac.compare_digest(expected, h["webhook-signature"]) and h.get("x-webhook-secret") == SECRET


def dispatcher_view(url: str, key: str, task_ids: list[str]) -> dict[str, dict[str, Any]]:
    """Each task's `completed` delivery as `GET /api/v1/task/{id}/webhooks` lists it."""
    found = {}
    with httpx.Client(timeout=60) as client:
        for task_id in task_ids:
            r = client.get(f"{url}/api/v1/task/{task_id}/webhooks", headers={"X-API-Key": key})
            r.raise_for_status()
            for delivery in r.json()["data"]["deliveries"]:
                if delivery["task_status"] == "completed" and delivery["history"]:
                    found[task_id] = delivery
    return found


def row(label: str, values: list[float], base_p50: float) -> str:
    p50 = percentile(values, 50)
    return f"{label:<44}{p50 * 1000:9.1f} {percentile(values, 99) * 1000:9.1f} {max(values) * 1000:9.1f}" + (
        f"{p50 / base_p50:12.1f}x\n"
    )


def report(
    task_ids: list[str],
    hooks: list[Arrival],
    listed: dict[str, dict[str, Any]],
    base: list[float],
    httpx_base: list[float],
    elapsed: float,
) -> str:
    first: dict[tuple[str, str], Arrival] = {}
    per_task: Counter[str] = Counter()
    ids: Counter[str] = Counter()
    measured = set(task_ids)
    hooks = [a for a in hooks if a.json["data"]["task_id"] in measured]
    for arrival in sorted(hooks, key=lambda a: a.at):
        data = arrival.json["data"]
        first.setdefault((data["task_id"], data["status"]), arrival)
        per_task[data["task_id"]] += 1
        ids[arrival.headers["webhook-id"]] += 1

    def since(status: str, clock: str) -> list[float]:
        arrivals = [first[(t, status)] for t in task_ids if (t, status) in first]
        return [a.at - parse_rfc3339(a.json["data"]["meta"][clock]) for a in arrivals]

    ended = {t: parse_rfc3339(first[(t, "completed")].json["data"]["meta"]["ended_at"]) for t in task_ids}
    picked = [parse_rfc3339(d["history"][0]["attempted_at"]) - ended[t] for t, d in listed.items()]
    posted = [d["history"][0]["latency_ms"] / 1000 for d in listed.values()]
    base_p50 = percentile(base, 50)
    out = io.StringIO()
    out.write(f"{len(task_ids)} tasks, all completed webhooks received {elapsed:.1f} s after the first create\n\n")
    out.write(f"{'latency (ms)':<44}{'p50':>9}{'p99':>10}{'max':>10}{'p50/base':>13}\n")
    out.write(row("completed webhook arrival - meta.ended_at", since("completed", "ended_at"), base_p50))
    out.write(row("  ended_at - dispatcher's attempted_at", picked, base_p50))
    out.write(row("  dispatcher's POST (its latency_ms)", posted, base_p50))
    out.write(row("pending webhook arrival - meta.created_at", since("pending", "created_at"), base_p50))
    out.write(row("processing webhook arrival - meta.started_at", since("processing", "started_at"), base_p50))
    out.write(row("bare loopback POST (baseline)", base, base_p50))
    out.write(row("loopback POST on a new httpx.Client", httpx_base, base_p50))
    runs = [ended[t] - parse_rfc3339(first[(t, "completed")].json["data"]["meta"]["started_at"]) for t in task_ids]
    out.write(f"\ntask run time (meta.ended_at - meta.started_at): p50 {percentile(runs, 50) * 1000:.1f} ms\n")
    counts = Counter(per_task[t] for t in task_ids)
    statuses = Counter(a.json["data"]["status"] for a in hooks)
    out.write(
        "deliveries per task: "
        + ", ".join(f"{n} for {c} tasks" for n, c in sorted(counts.items()))
        + f"; by status: {dict(sorted(statuses.items()))}\n"
    )
    repeats = sum(c - 1 for c in ids.values())
    bad = sum(not signed_ok(a) for a in hooks)
    out.write(f"repeated webhook-ids: {repeats}; bad signatures: {bad}\n")
    return out.getvalue()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tasks", type=int, default=200)
    ap.add_argument("--concurrency", type=int, default=8, help="client threads creating tasks")
    ap.add_argument("--one-at-a-time", action="store_true", help="wait for each completed webhook before the next")
    ap.add_argument("--workers", type=int, default=2, help="genmill serve --workers")
    ap.add_argument("--warmup", type=int, default=2, help="tasks run one at a time first and not counted")
    ap.add_argument("--timeout", type=float, default=600, help="seconds to wait for every completed webhook")
    ap.add_argument("--baseline", type=int, default=200, help="loopback POSTs for each baseline")
    args = ap.parse_args()
    data = Path(tempfile.mkdtemp(prefix="genmill-bench-"))
    try:
        with run_receiver() as receiver, run_server(data, args.workers) as (url, key):
            hook = receiver.url + HOOK_PATH

            def run(n: int, concurrency: int) -> list[str]:
                ids = create_tasks(url, key, hook, n, concurrency)
                missing = receiver.wait_completed(set(ids), args.timeout)
                if missing:
                    with httpx.Client(timeout=60) as client:
                        seen = Counter(
                            client.get(f"{url}/api/v1/task/{t}", headers={"X-API-Key": key}).json()["data"]["status"]
                            for t in missing
                        )
                    log = (data / "server.log").read_text(errors="replace")[-3000:]
                    raise SystemExit(
                        f"FAILED: {len(missing)} of {len(ids)} tasks had no completed webhook after "
                        f"{args.timeout:g} s; their statuses now: {dict(seen)}\n{log}"
                    )
                return ids

            for _ in range(args.warmup):
                run(1, 1)
            started = time.time()
            if args.one_at_a_time:
                task_ids = [t for _ in range(args.tasks) for t in run(1, 1)]
            else:
                task_ids = run(args.tasks, args.concurrency)
            elapsed = time.time() - started
            time.sleep(0.5)  # let any trailing duplicate arrive before counting
            hooks = receiver.on(HOOK_PATH)
            listed = dispatcher_view(url, key, task_ids)
            sample = next(a.body for a in hooks if a.json["data"]["status"] == "completed")
            base = baseline(receiver, sample, args.baseline, like_dispatcher=False)
            httpx_base = baseline(receiver, sample, args.baseline, like_dispatcher=True)
        print(report(task_ids, hooks, listed, base, httpx_base, elapsed), end="")
        return 0
    finally:
        shutil.rmtree(data, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
