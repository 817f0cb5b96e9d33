"""The cross-account access matrix: account B (its API key, and a worker token of B's private pool) against
everything of account A's it could name.

A has a completed task with webhook deliveries, a processing task (holding a lease) and a staged one (A may run
one task at a time), and an uploaded file. B tries every task route on each of A's tasks (404 expected, and
nothing of A's may change), replays A's delivery through its own task, lists its history and active tasks (A's
ids must not appear), cancels everything it has (A's staged task must stay staged), drives the worker routes on
A's leased task with A's real lease id (404 or 409), and asks `/files/` for keys near A's file and for paths
outside the store (404). File URLs themselves are capabilities (docs/storage.md): A's own URL is not a check.
"""

from __future__ import annotations

import base64
import io
import time
from dataclasses import dataclass

from PIL import Image
from tests.receiver import run_receiver

from bench.reliability.client import Client, Tally
from bench.reliability.deployment import Deployment
from bench.reliability.scenario import Row, RunContext

NOT_FOUND = frozenset({404})
REFUSED = frozenset({404, 409})
UNAUTHORIZED = frozenset({401})


@dataclass
class Check:
    label: str
    method: str
    path: str
    expected: frozenset[int]
    key: str | None = None
    body: object = None
    headers: dict[str, str] | None = None


def echo(sleep_ms: int = 0, hook: str = "") -> dict[str, object]:
    body: dict[str, object] = {"model": "genmill/echo", "task_type": "echo", "input": {"sleep_ms": sleep_ms}}
    if hook:
        body["config"] = {"webhook_config": {"endpoint": hook, "secret": "s"}}
    return body


def tiny_png() -> str:
    buf = io.BytesIO()
    Image.new("RGB", (4, 4), (10, 200, 30)).save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode()


def _created(client: Client, key: str, body: dict[str, object], wait: bool = False) -> str:
    answer = client.send("POST", "/api/v1/task", key, body, headers={"Prefer": "wait=30"} if wait else None)
    if answer.status != 200:
        raise RuntimeError(f"create answered {answer.status}: {answer.body[:200]!r}")
    return str(answer.data()["task_id"])


def run_access(ctx: RunContext, dep: Deployment) -> Row:
    row = Row.begin("cross-account matrix", dep.engine)
    tally = Tally()
    client = dep.client(tally)
    a = dep.new_account("access-a", credits=10**9, max_concurrency=1)
    b = dep.new_account("access-b", credits=10**9)
    with dep.store() as store:
        b_token, _ = store.workers.create_token("access-b-pool", b.account_id)
    with run_receiver() as receiver:
        done = _created(client, a.key, echo(hook=receiver.url), wait=True)
        running = _created(client, a.key, echo(sleep_ms=4000))
        staged = _created(client, a.key, echo())
        own = _created(client, b.key, echo(hook=receiver.url), wait=True)
        receiver.wait_for(3, timeout=30)
    a_task_ids = [done, running, staged]
    deliveries = client.send("GET", f"/api/v1/task/{done}/webhooks", a.key).data()["deliveries"]
    delivery = deliveries[0]["delivery_id"] if deliveries else "none"
    upload = client.send("POST", "/api/ephemeral_resource", a.key, {"file_name": "a.png", "file_data": tiny_png()})
    file_key = str(upload.data()["url"]).split("/files/", 1)[1]
    lease = _lease_of(dep, a.account_id, running)

    checks: list[Check] = []
    for task_id in a_task_ids:
        checks += [
            Check("get", "GET", f"/api/v1/task/{task_id}", NOT_FOUND),
            Check("events", "GET", f"/api/v1/task/{task_id}/events", NOT_FOUND),
            Check("delete", "DELETE", f"/api/v1/task/{task_id}", NOT_FOUND),
            Check("cancel", "POST", f"/api/v1/task/{task_id}/cancel", NOT_FOUND),
            Check("webhooks", "GET", f"/api/v1/task/{task_id}/webhooks", NOT_FOUND),
            Check("replay", "POST", f"/api/v1/task/{task_id}/webhooks/{delivery}/replay", NOT_FOUND),
            Check("get without key", "GET", f"/api/v1/task/{task_id}", UNAUTHORIZED, key=""),
            Check("get with a made-up key", "GET", f"/api/v1/task/{task_id}", UNAUTHORIZED, key="gm_" + "x" * 43),
        ]
    checks.append(
        Check("replay A's delivery via B's task", "POST", f"/api/v1/task/{own}/webhooks/{delivery}/replay", NOT_FOUND)
    )
    near = file_key[:-5] + ("b" if file_key[-5] != "b" else "c") + file_key[-4:]
    for label, path in (
        ("file key one character off", f"/files/{near}"),
        ("file key of another folder", f"/files/outputs/{file_key.split('/', 1)[-1]}"),
        ("file path ../", "/files/..%2fgenmill.db"),
        ("file path %2e%2e", "/files/%2e%2e/%2e%2e/genmill.db"),
        ("file path absolute", "/files/%2fetc%2fpasswd"),
    ):
        checks.append(Check(label, "GET", path, NOT_FOUND, key=""))
    bearer = {"Authorization": f"Bearer {b_token}"}
    registered = client.send(
        "POST",
        "/api/v1/workers/register",
        body={"name": "b-pool", "capabilities": [{"model": "genmill/echo", "task_type": "echo"}]},
        headers=bearer,
    )
    worker_id = (registered.json() or {}).get("worker_id", "none")
    lease_body = {"lease_id": lease, "logs": ["from B"]}
    for label, path, body in (
        ("heartbeat", f"/api/v1/workers/tasks/{running}/heartbeat", lease_body),
        ("complete", f"/api/v1/workers/tasks/{running}/complete", {**lease_body, "output": {"x": 1}}),
        ("fail", f"/api/v1/workers/tasks/{running}/fail", {**lease_body, "error": {"message": "B"}}),
        ("input", f"/api/v1/workers/tasks/{running}/input", {"lease_id": lease, "ref": "x", "field": "image"}),
    ):
        checks.append(Check(f"B's worker: {label}", "POST", path, REFUSED, key="", body=body, headers=bearer))
    checks.append(
        Check(
            "B's worker: output",
            "PUT",
            f"/api/v1/workers/tasks/{running}/outputs?lease_id={lease}&ext=png&content_type=image/png",
            REFUSED,
            key="",
            headers=bearer,
        )
    )

    for check in checks:
        key = b.key if check.key is None else (check.key or None)
        answer = client.send(check.method, check.path, key, check.body, headers=check.headers, timeout=30)
        if answer.status not in check.expected:
            row.fail(
                f"{check.label} {check.method} {check.path.split('?')[0]}: {answer.status}, "
                f"expected {'/'.join(map(str, sorted(check.expected)))}"
            )
    claim = client.send(
        "POST", "/api/v1/workers/claim", body={"worker_id": worker_id, "wait_seconds": 0}, headers=bearer
    )
    if claim.status != 200 or (claim.json() or {}).get("task") is not None:
        row.fail(f"B's private worker claimed: {claim.status} {claim.body[:120]!r}")
    listings = [
        client.send("GET", "/api/open/tasks/histories?page_size=100", b.key),
        client.send("GET", "/account/active_tasks", b.key),
        client.send("DELETE", f"/api/v1/tasks?created_before={int(time.time()) + 3600}", b.key),
    ]
    for answer in listings:
        if answer.status != 200 or any(t.encode() in answer.body for t in a_task_ids):
            row.fail(f"a listing for B answered {answer.status} or named A's tasks: {answer.body[:120]!r}")
    states = {t: client.send("GET", f"/api/v1/task/{t}", a.key).data()["status"] for t in a_task_ids}
    if states[done] != "completed" or states[running] in ("cancelled", "failed") or states[staged] == "cancelled":
        row.fail(f"B changed A's tasks: {states}")

    client.send("DELETE", f"/api/v1/tasks?created_before={int(time.time()) + 3600}", a.key)
    result = dep.settle_and_audit([*a_task_ids, own], accounts=[a.account_id, b.account_id])
    row.load = f"{len(checks) + 1 + len(listings)} checks of B against A's 3 tasks, delivery, file and lease"
    row.bad_inputs = "B's key, B's private worker token, no key, a made-up key, file keys near A's, ../ paths"
    row.finish(tally, result)
    return row


def _lease_of(dep: Deployment, account_id: str, task_id: str, timeout_s: float = 30) -> str:
    """The lease id of a task once a worker holds it (what B would present if it had leaked)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        row = dep.tasks_of(account_id).get(task_id)
        if row is not None and row.lease_id:
            return row.lease_id
        time.sleep(0.05)
    raise RuntimeError(f"task {task_id} was never claimed")
