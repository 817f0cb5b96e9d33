"""Operations over HTTP (ASGI, real SQLite): /metrics parsed with prometheus_client's own parser, /readyz's 200
and 503s, request ids echoed and in JSON log lines, and /docs and /redoc that need no CDN."""

from __future__ import annotations

import base64
import io
import json
import logging
import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic import command
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample
from tests.integration.conftest import Api
from tests.receiver import run_receiver
from tests.support import PillowUpscale, png_bytes

from genmill.app import Runtime, create_app
from genmill.backends.base import Resident
from genmill.logs import JsonFormatter
from genmill.settings import Settings
from genmill.store import Store
from genmill.store.migrate import alembic_config

MODEL = "Qubico/image-toolkit"
UPSCALE = {"model": MODEL, "task_type": "upscale"}


def create_upscale(api: Api, headers: dict[str, str] | None = None) -> str:
    body = {**UPSCALE, "input": {"image": base64.b64encode(png_bytes(4, 4)).decode(), "scale": 2}}
    created = api.client.post("/api/v1/task", json=body, headers={**api.h(), **(headers or {})})
    assert created.status_code == 200, created.text
    return str(created.json()["data"]["task_id"])


def samples(api: Api) -> list[Sample]:
    answer = api.client.get("/metrics")
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/plain")
    return [s for family in text_string_to_metric_families(answer.text) for s in family.samples]


def value(found: list[Sample], name: str, **labels: str) -> float:
    matching = [s.value for s in found if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())]
    assert len(matching) == 1, (name, labels, matching)
    return matching[0]


def test_metrics_move_when_a_task_runs(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    before = samples(api)
    assert value(before, "genmill_database_up") == 1
    assert not [s for s in before if s.name == "genmill_task_transitions_total"]
    create_upscale(api)
    queued = samples(api)
    assert value(queued, "genmill_queue_depth", model=MODEL, task_type="upscale", pool="public", status="pending") == 1
    assert value(queued, "genmill_task_transitions_total", model=MODEL, status="pending") == 1
    assert value(queued, "genmill_workers", kind="in_process", pool="public") == 1
    resident = Resident("test:weights", "cpu", 1234)
    monkeypatch.setattr(api.upscaler, "residents", lambda: [resident])
    assert api.run_worker()
    ran = samples(api)
    for status in ("pending", "processing", "completed"):
        assert value(ran, "genmill_task_transitions_total", model=MODEL, status=status) == 1, status
    assert value(ran, "genmill_tasks", model=MODEL, status="completed") == 1
    assert not [s for s in ran if s.name == "genmill_queue_depth"]
    assert value(ran, "genmill_task_dispatch_seconds_count", model=MODEL) == 1
    assert value(ran, "genmill_task_run_seconds_count", model=MODEL, status="completed") == 1
    buckets = [s for s in ran if s.name == "genmill_task_run_seconds_bucket" and s.labels["model"] == MODEL]
    assert {s.labels["le"] for s in buckets} >= {"0.05", "1.0", "60.0", "3600.0", "+Inf"}
    assert value(ran, "genmill_task_run_seconds_bucket", model=MODEL, status="completed", le="+Inf") == 1
    price = api.runtime.store.tasks.get_any(create_upscale(api)).price  # another one, to know the price
    assert price > 0
    assert value(ran, "genmill_credits_consumed_total", model=MODEL) == price
    assert value(ran, "genmill_ledger_credits_consumed_total") == price
    assert value(ran, "genmill_model_loads_total", backend=api.upscaler.name) == 1
    assert value(ran, "genmill_model_memory_bytes", device="cpu") == 1234


def test_webhook_outcomes_are_counted(api: Api) -> None:
    with run_receiver() as rx:
        rx.answers = [410]
        body = {
            **UPSCALE,
            "input": {"image": base64.b64encode(png_bytes(4, 4)).decode(), "scale": 2},
            "config": {"webhook_config": {"endpoint": rx.url}},
        }
        assert api.client.post("/api/v1/task", json=body, headers=api.h()).status_code == 200
        deadline = time.monotonic() + 10
        while api.runtime.store.webhooks.next_due_at() is not None and time.monotonic() < deadline:
            api.runtime.webhooks.run_once()
    found = samples(api)
    assert value(found, "genmill_webhook_attempts_total", outcome="gone") == 1
    assert value(found, "genmill_webhook_deliveries", state="gone") == 1


def test_metrics_say_when_the_database_is_down(api: Api, tmp_path: Path) -> None:
    """A folder where the database file should be: SQLite cannot open it."""
    unreachable = Store.from_url(f"sqlite:///{tmp_path}")
    api.runtime.store.ops = unreachable.ops
    assert value(samples(api), "genmill_database_up") == 0
    unreachable.close()


def test_readyz_is_200_with_a_database_at_head_and_a_public_worker(api: Api) -> None:
    answer = api.client.get("/readyz")
    assert answer.status_code == 200
    assert answer.json() == {
        "ready": True,
        "database": True,
        "migrations": "at head (0007)",
        "public_workers": 1,
        "reasons": [],
    }
    assert api.client.get("/healthz").status_code == 200


@pytest.fixture
def api_only(tmp_path: Path) -> Iterator[TestClient]:
    settings = Settings(data_dir=tmp_path, workers=0)
    runtime = Runtime(settings, backends=[PillowUpscale()])
    with TestClient(create_app(settings, runtime=runtime, run_workers=False)) as client:
        yield client
    runtime.store.close()


def test_readyz_is_503_until_a_public_worker_registers(api_only: TestClient) -> None:
    answer = api_only.get("/readyz")
    assert answer.status_code == 503
    body = answer.json()
    assert body["code"] == 503 and body["data"] is None and "no worker serves the public pool" in body["message"]
    assert body["detail"]["database"] is True and body["detail"]["public_workers"] == 0
    runtime: Runtime = api_only.app.state.runtime  # type: ignore[attr-defined]
    secret, _ = runtime.store.workers.create_token("w")
    registered = api_only.post(
        "/api/v1/workers/register",
        json={"name": "w", "capabilities": [UPSCALE]},
        headers={"Authorization": f"Bearer {secret}"},
    )
    assert registered.status_code == 200
    assert api_only.get("/readyz").json()["public_workers"] == 1


def test_readyz_is_503_when_the_database_is_down_or_behind(api: Api, tmp_path: Path) -> None:
    database = api.runtime.settings.resolved_database_url()
    command.downgrade(alembic_config(database), "0005")
    behind = api.client.get("/readyz")
    assert behind.status_code == 503
    assert "migrations not at head" in behind.json()["message"] and "genmill db upgrade" in behind.json()["message"]
    command.upgrade(alembic_config(database), "head")
    assert api.client.get("/readyz").status_code == 200

    unreachable = Store.from_url(f"sqlite:///{tmp_path}")  # a folder where the database file should be
    api.runtime.readiness.store = unreachable
    down = api.client.get("/readyz")
    unreachable.close()
    assert down.status_code == 503
    assert down.json()["detail"]["database"] is False and "database unreachable" in down.json()["message"]


@pytest.fixture
def json_log() -> Iterator[io.StringIO]:
    """What genmill logs during the test, formatted as GENMILL_LOG_FORMAT=json formats it."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    previous = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    yield stream
    root.removeHandler(handler)
    root.setLevel(previous)


def test_the_request_id_is_echoed_and_on_the_json_log_lines(api: Api, json_log: io.StringIO) -> None:
    task_id = create_upscale(api, {"X-Request-ID": "req-42"})
    answer = api.client.get(f"/api/v1/task/{task_id}", headers={**api.h(), "X-Request-ID": "req-43"})
    assert answer.headers["X-Request-ID"] == "req-43"
    generated = api.client.get("/healthz").headers["X-Request-ID"]
    assert re.fullmatch(r"[0-9a-f]{32}", generated)
    forged = api.client.get("/healthz", headers={"X-Request-ID": 'x" injected=1 ' + "y" * 200})
    assert re.fullmatch(r"[0-9a-f]{32}", forged.headers["X-Request-ID"])
    refused = api.client.get("/account/info")  # a 401 carries its id too
    assert refused.status_code == 401 and refused.headers["X-Request-ID"]

    lines = [json.loads(line) for line in json_log.getvalue().splitlines()]
    access = [line for line in lines if line["logger"] == "genmill.access"]
    assert {"method": "POST", "path": "/api/v1/task", "status": 200, "request_id": "req-42"}.items() <= access[
        0
    ].items()
    assert access[0]["level"] == "info" and access[0]["duration_ms"] >= 0
    transition = next(line for line in lines if line["logger"] == "genmill.tasks")
    assert transition["task_id"] == task_id and transition["status"] == "pending"
    assert transition["model"] == MODEL and transition["request_id"] == "req-42"


def local_references(html: str) -> list[str]:
    """Every script, stylesheet, icon and spec URL an HTML page loads."""
    found = re.findall(r"""(?:src|href)=["']([^"']+)["']""", html)
    found += re.findall(r"""url:\s*['"]([^'"]+)['"]""", html)
    found += re.findall(r"""spec-url=["']([^"']+)["']""", html)
    return found


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_the_docs_load_only_assets_the_server_serves(api: Api, page: str) -> None:
    html = api.client.get(page)
    assert html.status_code == 200 and html.headers["content-type"].startswith("text/html")
    assert "cdn." not in html.text and "fonts.googleapis" not in html.text
    references = local_references(html.text)
    assert any(r.endswith(".js") for r in references) and "/openapi.json" in references
    for reference in references:
        assert reference.startswith("/"), f"{page} loads {reference} from elsewhere"
        fetched = api.client.get(reference)
        assert fetched.status_code == 200 and len(fetched.content) > 100, reference
    spec = api.client.get("/openapi.json").json()
    assert {"APIKey", "WorkerToken", "OperatorToken"} <= set(spec["components"]["securitySchemes"])
