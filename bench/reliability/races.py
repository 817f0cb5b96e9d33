"""Concurrent races on money: many creates for too few credits, and cancels racing the workers' claims.

- **Overspend**: an account holds credits for `overspend_affordable` echo tasks; `overspend_creates` threads,
  released together by a barrier, each create one. Exactly the affordable number must be accepted (200) and the
  rest refused with 402; nothing may go negative.
- **Cancel vs claim**: client threads create echo tasks and cancel each one at once, while the remote workers
  claim them. Each task must end exactly one way: a cancel that answered 200 leaves it cancelled and never
  billed; a refused cancel (400: it was already claimed) leaves it to complete and be billed once.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

from bench.reliability.client import Tally
from bench.reliability.deployment import ECHO_PRICE, Deployment
from bench.reliability.scenario import Row, RunContext

ECHO = {"model": "genmill/echo", "task_type": "echo", "input": {}}


def run_overspend(ctx: RunContext, dep: Deployment) -> Row:
    row = Row.begin("overspend race", dep.engine)
    creates, affordable = ctx.sizes.overspend_creates, ctx.sizes.overspend_affordable
    tally = Tally()
    client = dep.client(tally)
    account = dep.new_account("overspend", credits=affordable * ECHO_PRICE)
    barrier = threading.Barrier(creates)

    def create(_: int) -> tuple[int, str]:
        barrier.wait(60)
        answer = client.send("POST", "/api/v1/task", account.key, ECHO)
        return answer.status, str(answer.data()["task_id"]) if answer.status == 200 else ""

    with ThreadPoolExecutor(creates) as pool:
        answers = list(pool.map(create, range(creates)))
    accepted = [task_id for status, task_id in answers if status == 200]
    refused = sum(1 for status, _ in answers if status == 402)
    other = sorted({status for status, _ in answers if status not in (200, 402)})
    if len(accepted) != affordable:
        row.fail(f"{len(accepted)} creates accepted for {affordable} tasks' worth of credits")
    if other:
        row.fail(f"answers other than 200 and 402: {other}")
    result = dep.settle_and_audit(accepted, accounts=[account.account_id])
    with dep.store() as store:
        balances = store.accounts.get(account.account_id).balances
    if balances.available < 0 or balances.used > affordable * ECHO_PRICE:
        row.fail(f"balances went past the credits: {balances}")
    row.load = f"{creates} concurrent creates, credits for {affordable}"
    row.notes.append(f"accepted {len(accepted)}, refused with 402: {refused}")
    row.finish(tally, result)
    return row


def run_cancel_race(ctx: RunContext, dep: Deployment) -> Row:
    row = Row.begin("cancel vs claim race", dep.engine)
    count = ctx.sizes.race_tasks
    tally = Tally()
    client = dep.client(tally)
    account = dep.new_account("cancel-race", credits=count * ECHO_PRICE * 2)

    def create_then_cancel(index: int) -> tuple[str, int]:
        body = {**ECHO, "input": {"sleep_ms": index % 3 * 20}}
        created = client.send("POST", "/api/v1/task", account.key, body)
        if created.status != 200:
            return "", created.status
        task_id = str(created.data()["task_id"])
        cancel = client.send("DELETE", f"/api/v1/task/{task_id}", account.key)
        return task_id, cancel.status

    with ThreadPoolExecutor(8) as pool:
        outcomes = list(pool.map(create_then_cancel, range(count)))
    acknowledged = [task_id for task_id, _ in outcomes if task_id]
    result = dep.settle_and_audit(acknowledged, accounts=[account.account_id])
    status_of = {task_id: row.status for task_id, row in dep.tasks_of(account.account_id).items()}
    cancelled_ok = [t for t, status in outcomes if t and status == 200]
    refused = [t for t, status in outcomes if t and status == 400]
    odd = sorted({status for t, status in outcomes if status not in (200, 400)})
    wrong = [t for t in cancelled_ok if status_of.get(t) != "cancelled"]
    wrong += [t for t in refused if status_of.get(t) != "completed"]
    if wrong:
        row.fail(f"{len(wrong)} tasks ended otherwise than their cancel answer said ({', '.join(wrong[:3])})")
    if odd:
        row.fail(f"create or cancel answered {odd}")
    row.load = f"{count} creates, each cancelled at once, 8 clients, a worker with 2 slots claiming"
    row.faults = "cancel racing claim"
    row.notes.append(f"cancelled {len(cancelled_ok)}, cancel refused (already claimed) {len(refused)}")
    row.finish(tally, result)
    return row
