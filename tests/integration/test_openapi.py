"""`/openapi.json` says what the server answers: for every route, the documented status codes are compared with
the codes it answers when probed (no credentials, wrong credentials, unknown ids, bad and oversized bodies, and
each route's own errors), never a 422, every error with the envelope, and the X-API-Key and worker-token
security schemes on the routes that check them."""

from __future__ import annotations

import base64
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from tests.integration.openapi_admin import ADMIN_EXPECTED, ADMIN_NOT_PROVOKED, probe_the_admin_routes
from tests.support import PillowUpscale, png_bytes

from genmill.app import Runtime, create_app
from genmill.domain.timefmt import utcnow
from genmill.settings import Settings
from genmill.store.tables import accounts, blobs

MAX_BODY = 64 * 1024
UPSCALE = {"model": "Qubico/image-toolkit", "task_type": "upscale"}

LEGACY_CREATES = (
    "/api/face_swap/v1/async",
    "/api/luma/v1/video",
    "/api/kling/v1/video",
    *(f"/mj/v2/{operation}" for operation in ("imagine", "upscale", "variation", "reroll", "describe")),
    *(f"/mj/v2/{operation}" for operation in ("seed", "blend", "inpaint", "outpaint", "pan")),
)
"""PiAPI's legacy creates (docs/api.md, "Legacy endpoints"), which answer what the unified create does."""

EXPECTED: dict[str, set[int]] = {
    "POST /api/v1/task": {400, 401, 402, 403, 409, 413, 429},
    "GET /api/v1/task/{task_id}": {400, 401, 404, 429},
    "DELETE /api/v1/task/{task_id}": {400, 401, 404, 429},
    "POST /api/v1/task/{task_id}/cancel": {400, 401, 404, 413, 429},
    "GET /api/v1/task/{task_id}/events": {400, 401, 404, 429},
    "DELETE /api/v1/tasks": {400, 401, 429},
    "GET /api/v1/task/{task_id}/webhooks": {400, 401, 404, 429},
    "POST /api/v1/task/{task_id}/webhooks/{delivery_id}/replay": {400, 401, 404, 413, 429},
    "GET /account/webhook_secret": {400, 401, 429},
    "GET /account/info": {400, 401, 429},
    "GET /account/active_tasks": {400, 401, 429},
    "GET /api/open/tasks/histories": {400, 401, 429},
    "POST /api/ephemeral_resource": {400, 401, 413, 429},
    "POST /api/v1/price": {400, 401, 413, 429},
    "GET /files/{key}": {404, 410},
    "GET /api/v1/models": set(),
    "GET /healthz": set(),
    "POST /v1/chat/completions": {400, 401, 402, 404, 413, 429, 502},
    "GET /v1/models": {400, 401, 429},
    "GET /v1/models/{model}": {400, 401, 404, 429},
    "POST /v1/images/generations": {400, 401, 402, 404, 413, 429, 502},
    "POST /api/v1/workers/register": {400, 401, 413},
    "POST /api/v1/workers/claim": {400, 401, 404, 413},
    "POST /api/v1/workers/claim_more": {400, 401, 404, 413},
    "POST /api/v1/workers/tasks/{task_id}/heartbeat": {400, 401, 404, 409, 413},
    "POST /api/v1/workers/tasks/{task_id}/complete": {400, 401, 404, 409, 413},
    "POST /api/v1/workers/tasks/{task_id}/fail": {400, 401, 404, 409, 413},
    "POST /api/v1/workers/tasks/{task_id}/input": {400, 401, 404, 409, 410, 413},
    "PUT /api/v1/workers/tasks/{task_id}/outputs": {400, 401, 404, 409, 413},
    **{f"POST {path}": {400, 401, 402, 403, 413, 429} for path in LEGACY_CREATES},
    "POST /api/luma/v1/video/{task_id}/extend": {400, 401, 402, 403, 404, 413, 429},
    "POST /api/kling/v1/video/{task_id}/extend": {400, 401, 402, 403, 404, 413, 429},
    "POST /api/face_swap/v1/fetch": {400, 401, 404, 413, 429},
    "POST /mj/v2/fetch": {400, 401, 404, 413, 429},
    "POST /mj/v2/cancel": {400, 401, 404, 413, 429},
    "POST /mj/v2/multi_fetch": {400, 401, 413, 429},
    "GET /api/luma/v1/video/{task_id}": {400, 401, 404, 429},
    "GET /api/kling/v1/video/{task_id}": {400, 401, 404, 429},
    **ADMIN_EXPECTED,
}
"""Every route and the error codes it answers; a new route must be added here (the test says so)."""

BOUNDARY_ONLY = 400
DATABASE_DOWN = 503
"""Every route reads or writes the database, so every one documents 503; tests/integration/test_boundary.py
provokes it on both engines (the probes here keep the database up)."""
RATE_LIMITED = 429
"""A key's rate limit: every keyed route answers it once the key's bucket is empty; tests/integration/test_limits.py
provokes it (the probes here stay inside the default limits)."""
NOT_PROVOKED: dict[str, set[int]] = {
    # A route without parameters of its own answers 400 only when the boundary refuses a header or path
    # (a NUL, a lone surrogate); every authenticated route documents it.
    "GET /api/v1/task/{task_id}": {BOUNDARY_ONLY, RATE_LIMITED},
    "GET /api/v1/task/{task_id}/webhooks": {BOUNDARY_ONLY, RATE_LIMITED},
    "POST /api/v1/task/{task_id}/webhooks/{delivery_id}/replay": {BOUNDARY_ONLY, RATE_LIMITED},
    "GET /account/webhook_secret": {BOUNDARY_ONLY, RATE_LIMITED},
    "GET /account/info": {BOUNDARY_ONLY, RATE_LIMITED},
    "GET /account/active_tasks": {BOUNDARY_ONLY, RATE_LIMITED},
    "POST /api/v1/workers/tasks/{task_id}/input": {410},  # an own file that expired while the task ran
    "PUT /api/v1/workers/tasks/{task_id}/outputs": {413},  # 512 MiB
    "DELETE /api/v1/task/{task_id}": {RATE_LIMITED},
    "POST /api/v1/task/{task_id}/cancel": {RATE_LIMITED},
    "GET /api/v1/task/{task_id}/events": {RATE_LIMITED},
    "DELETE /api/v1/tasks": {RATE_LIMITED},
    "GET /api/open/tasks/histories": {RATE_LIMITED},
    "POST /api/ephemeral_resource": {RATE_LIMITED},
    "POST /api/v1/price": {RATE_LIMITED},  # the reads bucket, as every keyed route (test_limits.py)
    # The probe's server serves no legacy family's entries, so a legacy create stops at the serving check (400)
    # before pricing; tests/integration/test_legacy_api.py provokes their 402.
    **{f"POST {path}": {402, 403, RATE_LIMITED} for path in LEGACY_CREATES},
    "POST /api/luma/v1/video/{task_id}/extend": {402, 403, RATE_LIMITED},
    "POST /api/kling/v1/video/{task_id}/extend": {402, 403, RATE_LIMITED},
    "POST /api/face_swap/v1/fetch": {RATE_LIMITED},
    "POST /mj/v2/fetch": {RATE_LIMITED},
    "POST /mj/v2/cancel": {RATE_LIMITED},
    "POST /mj/v2/multi_fetch": {RATE_LIMITED},
    "GET /api/luma/v1/video/{task_id}": {BOUNDARY_ONLY, RATE_LIMITED},
    "GET /api/kling/v1/video/{task_id}": {BOUNDARY_ONLY, RATE_LIMITED},
    # no chat model is configured here: tests/integration/test_openai_chat.py provokes the 402 and the 502
    "POST /v1/chat/completions": {402, 502, RATE_LIMITED},
    "POST /v1/images/generations": {402, 502, RATE_LIMITED},
    "GET /v1/models": {BOUNDARY_ONLY, RATE_LIMITED},
    "GET /v1/models/{model}": {BOUNDARY_ONLY, RATE_LIMITED},
    **ADMIN_NOT_PROVOKED,
}
"""Documented codes this test does not provoke, and why."""


@dataclass
class Probe:
    client: TestClient
    runtime: Runtime
    key: str
    poor_key: str
    poor_account_id: str
    worker_token: str
    operator_token: str
    answered: dict[str, set[int]] = field(default_factory=lambda: defaultdict(set))

    def call(self, route: str, path: str | None = None, **kwargs: Any) -> int:
        """Send the route's method to `path` (the route's own path by default); records and returns the status."""
        method, template = route.split(" ", 1)
        status = int(self.client.request(method, path or template, **kwargs).status_code)
        self.answered[route].add(status)
        return status

    def key_headers(self, key: str | None = None) -> dict[str, str]:
        return {"X-API-Key": key or self.key}

    def worker_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.worker_token}"}

    def operator_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.operator_token}"}


@pytest.fixture
def probe(tmp_path: Path) -> Iterator[Probe]:
    settings = Settings(
        data_dir=tmp_path,
        public_url="http://testserver",
        workers=1,
        max_request_bytes=MAX_BODY,
        max_staged_per_account=1,
        auth_cache_seconds=3600,
    )
    runtime = Runtime(settings, backends=[PillowUpscale()])
    account = runtime.store.accounts.create_account("rich", credits=10**9, max_concurrency=1)
    key, _ = runtime.store.accounts.create_key(account.account_id)
    poor = runtime.store.accounts.create_account("poor", credits=0)
    poor_key, _ = runtime.store.accounts.create_key(poor.account_id)
    worker_token, _ = runtime.store.workers.create_token("probe")
    operator_token, _ = runtime.store.operators.create_token("probe")
    with TestClient(create_app(settings, runtime=runtime, run_workers=False)) as client:
        yield Probe(client, runtime, key, poor_key, poor.account_id, worker_token, operator_token)
    runtime.store.close()


def documented(spec: dict[str, Any]) -> dict[str, set[int]]:
    return {
        f"{method.upper()} {path}": {int(code) for code in operation["responses"] if code != "200"}
        for path, operations in spec["paths"].items()
        for method, operation in operations.items()
    }


def upscale(scale: int = 2) -> dict[str, Any]:
    return {**UPSCALE, "input": {"image": base64.b64encode(png_bytes(4, 4)).decode(), "scale": scale}}


def probe_every_route_generically(probe: Probe, routes: list[str]) -> None:
    """No credentials, wrong credentials, unknown ids with an empty body, and an oversized body, on every route."""
    for route in routes:
        path = route.split(" ", 1)[1]
        path = path.replace("{task_id}", "no-such-task").replace("{delivery_id}", "no-such-delivery")
        path = path.replace("{key}", "outputs/none/none.png")
        for name in ("{account_id}", "{key_id}", "{token_id}"):
            path = path.replace(name, "no-such-id")
        probe.call(route, path)
        probe.call(route, path, headers={"X-API-Key": "wrong", "Authorization": "Bearer wrong"})
        authorised = {**probe.key_headers(), **probe.worker_headers()}
        body: dict[str, Any] = {"json": {}} if route.startswith(("POST", "PUT")) else {}
        probe.call(route, path, headers=authorised, **body)
        if route.startswith(("POST", "PUT")):
            probe.call(route, path, headers=authorised, content=b"x" * (MAX_BODY + 1))


def probe_the_task_routes(probe: Probe) -> None:
    create = "POST /api/v1/task"
    created = probe.client.post("/api/v1/task", json=upscale(), headers=probe.key_headers())
    assert created.status_code == 200
    task_id = created.json()["data"]["task_id"]
    probe.call(create, json=upscale(), headers=probe.key_headers(probe.poor_key))  # 402
    probe.call(create, json=upscale(), headers={**probe.key_headers(), "Idempotency-Key": "k"})  # staged
    probe.call(create, json=upscale(3), headers={**probe.key_headers(), "Idempotency-Key": "k"})  # 409
    probe.call(create, json=upscale(), headers=probe.key_headers())  # 429: one pending, one staged
    probe.call(create, json={**upscale(), "input": {}}, headers=probe.key_headers())  # 400
    with probe.runtime.store.engine.begin() as conn:
        conn.execute(sa.update(accounts).values(is_enabled=False).where(accounts.c.name == "rich"))
    probe.call(create, json=upscale(), headers=probe.key_headers())  # 403: disabled after its key was checked
    with probe.runtime.store.engine.begin() as conn:
        conn.execute(sa.update(accounts).values(is_enabled=True).where(accounts.c.name == "rich"))
    assert probe.runtime.workers[0].run_once()  # the pending task completes; cancelling it is a 400
    probe.call("DELETE /api/v1/task/{task_id}", f"/api/v1/task/{task_id}", headers=probe.key_headers())
    probe.call("POST /api/v1/task/{task_id}/cancel", f"/api/v1/task/{task_id}/cancel", headers=probe.key_headers())
    headers = {**probe.key_headers(), "Last-Event-ID": "not-a-number"}
    probe.call("GET /api/v1/task/{task_id}/events", f"/api/v1/task/{task_id}/events", headers=headers)
    probe.call("DELETE /api/v1/tasks", headers=probe.key_headers())  # created_before is required
    probe.call("GET /api/open/tasks/histories", params={"page": 0}, headers=probe.key_headers())
    chat = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
    probe.call("POST /v1/chat/completions", json=chat, headers=probe.key_headers())  # 404: no model configured
    image = {"model": "gpt-image-1", "prompt": "a red fox"}
    probe.call("POST /v1/images/generations", json=image, headers=probe.key_headers())  # 404 likewise


def probe_the_files(probe: Probe) -> None:
    probe.call(
        "POST /api/ephemeral_resource", json={"file_name": "x.exe", "file_data": "AA=="}, headers=probe.key_headers()
    )
    stored = probe.runtime.files.save(
        png_bytes(2, 2),
        kind="output",
        ext="png",
        content_type="image/png",
        retention=timedelta(days=1),
        account_id=None,
    )
    with probe.runtime.store.engine.begin() as conn:
        conn.execute(
            sa.update(blobs).values(expires_at=utcnow() - timedelta(seconds=1)).where(blobs.c.key == stored.key)
        )
    probe.call("GET /files/{key}", f"/files/{stored.key}")  # 410


def probe_the_worker_routes(probe: Probe) -> None:
    headers = probe.worker_headers()
    registered = probe.client.post(
        "/api/v1/workers/register", json={"name": "probe", "capabilities": [UPSCALE]}, headers=headers
    ).json()
    probe.runtime.store.accounts.topup(probe.poor_account_id, 10**6)
    assert (
        probe.client.post("/api/v1/task", json=upscale(), headers=probe.key_headers(probe.poor_key)).status_code == 200
    )
    claim = probe.client.post(
        "/api/v1/workers/claim", json={"worker_id": registered["worker_id"], "wait_seconds": 0}, headers=headers
    ).json()["task"]
    assert claim is not None
    task_path = f"/api/v1/workers/tasks/{claim['task_id']}"
    unknown = {"worker_id": "no-such-worker", "wait_seconds": 0}
    probe.call("POST /api/v1/workers/claim", json=unknown, headers=headers)
    more = {**unknown, "model": UPSCALE["model"], "task_type": UPSCALE["task_type"], "match": {}, "limit": 1}
    probe.call("POST /api/v1/workers/claim_more", json=more, headers=headers)
    gone = "/api/v1/workers/tasks/no-such-task"
    for action in ("heartbeat", "complete", "fail"):
        body = {"lease_id": "x", "output": {}, "error": {"code": 1, "message": "x"}}
        probe.call(f"POST /api/v1/workers/tasks/{{task_id}}/{action}", f"{gone}/{action}", json=body, headers=headers)
    probe.call(
        "POST /api/v1/workers/tasks/{task_id}/input",
        f"{gone}/input",
        json={"lease_id": "x", "ref": "x", "field": "image"},
        headers=headers,
    )
    probe.call(
        "PUT /api/v1/workers/tasks/{task_id}/outputs",
        f"{gone}/outputs",
        params={"lease_id": "x", "ext": "png", "content_type": "image/png"},
        content=b"x",
        headers=headers,
    )
    stale = {"lease_id": "not-the-lease"}
    for action in ("heartbeat", "complete", "fail"):
        body = {**stale, "output": {}, "error": {"code": 1, "message": "x"}}
        probe.call(
            f"POST /api/v1/workers/tasks/{{task_id}}/{action}", f"{task_path}/{action}", json=body, headers=headers
        )
    probe.call(
        "POST /api/v1/workers/tasks/{task_id}/input",
        f"{task_path}/input",
        json={**stale, "ref": "x", "field": "image"},
        headers=headers,
    )
    probe.call(
        "PUT /api/v1/workers/tasks/{task_id}/outputs",
        f"{task_path}/outputs",
        params={**stale, "ext": "png", "content_type": "image/png"},
        content=b"x",
        headers=headers,
    )


def probe_the_legacy_routes(probe: Probe) -> None:
    """A legacy fetch, cancel or extend of a task that does not exist is a 404 (the generic probe's empty body is
    a 400)."""
    for path in ("/api/face_swap/v1/fetch", "/mj/v2/fetch", "/mj/v2/cancel"):
        probe.call(f"POST {path}", json={"task_id": "no-such-task"}, headers=probe.key_headers())
    for family in ("luma", "kling"):
        extend = f"POST /api/{family}/v1/video/{{task_id}}/extend"
        path = f"/api/{family}/v1/video/no-such-task/extend"
        probe.call(extend, path, json={"prompt": "x"}, headers=probe.key_headers())
        probe.call(extend, path, json={"prompt": "x", "creativity": "high"}, headers=probe.key_headers())


def test_every_route_documents_exactly_the_codes_it_answers(probe: Probe) -> None:
    spec = probe.client.get("/openapi.json").json()
    routes = documented(spec)
    assert set(routes) == set(EXPECTED), "add the new route and its error codes to EXPECTED"
    probe_every_route_generically(probe, sorted(routes))
    probe_the_task_routes(probe)
    probe_the_files(probe)
    probe_the_worker_routes(probe)
    probe_the_legacy_routes(probe)
    probe_the_admin_routes(probe.call, probe.operator_headers(), probe.key, probe.poor_account_id, MAX_BODY)
    for route, codes in routes.items():
        assert codes == EXPECTED[route] | {DATABASE_DOWN}, route
        answered = probe.answered[route] - {200}
        assert answered <= codes, f"{route} answered {sorted(answered - codes)}, which it does not document"
        missing = codes - answered - NOT_PROVOKED.get(route, set()) - {DATABASE_DOWN}
        assert not missing, f"{route} documents {sorted(missing)} but the probes never saw them"


def test_no_route_documents_a_422_and_every_error_is_the_envelope(probe: Probe) -> None:
    spec = probe.client.get("/openapi.json").json()
    assert "HTTPValidationError" not in spec["components"]["schemas"]
    envelope = spec["components"]["schemas"]["ErrorEnvelope"]
    assert set(envelope["properties"]) == {"code", "data", "message", "detail"}
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            assert "422" not in operation["responses"], (method, path)
            for code, response in operation["responses"].items():
                if code != "200":
                    schema = response["content"]["application/json"]["schema"]
                    # the OpenAI-compatible routes answer OpenAI's error object; the body limit's 413 is the envelope
                    name = "OpenAIError" if path.startswith("/v1/") and code != "413" else "ErrorEnvelope"
                    assert schema == {"$ref": f"#/components/schemas/{name}"}, (method, path, code)


def test_the_security_schemes_are_those_the_server_checks(probe: Probe) -> None:
    spec = probe.client.get("/openapi.json").json()
    schemes = spec["components"]["securitySchemes"]
    assert schemes["APIKey"] == {
        "type": "apiKey",
        "in": "header",
        "name": "X-API-Key",
        "description": schemes["APIKey"]["description"],
    }
    assert schemes["WorkerToken"]["type"] == "http" and schemes["WorkerToken"]["scheme"] == "bearer"
    assert schemes["OperatorToken"]["type"] == "http" and schemes["OperatorToken"]["scheme"] == "bearer"
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            route = f"{method.upper()} {path}"
            security = operation.get("security")
            if path.startswith("/api/v1/workers/"):
                assert security == [{"WorkerToken": []}], route
            elif path.startswith("/v1/"):  # OpenAI's bearer key, or PiAPI's header
                assert security == [{"BearerKey": []}, {"APIKey": []}], route
            elif path.startswith("/admin/"):
                assert security == [{"OperatorToken": []}], route
            elif {400, 401} <= EXPECTED[route]:
                assert security == [{"APIKey": []}], route
            else:
                assert security is None, route
    assert spec["paths"]["/api/v1/task"]["post"]["responses"]["402"]
    assert spec["paths"]["/api/v1/task/{task_id}"]["get"]["responses"]["404"]


def body_schema(spec: dict[str, Any], path: str) -> dict[str, Any]:
    """The component schema a POST route names as its JSON request body."""
    ref = spec["paths"][path]["post"]["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    schema: dict[str, Any] = spec["components"]["schemas"][ref.rsplit("/", 1)[-1]]
    return schema


def test_the_legacy_routes_document_their_request_bodies(probe: Probe) -> None:
    spec = probe.client.get("/openapi.json").json()
    for path in (*LEGACY_CREATES, "/mj/v2/fetch", "/mj/v2/multi_fetch", "/mj/v2/cancel", "/api/face_swap/v1/fetch"):
        assert body_schema(spec, path)["properties"], path
    imagine = body_schema(spec, "/mj/v2/imagine")
    assert imagine["required"] == ["prompt"] and "webhook_endpoint" in imagine["properties"]
    kling = body_schema(spec, "/api/kling/v1/video")["properties"]
    assert {"creativity", "professional_mode", "tail_image_url", "camera"} <= set(kling)
