"""Limits on use through the API: per-key rates (429 with `Retry-After`, per key), the stored size of a task's
input, the free-task rate and open streams per account, and one shared feed for every watcher of a task.

Rates here refill so slowly (one token in 1,000 s) that no test depends on how fast it runs.
"""

from __future__ import annotations

import base64
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import pytest
from fastapi.testclient import TestClient
from tests.support import PillowUpscale, png_bytes

from genmill.app import Runtime, create_app
from genmill.models.echo.backend import EchoBackend
from genmill.settings import Settings

SLOW = 0.001
"""Tokens per second: a bucket emptied in a test stays empty for the rest of it."""
DEADLINE = 60.0


class Response(Protocol):
    """What the tests read of an answer (the test client's response class comes from httpx or httpx2)."""

    @property
    def status_code(self) -> int: ...

    @property
    def headers(self) -> Mapping[str, str]: ...

    @property
    def text(self) -> str: ...

    def json(self) -> Any: ...


@dataclass
class Api:
    http: TestClient
    runtime: Runtime
    key: str
    key2: str
    other_key: str
    account_id: str
    upscaler: PillowUpscale

    def h(self, key: str | None = None, **extra: str) -> dict[str, str]:
        return {"X-API-Key": key or self.key, **extra}

    def history_total(self, key: str | None = None) -> int:
        total: int = self.http.get("/api/open/tasks/histories", headers=self.h(key)).json()["data"]["total"]
        return total


def upscale() -> dict[str, Any]:
    image = base64.b64encode(png_bytes(6, 4)).decode()
    return {"model": "Qubico/image-toolkit", "task_type": "upscale", "input": {"image": image, "scale": 2}}


def echo(payload: Any = "hi") -> dict[str, Any]:
    return {"model": "genmill/echo", "task_type": "echo", "input": {"payload": payload}}


def make_api(tmp_path: Path, **limits: Any) -> Iterator[Api]:
    settings = Settings(data_dir=tmp_path, public_url="http://testserver", workers=1, heartbeat_seconds=0.2, **limits)
    upscaler = PillowUpscale()
    runtime = Runtime(settings, backends=[upscaler, EchoBackend()])
    account = runtime.store.accounts.create_account("one", credits=10**9, max_concurrency=50)
    key, _ = runtime.store.accounts.create_key(account.account_id, "first")
    key2, _ = runtime.store.accounts.create_key(account.account_id, "second")
    other = runtime.store.accounts.create_account("two", credits=10**9)
    other_key, _ = runtime.store.accounts.create_key(other.account_id)
    with TestClient(create_app(settings, runtime=runtime)) as client:
        yield Api(client, runtime, key, key2, other_key, account.account_id, upscaler)
        upscaler.gate.set()
    runtime.store.close()


@pytest.fixture
def api(tmp_path: Path) -> Iterator[Api]:
    yield from make_api(
        tmp_path,
        rate_limit_reads_per_second=SLOW,
        rate_limit_reads_burst=5,
        rate_limit_creates_per_second=SLOW,
        rate_limit_creates_burst=3,
        free_tasks_per_second=SLOW,
        free_tasks_burst=2,
        max_task_input_bytes=10_000,
    )


def assert_rate_limited(r: Response, limit: str) -> None:
    assert r.status_code == 429, r.text
    assert int(r.headers["Retry-After"]) >= 1
    body = r.json()
    assert body["code"] == 429 and body["data"] is None and body["detail"]["limit"] == limit, body


def test_reads_past_the_burst_get_429_with_retry_after_and_other_keys_do_not(api: Api) -> None:
    for _ in range(5):
        assert api.http.get("/account/info", headers=api.h()).status_code == 200
    refused = api.http.get("/account/info", headers=api.h())
    assert_rate_limited(refused, "requests")
    assert "per API key" in refused.json()["message"]
    assert api.http.get("/api/v1/task/nope", headers=api.h()).status_code == 429
    assert api.http.get("/account/info", headers=api.h(api.key2)).status_code == 200  # the same account's other key
    assert api.http.get("/account/info", headers=api.h(api.other_key)).status_code == 200
    assert api.http.post("/api/v1/task", headers=api.h(), json=upscale()).status_code == 200  # creates: own bucket
    assert api.http.get("/account/info", headers={"X-API-Key": "gm_not_a_key"}).status_code == 401


def test_creates_past_the_burst_get_429_and_store_nothing(api: Api) -> None:
    for _ in range(3):
        assert api.http.post("/api/v1/task", headers=api.h(), json=upscale()).status_code == 200
    assert_rate_limited(api.http.post("/api/v1/task", headers=api.h(), json=upscale()), "task creates and uploads")
    upload = {"file_name": "a.png", "file_data": base64.b64encode(png_bytes(4, 4)).decode()}
    assert_rate_limited(
        api.http.post("/api/ephemeral_resource", headers=api.h(), json=upload), "task creates and uploads"
    )
    assert api.history_total() == 3
    assert api.http.post("/api/v1/task", headers=api.h(api.other_key), json=upscale()).status_code == 200


def test_an_input_over_the_size_limit_is_a_413_naming_input_and_stores_nothing(api: Api) -> None:
    before = api.http.get("/account/info", headers=api.h()).json()["data"]["credit_pack_info"]
    r = api.http.post("/api/v1/task", headers=api.h(), json=echo("x" * 20_000))
    assert r.status_code == 413 and r.json()["code"] == 413, r.text
    assert r.json()["message"].startswith("input: ") and r.json()["detail"]["limit"] == 10_000
    assert api.history_total() == 0
    assert api.http.get("/account/info", headers=api.h()).json()["data"]["credit_pack_info"] == before
    assert api.http.post("/api/v1/task", headers=api.h(), json=echo("x" * 9_000)).status_code == 200


def test_free_tasks_are_limited_per_account_and_priced_tasks_are_not(api: Api) -> None:
    assert api.http.post("/api/v1/task", headers=api.h(), json=echo()).status_code == 200
    assert api.http.post("/api/v1/task", headers=api.h(api.key2), json=echo()).status_code == 200
    refused = api.http.post("/api/v1/task", headers=api.h(api.key2), json=echo())  # the account's, not the key's
    assert_rate_limited(refused, "free tasks")
    assert "per account" in refused.json()["message"]
    assert api.http.post("/api/v1/task", headers=api.h(api.key2), json=upscale()).status_code == 200
    assert api.http.post("/api/v1/task", headers=api.h(api.other_key), json=echo()).status_code == 200
    assert api.history_total() == 3


def in_thread(call: Callable[[], Response]) -> tuple[threading.Thread, list[Response]]:
    answers: list[Response] = []
    thread = threading.Thread(target=lambda: answers.append(call()), daemon=True)
    thread.start()
    return thread, answers


def wait_until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + DEADLINE
    while not condition():
        assert time.monotonic() < deadline, f"gave up waiting: {what}"
        time.sleep(0.02)


@pytest.fixture
def one_stream(tmp_path: Path) -> Iterator[Api]:
    yield from make_api(tmp_path, max_streams_per_account=1)


def test_streams_beyond_the_account_limit_get_429_and_a_slot_frees_when_its_stream_ends(one_stream: Api) -> None:
    api = one_stream
    api.upscaler.gate.clear()
    task_id = api.http.post("/api/v1/task", headers=api.h(), json=upscale()).json()["data"]["task_id"]
    waiter, answers = in_thread(lambda: api.http.get(f"/api/v1/task/{task_id}", headers=api.h(Prefer="wait=50")))
    streams = api.runtime.quotas.streams
    wait_until(lambda: streams.open_count(api.account_id) == 1, "the wait holds the account's stream")
    assert_rate_limited(api.http.get(f"/api/v1/task/{task_id}/events", headers=api.h()), "streams")
    assert_rate_limited(api.http.get(f"/api/v1/task/{task_id}", headers=api.h(Prefer="wait=5")), "streams")
    assert_rate_limited(api.http.post("/api/v1/task", headers=api.h(Prefer="wait=5"), json=upscale()), "streams")
    assert api.history_total() == 1  # the refused create-and-wait created nothing
    assert api.http.get(f"/api/v1/task/{task_id}", headers=api.h()).status_code == 200  # no wait: no stream
    api.upscaler.gate.set()
    waiter.join(DEADLINE)
    assert answers[0].json()["data"]["status"] == "completed"
    assert answers[0].headers["Preference-Applied"] == "wait=50"
    wait_until(lambda: streams.open_count(api.account_id) == 0, "the finished wait gives its slot back")
    events = api.http.get(f"/api/v1/task/{task_id}/events", headers=api.h())
    assert events.status_code == 200 and "completed" in events.text
    wait_until(lambda: streams.open_count(api.account_id) == 0, "the finished stream gives its slot back")


@pytest.fixture
def many_streams(tmp_path: Path) -> Iterator[Api]:
    yield from make_api(tmp_path, rate_limit_reads_per_second=0, max_streams_per_account=0)


def test_many_streams_and_waits_on_one_task_all_get_the_completion_from_one_read(
    many_streams: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    api, streams, waits = many_streams, 30, 30
    api.upscaler.gate.clear()
    task_id = api.http.post("/api/v1/task", headers=api.h(), json=upscale()).json()["data"]["task_id"]
    reads = {"events_after": 0, "get": 0}
    engine = api.runtime.tasks
    for name in reads:
        original = getattr(engine, name)

        def counted(*args: Any, _name: str = name, _original: Any = original) -> Any:
            reads[_name] += 1
            return _original(*args)

        monkeypatch.setattr(engine, name, counted)
    watchers = [
        in_thread(lambda: api.http.get(f"/api/v1/task/{task_id}/events", headers=api.h())) for _ in range(streams)
    ]
    watchers += [
        in_thread(lambda: api.http.get(f"/api/v1/task/{task_id}", headers=api.h(Prefer="wait=55")))
        for _ in range(waits)
    ]
    feeds = api.runtime.feeds
    wait_until(lambda: feeds.watchers(task_id) == streams + waits, "every stream and wait follows the task")
    wait_until(lambda: reads["events_after"] >= streams, "every stream has read what happened before it came")
    wait_until(lambda: api.runtime.store.tasks.get_any(task_id).status.value == "processing", "the task runs")
    before = dict(reads)
    api.upscaler.gate.set()
    for thread, _ in watchers:
        thread.join(DEADLINE)
    answers = [answer for _, got in watchers for answer in got]
    assert len(answers) == streams + waits
    assert all(a.status_code == 200 for a in answers)
    for answer in answers[:streams]:
        assert answer.text.rstrip().rsplit("\n", 1)[-1].startswith("data: ") and '"status": "completed"' in answer.text
    completed = [a.json()["data"] for a in answers[streams:]]
    assert all(t["status"] == "completed" and t["output"]["image_url"] for t in completed)
    # The completion (and whatever progress came with it) was read once for all 60 watchers, not once each.
    assert reads["events_after"] - before["events_after"] <= 5, reads
    assert reads["get"] - before["get"] <= 1, reads
    wait_until(lambda: feeds.watchers(task_id) == 0, "the feed is dropped with its last watcher")
