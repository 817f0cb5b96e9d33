"""Operations on an earlier task (`origin_task_id`) through the HTTP API, on SQLite and PostgreSQL.

`genmill/echo` `echo-derive` stands for every derived operation (Midjourney upscale, Kling extend_video, ...): it is
accepted within 3 hours of its origin's creation (3 days on the account's private pool), only for the account's
own completed task of the right model; each refusal is a 400 naming `input.origin_task_id` with nothing stored and
no credit moved. Time is stepped on the store's `ManualClock`, the clock that stamps `created_at`.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from tests.support import PillowUpscale, png_bytes

from genmill.app import Runtime, create_app
from genmill.domain.clock import ManualClock
from genmill.domain.ledger import Balances
from genmill.domain.states import TaskStatus
from genmill.models.echo.backend import EchoBackend
from genmill.settings import Settings
from genmill.store import Store
from genmill.store.migrate import upgrade
from genmill.store.tables import metadata

PRICE = 5
CREDITS = 100_000
ECHO = {"model": "genmill/echo", "task_type": "echo"}
DERIVE = {"model": "genmill/echo", "task_type": "echo-derive"}
HOUR = 3600.0


@dataclass
class Deployment:
    client: TestClient
    runtime: Runtime
    clock: ManualClock
    key: str
    other_key: str
    account_id: str

    def post(self, body: dict[str, Any], key: str | None = None) -> Any:
        return self.client.post("/api/v1/task", headers={"X-API-Key": key or self.key}, json=body)

    def create(self, body: dict[str, Any], key: str | None = None) -> str:
        answer = self.post(body, key)
        assert answer.status_code == 200, answer.text
        return str(answer.json()["data"]["task_id"])

    def completed_echo(self, key: str | None = None) -> str:
        task_id = self.create({**ECHO, "input": {"payload": {"n": 1}}}, key)
        assert self.runtime.workers[0].run_once()
        assert self.runtime.store.tasks.get_any(task_id).status is TaskStatus.COMPLETED
        return task_id

    def derive(self, origin_id: str, *, private: bool = False, key: str | None = None) -> Any:
        config = {"service_mode": "private"} if private else {}
        return self.post({**DERIVE, "input": {"origin_task_id": origin_id, "payload": "d"}, "config": config}, key)

    def serve_private_pool(self) -> None:
        """Register a remote worker of the account's private pool (now, by the store's clock)."""
        token, _ = self.runtime.store.workers.create_token("private", self.account_id)
        answer = self.client.post(
            "/api/v1/workers/register",
            headers={"Authorization": f"Bearer {token}"},
            json={"name": "private", "capabilities": [ECHO, DERIVE]},
        )
        assert answer.status_code == 200, answer.text

    def task_count(self) -> int:
        with self.runtime.store.engine.connect() as conn:
            return int(conn.execute(sa.text("SELECT count(*) FROM tasks")).scalar_one())

    def balances(self) -> Balances:
        return self.runtime.store.accounts.get(self.account_id).balances

    def assert_refused(self, answer: Any, rule: str) -> None:
        """A 400 naming the field and the rule, with nothing stored and no credit moved by it."""
        assert answer.status_code == 400, answer.text
        body = answer.json()
        assert body["data"] is None
        assert body["message"] == f"input.origin_task_id: {rule}"
        assert body["detail"] == {"field": "input.origin_task_id", "rule": rule}


def _truncate(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        for table in reversed(metadata.sorted_tables):
            conn.execute(table.delete())


@pytest.fixture(params=["sqlite", "postgres"])
def deployment(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Deployment]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'genmill.db'}"
        upgrade(url)
    else:
        url = request.getfixturevalue("pg_url")
    clock = ManualClock()
    store = Store.from_url(url, clock=clock)
    _truncate(store.engine)
    settings = Settings(data_dir=tmp_path / "data", public_url="http://testserver", workers=1, echo_price_credits=PRICE)
    runtime = Runtime(settings, store=store, backends=[EchoBackend(), PillowUpscale()])
    account = store.accounts.create_account("one", credits=CREDITS)
    key, _ = store.accounts.create_key(account.account_id, "k1")
    other = store.accounts.create_account("two", credits=CREDITS)
    other_key, _ = store.accounts.create_key(other.account_id, "k2")
    with TestClient(create_app(settings, runtime=runtime, run_workers=False)) as client:
        yield Deployment(client, runtime, clock, key, other_key, account.account_id)
    _truncate(store.engine)
    runtime.store.close()


def test_an_operation_within_the_window_runs_on_what_the_origin_made(deployment: Deployment) -> None:
    origin_id = deployment.completed_echo()
    deployment.clock.advance(3 * HOUR - 1)
    answer = deployment.derive(origin_id)
    assert answer.status_code == 200, answer.text
    task_id = answer.json()["data"]["task_id"]
    assert deployment.runtime.workers[0].run_once()
    done = deployment.client.get(f"/api/v1/task/{task_id}", headers={"X-API-Key": deployment.key}).json()["data"]
    assert done["status"] == "completed", done["error"]
    assert done["input"]["origin_task_id"] == origin_id
    seen = done["output"]["origin"]
    assert (seen["task_id"], seen["model"], seen["task_type"]) == (origin_id, "genmill/echo", "echo")
    assert seen["output"]["echo"] == {"n": 1}
    assert deployment.balances() == Balances(CREDITS - 2 * PRICE, 0, 2 * PRICE)


def test_after_three_hours_only_the_private_pool_accepts_it_until_three_days(deployment: Deployment) -> None:
    origin_id = deployment.completed_echo()
    deployment.clock.advance(3 * HOUR + 36)
    tasks, balances = deployment.task_count(), deployment.balances()
    deployment.assert_refused(
        deployment.derive(origin_id),
        f"task {origin_id} was created 3.0 hours ago; operations on an earlier task are accepted within 3 hours "
        "of its creation (3 days on the account's private pool)",
    )
    assert deployment.task_count() == tasks and deployment.balances() == balances

    deployment.serve_private_pool()
    private = deployment.derive(origin_id, private=True)
    assert private.status_code == 200, private.text
    deployment.clock.advance(69 * HOUR - 36)  # exactly 3 days after the origin was created
    deployment.serve_private_pool()
    assert deployment.derive(origin_id, private=True).status_code == 200
    deployment.clock.advance(HOUR)
    deployment.serve_private_pool()
    tasks = deployment.task_count()
    deployment.assert_refused(
        deployment.derive(origin_id, private=True),
        f"task {origin_id} was created 73.0 hours ago; operations on an earlier task are accepted within 3 days "
        "of its creation on the account's private pool",
    )
    assert deployment.task_count() == tasks and deployment.balances() == balances


def test_another_accounts_task_is_refused_like_one_that_does_not_exist(deployment: Deployment) -> None:
    theirs = deployment.completed_echo(key=deployment.other_key)
    tasks, balances = deployment.task_count(), deployment.balances()
    deployment.assert_refused(deployment.derive(theirs), f"no task {theirs} found for this account")
    unknown = "00000000-0000-4000-8000-000000000000"
    deployment.assert_refused(deployment.derive(unknown), f"no task {unknown} found for this account")
    assert deployment.task_count() == tasks and deployment.balances() == balances
    # The owner may use it.
    assert deployment.derive(theirs, key=deployment.other_key).status_code == 200


def test_an_origin_that_is_not_completed_is_refused_naming_its_status(deployment: Deployment) -> None:
    pending = deployment.create({**ECHO, "input": {}})
    deployment.assert_refused(
        deployment.derive(pending), f"task {pending} is pending; only a completed task can be worked on"
    )
    claim = deployment.runtime.store.leases.claim_next_task("w", [("genmill/echo", "echo")], 30)
    assert claim is not None and claim.task.task_id == pending
    deployment.assert_refused(
        deployment.derive(pending), f"task {pending} is processing; only a completed task can be worked on"
    )
    error = {"code": 10000, "message": "broke", "raw_message": "broke", "detail": None}
    deployment.runtime.store.leases.fail(pending, claim.lease_id, error)
    tasks, balances = deployment.task_count(), deployment.balances()
    deployment.assert_refused(
        deployment.derive(pending), f"task {pending} is failed; only a completed task can be worked on"
    )
    assert deployment.task_count() == tasks and deployment.balances() == balances


def test_an_origin_of_another_model_is_refused(deployment: Deployment) -> None:
    image = png_bytes(4, 4)
    upscale = deployment.create(
        {"model": "Qubico/image-toolkit", "task_type": "upscale", "input": {"image": base64.b64encode(image).decode()}}
    )
    assert deployment.runtime.workers[0].run_once()
    deployment.assert_refused(
        deployment.derive(upscale),
        f"task {upscale} is of model Qubico/image-toolkit; this operation works on genmill/echo",
    )


def test_an_operation_on_an_operation_is_accepted_when_the_entry_says_so(deployment: Deployment) -> None:
    origin_id = deployment.completed_echo()
    first = deployment.derive(origin_id).json()["data"]["task_id"]
    assert deployment.runtime.workers[0].run_once()
    answer = deployment.derive(first)
    assert answer.status_code == 200, answer.text


def test_a_repeat_under_its_idempotency_key_answers_the_task_it_made_after_the_window(deployment: Deployment) -> None:
    """What the client was told once stays true: a retried request answers its first task, even though a new
    request with the same body would now be refused (the origin has left its window)."""
    origin = deployment.completed_echo()
    body = {**DERIVE, "input": {"origin_task_id": origin, "payload": "d"}}
    headers = {"X-API-Key": deployment.key, "Idempotency-Key": "retry-1"}
    first = deployment.client.post("/api/v1/task", headers=headers, json=body)
    assert first.status_code == 200, first.text
    deployment.clock.advance(3 * HOUR + 1)
    tasks_before = deployment.task_count()
    again = deployment.client.post("/api/v1/task", headers=headers, json=body)
    assert again.status_code == 200, again.text
    assert again.json()["data"]["task_id"] == first.json()["data"]["task_id"]
    assert deployment.task_count() == tasks_before
    fresh = deployment.post(body)
    assert fresh.status_code == 400 and "input.origin_task_id" in fresh.json()["message"]
