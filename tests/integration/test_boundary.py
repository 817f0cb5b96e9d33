"""The API boundary on SQLite and PostgreSQL: what may not enter is a 400 naming the field and the rule with nothing
stored and no credits moved; a stored row never makes GET, history or a claim fail; an unavailable database is a
503 with Retry-After, one log line, and nothing half-written."""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from sqlalchemy.engine import make_url
from tests.tcp_proxy import TcpProxy

from genmill.app import Runtime, create_app
from genmill.backends.base import Backend, RunContext
from genmill.domain.catalog import CatalogEntry, TaskInput
from genmill.domain.ledger import Balances
from genmill.errors import DatabaseUnavailable
from genmill.models.echo.backend import EchoBackend
from genmill.settings import Settings
from genmill.store import Store
from genmill.store.migrate import upgrade
from genmill.store.tables import metadata

PRICE = 5
CREDITS = 1000
JSON = {"Content-Type": "application/json"}


class OddTextEcho(EchoBackend):
    """An echo whose output and log carry NUL and a lone surrogate, as a careless backend's might."""

    name = "odd-text-echo"

    def run(self, entry: CatalogEntry, inputs: TaskInput, ctx: RunContext) -> dict[str, Any]:
        ctx.log("a log line with NUL \x00 and a lone surrogate \udc00")
        return {"text": "nul \x00 surrogate \ud800", "score": float("nan"), "keys": {"k\x00": 1}}


@dataclass
class Served:
    """An app over a real database, driven in-process; `outage()` takes the database away and gives it back."""

    kind: str
    client: TestClient
    runtime: Runtime
    key: str
    account_id: str
    take_away: Any
    give_back: Any

    def h(self, **extra: str) -> dict[str, str]:
        return {"X-API-Key": self.key, **extra}

    def post(self, body: bytes | str, **headers: str) -> Any:
        content = body.encode() if isinstance(body, str) else body
        return self.client.post("/api/v1/task", content=content, headers=self.h(**JSON, **headers))

    def create(self, payload: Any = None, **headers: str) -> Any:
        body = {"model": "genmill/echo", "task_type": "echo", "input": {"payload": payload or {}}}
        return self.post(json.dumps(body), **headers)

    def balances(self) -> Balances:
        return self.runtime.store.accounts.get(self.account_id).balances

    def task_count(self) -> int:
        with self.runtime.store.engine.connect() as conn:
            return int(conn.execute(sa.text("SELECT count(*) FROM tasks")).scalar_one())

    def assert_nothing_stored(self) -> None:
        assert self.task_count() == 0
        assert self.balances() == Balances(CREDITS, 0, 0)


def _truncate(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        for table in reversed(metadata.sorted_tables):
            conn.execute(table.delete())


def _serve(url: str, tmp_path: Path, backends: list[Backend]) -> tuple[Runtime, TestClient, str, str]:
    settings = Settings(data_dir=tmp_path / "data", public_url="http://testserver", workers=1, echo_price_credits=PRICE)
    store = Store.from_url(url)
    _truncate(store.engine)
    runtime = Runtime(settings, store=store, backends=backends)
    account = runtime.store.accounts.create_account("one", credits=CREDITS)
    key, _ = runtime.store.accounts.create_key(account.account_id, "k")
    client = TestClient(create_app(settings, runtime=runtime, run_workers=False))
    return runtime, client, key, account.account_id


@pytest.fixture
def backends() -> list[Backend]:
    """What serves `genmill/echo`; a test parametrises it to run another backend."""
    return [EchoBackend()]


@pytest.fixture(params=["sqlite", "postgres"])
def served(request: pytest.FixtureRequest, tmp_path: Path, backends: list[Backend]) -> Iterator[Served]:
    """SQLite in a directory that can be moved away, or PostgreSQL behind a proxy that can be cut."""
    proxy: TcpProxy | None = None
    if request.param == "sqlite":
        folder = tmp_path / "db"
        url = f"sqlite:///{folder / 'genmill.db'}"
        upgrade(url)
        away = tmp_path / "db-away"
    else:
        real = make_url(request.getfixturevalue("pg_url"))
        proxy = TcpProxy(real.host or "127.0.0.1", real.port or 5432)
        proxy.start()
        url = real.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
    runtime, client, key, account_id = _serve(url, tmp_path, backends)

    def take_away() -> None:
        if proxy is not None:
            proxy.stop()
        else:
            runtime.store.engine.dispose()  # close the open files: new connections must open the moved path
            shutil.move(folder, away)

    def give_back() -> None:
        if proxy is not None:
            proxy.start()
        else:
            shutil.move(away, folder)

    with client:
        yield Served(request.param, client, runtime, key, account_id, take_away, give_back)
    if proxy is not None:
        proxy.stop()
    runtime.store.close()


def assert_refused(response: Any, field: str, rule: str) -> None:
    assert response.status_code == 400, response.text
    body = response.json()
    assert body["code"] == 400 and body["data"] is None
    assert body["detail"]["field"] == field
    assert rule in body["detail"]["rule"]
    assert f"{field}: " in body["message"]


# -- lone surrogates and NUL ------------------------------------------------------------------------------------

SURROGATE_BODIES = {
    "escaped in an input": (
        b'{"model":"genmill/echo","task_type":"echo","input":{"payload":"\\udc00"}}',
        "input.payload",
    ),
    "deep in an input": (
        b'{"model":"genmill/echo","task_type":"echo","input":{"payload":{"a":[1,"x\\ud800y"]}}}',
        "input.payload.a[1]",
    ),
    "raw UTF-8 bytes": (
        b'{"model":"genmill/echo","task_type":"echo","input":{"payload":"\xed\xb0\x80"}}',
        "input.payload",
    ),
    "in the webhook secret": (
        b'{"model":"genmill/echo","task_type":"echo","input":{},'
        b'"config":{"webhook_config":{"endpoint":"http://127.0.0.1:9/h","secret":"\\udc00"}}}',
        "config.webhook_config.secret",
    ),
    "in the model name": (b'{"model":"genmill/echo\\udfff","task_type":"echo","input":{}}', "model"),
}


@pytest.mark.parametrize("case", SURROGATE_BODIES)
def test_a_lone_surrogate_anywhere_in_a_create_is_a_400_and_nothing_is_billed(served: Served, case: str) -> None:
    body, field = SURROGATE_BODIES[case]
    assert_refused(served.post(body), field, "lone UTF-16 surrogate")
    served.assert_nothing_stored()
    assert served.client.get("/api/open/tasks/histories", headers=served.h()).status_code == 200


def test_a_surrogate_in_a_key_is_named_by_the_object_holding_it(served: Served) -> None:
    body = b'{"model":"genmill/echo","task_type":"echo","input":{"payload":{"\\udc00":1}}}'
    assert_refused(served.post(body), "input.payload", "a key contains a lone UTF-16 surrogate")
    served.assert_nothing_stored()


def test_a_valid_surrogate_pair_is_an_ordinary_character(served: Served) -> None:
    body = b'{"model":"genmill/echo","task_type":"echo","input":{"payload":"smile \\ud83d\\ude00"}}'
    created = served.post(body)
    assert created.status_code == 200, created.text
    task_id = created.json()["data"]["task_id"]
    assert served.client.get(f"/api/v1/task/{task_id}", headers=served.h()).json()["data"]["input"] == {
        "payload": "smile \U0001f600",
        "sleep_ms": 0,
    }


def test_nul_in_a_body_is_a_400_and_nothing_is_billed(served: Served) -> None:
    assert_refused(served.create("a\x00b"), "input.payload", "NUL")
    assert_refused(served.create({"k\x00": 1}), "input.payload", "a key contains a NUL")
    served.assert_nothing_stored()


@pytest.mark.parametrize(
    ("path", "field"),
    [
        ("/api/v1/task/%00", "path"),
        ("/api/v1/task/%00/events", "path"),
        ("/api/v1/task/a%00b/webhooks", "path"),
        ("/api/open/tasks/histories?model=%00", "model"),
        ("/api/open/tasks/histories?page=1&model=x%00y", "model"),
    ],
)
def test_nul_in_a_path_or_a_query_is_a_400(served: Served, path: str, field: str) -> None:
    assert_refused(served.client.get(path, headers=served.h()), field, "NUL")


def test_nul_in_a_file_key_is_a_400_without_an_api_key(served: Served) -> None:
    assert_refused(served.client.get("/files/%00"), "path", "NUL")
    assert_refused(served.client.get("/files/outputs/a%00.png"), "path", "NUL")


def test_nul_in_a_cancel_query_is_a_400_and_cancels_nothing(served: Served) -> None:
    task_id = served.create().json()["data"]["task_id"]
    response = served.client.delete("/api/v1/tasks?created_before=9999999999&model=%00", headers=served.h())
    assert_refused(response, "model", "NUL")
    assert served.client.get(f"/api/v1/task/{task_id}", headers=served.h()).json()["data"]["status"] == "pending"


def test_nul_in_a_header_the_app_reads_is_a_400_and_nothing_is_billed(served: Served) -> None:
    response = served.client.post(
        "/api/v1/task",
        content=b'{"model":"genmill/echo","task_type":"echo","input":{}}',
        headers=[("X-API-Key", served.key), ("Content-Type", "application/json"), ("Idempotency-Key", "a\x00b")],
    )
    assert_refused(response, "header idempotency-key", "NUL")
    served.assert_nothing_stored()


def test_a_webhook_secret_must_travel_as_a_header(served: Served) -> None:
    """A secret outside printable ASCII cannot be sent as `x-webhook-secret`: refused at create, not at delivery."""
    for secret in ("秘密", "line\nbreak"):
        body = {
            "model": "genmill/echo",
            "task_type": "echo",
            "input": {},
            "config": {"webhook_config": {"endpoint": "http://127.0.0.1:9/h", "secret": secret}},
        }
        response = served.post(json.dumps(body))
        assert response.status_code == 400, response.text
        assert response.json()["message"].startswith("config.webhook_config.secret: printable ASCII only")
    served.assert_nothing_stored()


# -- sizes and numbers ------------------------------------------------------------------------------------------


def nested(levels: int) -> bytes:
    """A create whose payload is `levels` arrays deep: with the body and `input`, `levels + 2` levels in all."""
    payload = "[" * levels + "]" * levels
    return f'{{"model":"genmill/echo","task_type":"echo","input":{{"payload":{payload}}}}}'.encode()


def test_a_body_nested_64_levels_is_accepted(served: Served) -> None:
    response = served.post(nested(62))
    assert response.status_code == 200, response.text
    task_id = response.json()["data"]["task_id"]
    assert served.client.get(f"/api/v1/task/{task_id}", headers=served.h()).status_code == 200


@pytest.mark.parametrize("levels", [63, 250, 300, 900, 1500, 100_000])
def test_a_body_nested_deeper_than_64_levels_is_a_clean_400(served: Served, levels: int) -> None:
    response = served.post(nested(levels))
    assert response.status_code == 400, response.text
    assert response.json()["detail"]["rule"] == "nested deeper than 64 levels"
    served.assert_nothing_stored()


@pytest.mark.parametrize(
    ("payload", "field", "rule"),
    [
        ("9223372036854775808", "input.payload", "integer out of range"),
        ("-9223372036854775809", "input.payload", "integer out of range"),
        ("[1, " + "9" * 5000 + "]", "input.payload[1]", "integer out of range"),
        ('{"x": NaN}', "input.payload.x", "not a finite number"),
        ("-Infinity", "input.payload", "not a finite number"),
        ("1e400", "input.payload", "not a finite number"),
    ],
)
def test_numbers_the_database_cannot_hold_are_a_400(served: Served, payload: str, field: str, rule: str) -> None:
    body = f'{{"model":"genmill/echo","task_type":"echo","input":{{"payload":{payload}}}}}'
    assert_refused(served.post(body), field, rule)
    served.assert_nothing_stored()


def test_int64_edges_are_accepted(served: Served) -> None:
    response = served.create([9223372036854775807, -9223372036854775808, 1.5e300])
    assert response.status_code == 200, response.text


def test_a_history_page_past_int64_is_a_400_naming_page(served: Served) -> None:
    response = served.client.get(f"/api/open/tasks/histories?page={10**19}", headers=served.h())
    assert response.status_code == 400, response.text
    assert response.json()["message"].startswith("Invalid request parameters: page:")


@pytest.mark.parametrize("page", [2**62, 2**63 - 1])
def test_a_history_page_whose_offset_overflows_is_an_empty_page(served: Served, page: int) -> None:
    served.create()
    response = served.client.get(f"/api/open/tasks/histories?page={page}&page_size=100", headers=served.h())
    assert response.status_code == 200, response.text
    assert response.json()["data"]["data"] == [] and response.json()["data"]["total"] == 1


@pytest.mark.parametrize("value", ["99999999999999999999999", "9223372036854775808", "-1", "1.5", "abc"])
def test_a_last_event_id_that_is_not_an_int64_event_id_is_a_400(served: Served, value: str) -> None:
    task_id = served.create().json()["data"]["task_id"]
    response = served.client.get(f"/api/v1/task/{task_id}/events", headers=served.h(**{"Last-Event-ID": value}))
    assert_refused(response, "Last-Event-ID", "must be an event id from this stream")


def test_a_stream_resumes_after_the_largest_event_id(served: Served) -> None:
    task_id = served.create().json()["data"]["task_id"]
    assert served.runtime.workers[0].run_once()
    headers = served.h(**{"Last-Event-ID": str(2**63 - 1)})
    with served.client.stream("GET", f"/api/v1/task/{task_id}/events", headers=headers) as stream:
        assert stream.status_code == 200
        assert "id:" not in "".join(stream.iter_text())  # nothing after it, and the task has ended: it closes


# -- stored rows never break an answer --------------------------------------------------------------------------


@pytest.mark.parametrize("backends", [[OddTextEcho()]])
def test_a_backend_output_with_nul_and_surrogates_completes_and_reads_back(served: Served) -> None:
    task_id = served.create().json()["data"]["task_id"]
    assert served.runtime.workers[0].run_once()
    got = served.client.get(f"/api/v1/task/{task_id}", headers=served.h())
    assert got.status_code == 200, got.text
    task = got.json()["data"]
    assert task["status"] == "completed"
    assert task["output"] == {"text": "nul \ufffd surrogate \ufffd", "score": None, "keys": {"k\ufffd": 1}}
    assert "a log line with NUL \ufffd and a lone surrogate \ufffd" in task["logs"]
    assert served.client.get("/api/open/tasks/histories", headers=served.h()).status_code == 200
    assert served.balances() == Balances(CREDITS - PRICE, 0, PRICE)  # billed once


def test_a_stored_row_holding_a_lone_surrogate_still_reads_and_claims(served: Served) -> None:
    """A row written before these rules (SQLite stored `\\udc00` escapes as given; PostgreSQL never could)."""
    task_id = served.create().json()["data"]["task_id"]
    if served.kind == "postgres":
        with pytest.raises(sa.exc.DataError), served.runtime.store.engine.begin() as conn:
            conn.exec_driver_sql('UPDATE tasks SET input = \'{"payload": "\\udc00"}\'::jsonb')
        return
    with served.runtime.store.engine.begin() as conn:
        conn.exec_driver_sql("""UPDATE tasks SET input = '{"payload": "\\udc00 \\u0000"}'""")
    got = served.client.get(f"/api/v1/task/{task_id}", headers=served.h())
    assert got.status_code == 200, got.text
    assert got.json()["data"]["input"] == {"payload": "\ufffd \ufffd"}
    history = served.client.get("/api/open/tasks/histories", headers=served.h())
    assert history.status_code == 200 and history.json()["data"]["total"] == 1
    token, _ = served.runtime.store.workers.create_token("remote")
    auth = {"Authorization": f"Bearer {token}"}
    registered = served.client.post(
        "/api/v1/workers/register",
        json={"name": "w", "capabilities": [{"model": "genmill/echo", "task_type": "echo"}]},
        headers=auth,
    )
    claim = served.client.post(
        "/api/v1/workers/claim", json={"worker_id": registered.json()["worker_id"], "wait_seconds": 0}, headers=auth
    )
    assert claim.status_code == 200, claim.text
    assert claim.json()["task"]["input"] == {"payload": "\ufffd \ufffd"}


# -- the database unavailable -----------------------------------------------------------------------------------


def assert_unavailable(response: Any) -> None:
    assert response.status_code == 503, response.text
    assert response.headers["Retry-After"] == str(DatabaseUnavailable.retry_after_seconds)
    assert response.json() == {
        "code": 503,
        "data": None,
        "message": "the database is unavailable; try again in a few seconds",
    }


def test_the_database_unavailable_is_a_503_with_retry_after_and_nothing_half_written(
    served: Served, caplog: pytest.LogCaptureFixture
) -> None:
    assert served.client.get("/account/info", headers=served.h()).status_code == 200  # the key is now cached
    served.take_away()
    try:
        caplog.clear()
        with caplog.at_level(logging.WARNING):
            assert_unavailable(served.create())
        answered = [r.getMessage() for r in caplog.records if r.name == "genmill.api"]
        assert len(answered) == 1 and "503, database unavailable" in answered[0]  # one line per request
        assert [r for r in caplog.records if r.exc_info] == []  # and no traceback anywhere
        assert_unavailable(served.client.get("/api/v1/task/some-task", headers=served.h()))
        assert_unavailable(served.client.get("/api/open/tasks/histories", headers=served.h()))
        assert_unavailable(served.client.get("/account/info", headers=served.h(**{"X-API-Key": "gm_unknown"})))
    finally:
        served.give_back()
    served.assert_nothing_stored()
    created = served.create()
    assert created.status_code == 200, created.text
    assert served.balances() == Balances(CREDITS - PRICE, PRICE, 0)


def test_a_create_whose_wait_loses_the_database_answers_the_committed_task(
    served: Served, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The task was committed and billed: a 503 would invite a second create and a second bill."""

    def unavailable(*_args: Any) -> None:
        raise DatabaseUnavailable("connection refused")

    monkeypatch.setattr(served.runtime.tasks, "get", unavailable)
    created = served.create(**{"Prefer": "wait=5"})
    assert created.status_code == 200, created.text
    assert created.json()["data"]["status"] == "pending"
    assert served.task_count() == 1
