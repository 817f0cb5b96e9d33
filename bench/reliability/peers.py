"""Slow and dripping peers, and a connection flood: can one account's bad endpoints, or idle sockets, stall others?

- **Dripping webhook receiver**: account A's tasks post their webhooks to a receiver on 127.0.0.1 that accepts,
  reads the request, then sends its status line and headers one byte every `drip_interval_s`, never finishing.
  With every webhook sender busy on A, account B's `completed` webhook to a healthy receiver must still arrive
  within the webhook timeout (plus 5 s); the delay measured is its arrival minus the task's `ended_at`.
- **Dripping input URL**: with one in-process worker slot, A's upscale task reads its image from a URL that
  drips the same way. B's echo task, created next, must start within the fetch timeout (plus 5 s); after the
  observation window the dripping server is stopped so that everything can settle.
- **Connection flood**: `flood_idle` sockets that connect and say nothing, and `flood_slow` that send a request
  line and then a header byte every `drip_interval_s`, all held `flood_hold_s`; meanwhile a normal client must
  be served, and at the end the server should have closed the sockets it was never sent a request on.

These depend on fixes made beside the suite (outbound deadlines, server connection limits), so the tests do not
assert them; the command records what it measures.
"""

from __future__ import annotations

import contextlib
import select
import socket
import threading
import time
from collections.abc import Iterator
from datetime import datetime

from tests.receiver import run_receiver

from bench.reliability.access import echo
from bench.reliability.client import Tally
from bench.reliability.deployment import Deployment, database
from bench.reliability.scenario import Row, RunContext

SLACK_S = 5.0


class DrippingPeer:
    """An HTTP server on 127.0.0.1 that answers every request one byte per `interval` seconds, forever."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.listener.getsockname()[1])
        self.stopped = threading.Event()
        self.connections = 0
        self.sockets: list[socket.socket] = []
        self.lock = threading.Lock()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def _accept(self) -> None:
        self.listener.settimeout(0.2)
        while not self.stopped.is_set():
            try:
                conn, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with self.lock:
                self.connections += 1
                self.sockets.append(conn)
            threading.Thread(target=self._drip, args=(conn,), daemon=True).start()

    def _drip(self, conn: socket.socket) -> None:
        with contextlib.suppress(OSError):
            conn.settimeout(5)
            conn.recv(65536)  # the request head (and perhaps some body): never answered in full
            answer = b"HTTP/1.1 200 OK\r\n" + b"X-Drip: " + b"a" * 1_000_000
            for i in range(len(answer)):
                if self.stopped.wait(self.interval):
                    break
                conn.sendall(answer[i : i + 1])
        with contextlib.suppress(OSError):
            conn.close()

    def __enter__(self) -> DrippingPeer:
        threading.Thread(target=self._accept, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        """Close the listener and every connection: the peers' clients see the connection end."""
        self.stopped.set()
        self.listener.close()
        with self.lock:
            for conn in self.sockets:
                with contextlib.suppress(OSError):
                    conn.close()


def _seconds_between(start: str, end: str) -> float:
    return (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds()


def run_drip_webhook(ctx: RunContext, engine: str) -> Row:
    row = Row.begin("dripping webhook receiver", engine)
    sizes = ctx.sizes
    workdir = ctx.scratch(f"drip-webhook-{engine}")
    tally = Tally()
    env = {"GENMILL_WEBHOOK_TIMEOUT": str(sizes.outbound_timeout_s), "GENMILL_WEBHOOK_CONCURRENCY": "4"}
    with (
        database(engine, workdir) as url,
        Deployment(engine, url, workdir, env=env) as dep,
        DrippingPeer(sizes.drip_interval_s) as peer,
        run_receiver() as receiver,
    ):
        client = dep.client(tally)
        a = dep.new_account("drip-a", credits=10**9)
        b = dep.new_account("drip-b", credits=10**9)
        acknowledged = [
            str(client.send("POST", "/api/v1/task", a.key, echo(hook=peer.url(f"/hook{i}"))).data()["task_id"])
            for i in range(6)
        ]
        time.sleep(1)  # A's deliveries reach the senders first
        mine = str(client.send("POST", "/api/v1/task", b.key, echo(hook=receiver.url)).data()["task_id"])
        acknowledged.append(mine)
        got = receiver.wait_until(
            lambda seen: any(r.json["data"]["status"] == "completed" for r in seen), timeout=sizes.drip_window_s
        )
        arrived = time.time()
        completed = [r for r in got if r.json["data"]["status"] == "completed"]
        limit = sizes.outbound_timeout_s + SLACK_S
        if completed:
            ended = datetime.fromisoformat(completed[0].json["data"]["meta"]["ended_at"]).timestamp()
            delay = arrived - ended
            row.notes.append(f"B's completed webhook arrived {delay:.1f} s after its task ended (limit {limit:g} s)")
            if delay > limit:
                row.fail(
                    f"B's completed webhook came {delay:.1f} s after the task ended (webhook timeout "
                    f"{sizes.outbound_timeout_s:g} s)"
                )
        else:
            row.fail(f"B's completed webhook had not arrived {sizes.drip_window_s:g} s after its create")
        row.notes.append(f"the dripping receiver saw {peer.connections} connections")
        result = dep.settle_and_audit(acknowledged, accounts=[a.account_id, b.account_id])
    row.load = "6 tasks of A with webhooks to the dripping receiver, then 1 of B to a healthy one"
    row.faults = f"a receiver dripping its answer 1 byte / {sizes.drip_interval_s:g} s; 4 sender threads"
    row.finish(tally, result)
    return row


def run_drip_input(ctx: RunContext, engine: str) -> Row:
    row = Row.begin("dripping input URL", engine)
    sizes = ctx.sizes
    workdir = ctx.scratch(f"drip-input-{engine}")
    tally = Tally()
    env = {"GENMILL_BACKENDS": "echo,realesrgan-ncnn", "GENMILL_FETCH_TIMEOUT": str(sizes.outbound_timeout_s)}
    with (
        database(engine, workdir) as url,
        Deployment(engine, url, workdir, in_process_workers=1, env=env) as dep,
        DrippingPeer(sizes.drip_interval_s) as peer,
    ):
        client = dep.client(tally)
        models = client.send("GET", "/api/v1/models").data()["models"]
        if not any(
            m["model"] == "Qubico/image-toolkit" and m["task_type"] == "upscale" and m["available"] for m in models
        ):
            row.fail("not measured: Real-ESRGAN upscale is not available here (the cpu extra)")
            row.finish(tally, None)
            return row
        a = dep.new_account("drip-input-a", credits=10**12)
        b = dep.new_account("drip-input-b", credits=10**9)
        body = {
            "model": "Qubico/image-toolkit",
            "task_type": "upscale",
            "input": {"image": peer.url("/slow.png"), "scale": 2},
        }
        stuck = str(client.send("POST", "/api/v1/task", a.key, body).data()["task_id"])
        deadline = time.monotonic() + 60
        while peer.connections == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        other = str(client.send("POST", "/api/v1/task", b.key, echo()).data()["task_id"])
        began = time.monotonic()
        limit = sizes.outbound_timeout_s + SLACK_S
        status = "pending"
        while status == "pending" and time.monotonic() - began < sizes.drip_window_s:
            status = client.send("GET", f"/api/v1/task/{other}", b.key).data()["status"]
            time.sleep(0.2)
        waited = time.monotonic() - began
        if status == "pending":
            row.fail(
                f"B's echo task was still pending {waited:.0f} s after its create (fetch timeout "
                f"{sizes.outbound_timeout_s:g} s)"
            )
        else:
            row.notes.append(f"B's echo task left pending after {waited:.1f} s (limit {limit:g} s)")
            if waited > limit:
                row.fail(f"B's echo task waited {waited:.1f} s behind A's dripping input")
        peer.stop()
        result = dep.settle_and_audit([stuck, other], accounts=[a.account_id, b.account_id])
        ended = client.send("GET", f"/api/v1/task/{stuck}", a.key).data()
        row.notes.append(
            f"A's task ended {ended['status']} (error code {ended['error']['code']}), "
            f"{ended['meta']['usage']['consume']} credits consumed"
        )
    row.load = "1 upscale of A reading a dripping URL, then 1 echo of B, 1 worker slot"
    row.faults = f"an input URL dripping its answer 1 byte / {sizes.drip_interval_s:g} s"
    row.finish(tally, result)
    return row


def _closed_by_server(sock: socket.socket) -> bool:
    """True when the server closed (or answered and closed) this socket."""
    try:
        readable, _, _ = select.select([sock], [], [], 0)
        return bool(readable)  # readable: the end of the stream, or an answer (a 408, say)
    except OSError:
        return True


@contextlib.contextmanager
def flood(port: int, idle: int, slow: int, interval: float) -> Iterator[list[socket.socket]]:
    """`idle` silent connections and `slow` that send a header byte every `interval` (slow loris)."""
    idle_socks = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(idle)]
    slow_socks = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(slow)]
    stop = threading.Event()

    def drip() -> None:
        for s in slow_socks:
            with contextlib.suppress(OSError):
                s.sendall(b"GET /healthz HTTP/1.1\r\nHost: genmill\r\n")
        while not stop.wait(interval):
            for s in slow_socks:
                with contextlib.suppress(OSError):
                    s.sendall(b"X-a: b\r\n")

    dripper = threading.Thread(target=drip, daemon=True)
    dripper.start()
    try:
        yield idle_socks + slow_socks
    finally:
        stop.set()
        dripper.join(5)
        for s in idle_socks + slow_socks:
            with contextlib.suppress(OSError):
                s.close()


def run_flood(ctx: RunContext, engine: str) -> Row:
    row = Row.begin("connection flood", engine)
    sizes = ctx.sizes
    workdir = ctx.scratch(f"flood-{engine}")
    tally = Tally()
    with database(engine, workdir) as url, Deployment(engine, url, workdir) as dep:
        client = dep.client(tally)
        account = dep.new_account("flood", credits=10**9)
        acknowledged: list[str] = []
        with flood(dep.server.port, sizes.flood_idle, sizes.flood_slow, sizes.drip_interval_s) as socks:
            began = time.monotonic()
            slowest = 0.0
            while time.monotonic() - began < sizes.flood_hold_s:
                started = time.monotonic()
                try:
                    health = client.send("GET", "/healthz", timeout=30)
                    created = client.send(
                        "POST", "/api/v1/task", account.key, echo(), headers={"Prefer": "wait=20"}, timeout=30
                    )
                except OSError as exc:
                    row.fail(f"a normal client was not served during the flood: {type(exc).__name__}")
                    break
                if health.status != 200 or created.status != 200:
                    row.fail(f"during the flood /healthz answered {health.status}, a create {created.status}")
                    break
                acknowledged.append(str(created.data()["task_id"]))
                slowest = max(slowest, time.monotonic() - started)
                time.sleep(0.5)
            held = time.monotonic() - began
            still_open = [s for s in socks if not _closed_by_server(s)]
            idle_open = sum(1 for s in socks[: sizes.flood_idle] if s in still_open)
            row.notes.append(
                f"{len(acknowledged)} normal round trips during the flood, the slowest {slowest * 1000:.0f} ms"
            )
            row.notes.append(
                f"after {held:.0f} s {len(still_open)} of {len(socks)} flood sockets were still open "
                f"({idle_open} of {sizes.flood_idle} idle)"
            )
            if len(still_open) > len(socks) // 10:
                row.fail(f"{len(still_open)} of {len(socks)} idle and slow sockets still open after {held:.0f} s")
        result = dep.settle_and_audit(acknowledged, accounts=[account.account_id])
    row.load = f"{sizes.flood_idle} idle + {sizes.flood_slow} slow-header sockets for {sizes.flood_hold_s:g} s"
    row.faults = "connection flood, slow loris"
    row.finish(tally, result)
    return row
