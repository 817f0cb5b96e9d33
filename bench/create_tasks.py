"""Measure `genmill serve` start-up time and create-task throughput on this machine.

    .venv/bin/python bench/create_tasks.py [--requests 2000] [--clients 8]

Starts `genmill serve --no-workers` (with one registered remote worker that never claims) on a free port with a
fresh SQLite data folder, so the numbers are the API
and store alone (no model work). Throughput is reported next to `GET /healthz` measured in the same run, as a
baseline for what the HTTP stack alone does on this machine.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx

GENMILL = [sys.executable, "-m", "genmill.cli"]
TINY_PNG = base64.b64encode(
    bytes.fromhex(
        "89504e470d0a1a0a0000000d4948445200000001000000010802000000907753de0000000c4944415408d763f8cfc000"
        "00030101001bb6ee560000000049454e44ae426082"
    )
).decode()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def hammer(n: int, clients: int, do: Callable[[httpx.Client], int]) -> tuple[float, int]:
    """Run `n` requests over `clients` threads; returns (requests per second, failures)."""
    failures = 0
    lock = threading.Lock()
    per_client = n // clients

    def worker() -> None:
        nonlocal failures
        with httpx.Client(timeout=60) as client:
            for _ in range(per_client):
                if do(client) != 200:
                    with lock:
                        failures += 1

    threads = [threading.Thread(target=worker) for _ in range(clients)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return per_client * clients / (time.perf_counter() - started), failures


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=2000)
    ap.add_argument("--clients", type=int, default=8)
    args = ap.parse_args()
    data = Path(tempfile.mkdtemp(prefix="genmill-bench-"))
    # One key creates far past the per-key rate limits here, on purpose: they are off.
    env = {
        **os.environ,
        "GENMILL_DATA_DIR": str(data),
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
    token = (
        subprocess.run(
            [*GENMILL, "workers", "token", "create", "--name", "bench"],
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
    started = time.perf_counter()
    proc = subprocess.Popen(
        [*GENMILL, "serve", "--port", str(port), "--no-workers", "--log-level", "warning"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        while True:
            if proc.poll() is not None:
                raise SystemExit("genmill serve exited during start-up")
            try:
                if httpx.get(url + "/healthz").status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.05)
        startup = time.perf_counter() - started
        # An API-only server accepts what its registered workers serve: register one that never claims, so the
        # created tasks simply queue up and the figures are the API and store alone.
        httpx.post(
            url + "/api/v1/workers/register",
            headers={"Authorization": f"Bearer {token}"},
            json={"name": "idle", "capabilities": [{"model": "Qubico/image-toolkit", "task_type": "upscale"}]},
        ).raise_for_status()
        body = json.dumps(
            {"model": "Qubico/image-toolkit", "task_type": "upscale", "input": {"image": TINY_PNG, "scale": 2}}
        )
        headers = {"X-API-Key": key, "Content-Type": "application/json"}
        health_rps, _ = hammer(args.requests, args.clients, lambda c: c.get(url + "/healthz").status_code)
        create_rps, failed = hammer(
            args.requests,
            args.clients,
            lambda c: c.post(url + "/api/v1/task", content=body, headers=headers).status_code,
        )
        get_rps, _ = hammer(
            args.requests, args.clients, lambda c: c.get(url + "/account/info", headers=headers).status_code
        )
    finally:
        proc.terminate()
        proc.wait(30)
    print(f"serve start-up to first /healthz answer: {startup:.2f} s")
    print(f"GET /healthz (baseline):   {health_rps:8.1f} req/s")
    print(
        f"POST /api/v1/task:         {create_rps:8.1f} req/s  "
        f"({create_rps / health_rps:.2f}x baseline, {failed} failed)"
    )
    print(f"GET /account/info:         {get_rps:8.1f} req/s  ({get_rps / health_rps:.2f}x baseline)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
