"""The Unified API through HTTP: envelopes, auth, validation, the task lifecycle, credits."""

from __future__ import annotations

import base64
from typing import Any

from PIL import Image
from tests.integration.conftest import Api
from tests.support import png_bytes

ZERO = "0001-01-01T00:00:00Z"


def upscale_body(scale: int = 2, image: str | None = None) -> dict[str, Any]:
    data = image or "data:image/png;base64," + base64.b64encode(png_bytes(12, 8)).decode()
    return {"model": "Qubico/image-toolkit", "task_type": "upscale", "input": {"image": data, "scale": scale}}


def credits(api: Api, key: str | None = None) -> dict[str, int]:
    r = api.client.get("/account/info", headers=api.h(key))
    assert r.status_code == 200
    return dict(r.json()["data"]["credit_pack_info"])


def test_auth_errors_use_the_envelope(api: Api) -> None:
    for headers in ({}, {"X-API-Key": "nope"}):
        r = api.client.get("/account/info", headers=headers)
        assert r.status_code == 401
        body = r.json()
        assert body["code"] == 401 and body["data"] is None and body["message"]
    assert api.client.get("/account/info", headers={"x-api-key": api.key}).status_code == 200


def test_a_revoked_key_is_refused_once_its_cached_check_lapses(api: Api) -> None:
    assert api.client.get("/account/info", headers=api.h()).status_code == 200  # now cached
    key_id = next(k.key_id for k in api.runtime.store.accounts.list_keys() if k.name == "k1")
    api.runtime.store.accounts.revoke_key(key_id)  # as `genmill keys revoke` does, from another process
    assert api.client.get("/account/info", headers=api.h()).status_code == 200  # within the cache lifetime
    api.runtime.keys.clear()  # the lifetime (GENMILL_AUTH_CACHE_SECONDS) has passed
    assert api.client.get("/account/info", headers=api.h()).status_code == 401
    assert api.client.get("/account/info", headers=api.h(api.key2)).status_code == 200


def test_framework_errors_use_the_envelope(api: Api) -> None:
    r = api.client.get("/api/v1/nowhere", headers=api.h())
    assert r.status_code == 404 and r.json()["code"] == 404 and "detail" not in r.json()
    r = api.client.put("/api/v1/task", headers=api.h())
    assert r.status_code == 405 and r.json()["code"] == 405
    r = api.client.post("/api/v1/task", headers={**api.h(), "content-type": "application/json"}, content=b"{bad")
    assert r.status_code == 400 and r.json()["code"] == 400
    r = api.client.post("/api/v1/task", headers=api.h(), json={"model": "Qubico/image-toolkit", "task_type": "upscale"})
    assert r.status_code == 400 and "input" in r.json()["message"]


def test_validation_names_the_field(api: Api) -> None:
    r = api.client.post("/api/v1/task", headers=api.h(), json=upscale_body(scale=11))
    assert r.status_code == 400 and "input.scale" in r.json()["message"]
    r = api.client.post("/api/v1/task", headers=api.h(), json={"model": "No/such", "task_type": "x", "input": {}})
    assert r.status_code == 400 and "model" in r.json()["message"]
    r = api.client.post(
        "/api/v1/task",
        headers=api.h(),
        json={"model": "Qubico/image-toolkit", "task_type": "dance", "input": {}},
    )
    assert r.status_code == 400 and "task_type" in r.json()["message"] and "upscale" in r.json()["message"]
    r = api.client.post(
        "/api/v1/task",
        headers=api.h(),
        json={**upscale_body(), "config": {"webhook_config": {"endpoint": "ftp://x"}}},
    )
    assert r.status_code == 400 and "webhook_config.endpoint" in r.json()["message"]
    assert credits(api)["frozen_credits"] == 0


def test_a_model_no_worker_serves_is_refused_without_charge(api: Api) -> None:
    before = credits(api)
    r = api.client.post(
        "/api/v1/task",
        headers=api.h(),
        json={"model": "Qubico/tts", "task_type": "zero-shot", "input": {"gen_text": "hi"}},
    )
    assert r.status_code == 400
    assert "no worker" in r.json()["message"] and "Qubico/image-toolkit/upscale" in r.json()["message"]
    assert credits(api) == before
    models = api.client.get("/api/v1/models").json()["data"]
    tts = next(m for m in models["models"] if m["model"] == "Qubico/tts")
    assert tts["available"] is False and "gen_text" in str(tts["input_schema"])
    missing = next(b for b in models["backends"] if b["name"] == "test-missing")
    assert missing["reason"] == "test backend is never available"


def test_lifecycle_create_get_run_download(api: Api) -> None:
    before = credits(api)
    r = api.client.post("/api/v1/task", headers=api.h(), json=upscale_body(scale=3))
    assert r.status_code == 200
    body = r.json()
    assert body["code"] == 200 and body["message"] == "success"
    task = body["data"]
    assert task["status"] == "pending" and task["input"]["scale"] == 3 and task["input"]["face_enhance"] is False
    assert task["meta"]["started_at"] == ZERO and task["meta"]["ended_at"] == ZERO
    assert task["meta"]["usage"] == {"type": "quota", "frozen": task["meta"]["usage"]["frozen"], "consume": 0}
    assert task["config"] == {"service_mode": "", "webhook_config": {"endpoint": "", "secret": ""}}
    price = task["meta"]["usage"]["frozen"]
    assert price > 0 and credits(api)["available_credits"] == before["available_credits"] - price

    assert api.run_worker()
    done = api.client.get(f"/api/v1/task/{task['task_id']}", headers=api.h()).json()["data"]
    assert done["status"] == "completed", done
    assert done["meta"]["usage"]["frozen"] == 0 and done["meta"]["usage"]["consume"] == price
    assert done["meta"]["started_at"] != ZERO and done["meta"]["ended_at"] != ZERO
    assert any("resizing 12x8 by 3" in line for line in done["logs"])
    url = done["output"]["image_url"]
    assert url.startswith("http://testserver/files/")
    file = api.client.get(url.removeprefix("http://testserver"))
    assert file.status_code == 200 and file.headers["content-type"] == "image/png"
    from io import BytesIO

    assert Image.open(BytesIO(file.content)).size == (36, 24)
    after = credits(api)
    assert after["used_credits"] == before["used_credits"] + price
    assert after["total_credits"] == before["total_credits"]


def test_backend_failure_releases_credits_and_reports_error(api: Api) -> None:
    before = credits(api)
    image = "data:image/png;base64," + base64.b64encode(png_bytes(8, 8)).decode()
    r = api.client.post(
        "/api/v1/task",
        headers=api.h(),
        json={"model": "Qubico/image-toolkit", "task_type": "background-remove", "input": {"image": image}},
    )
    task_id = r.json()["data"]["task_id"]
    assert api.run_worker()
    task = api.client.get(f"/api/v1/task/{task_id}", headers=api.h()).json()["data"]
    assert task["status"] == "failed"
    assert task["error"]["code"] != 0 and "rejected" in task["error"]["message"]
    assert task["error"]["raw_message"] == "bad tensor shape" and "about to fail" in task["logs"]
    assert task["meta"]["usage"] == {"type": "quota", "frozen": 0, "consume": 0}
    assert credits(api) == before


def test_unreachable_input_fails_the_task_with_a_named_field(api: Api) -> None:
    r = api.client.post("/api/v1/task", headers=api.h(), json=upscale_body(image="http://127.0.0.1:9/none.png"))
    task_id = r.json()["data"]["task_id"]
    api.run_worker()
    task = api.client.get(f"/api/v1/task/{task_id}", headers=api.h()).json()["data"]
    assert task["status"] == "failed" and "input.image" in task["error"]["message"]


def test_isolation_between_accounts(api: Api) -> None:
    task_id = api.client.post("/api/v1/task", headers=api.h(), json=upscale_body()).json()["data"]["task_id"]
    for method, path in (
        ("GET", f"/api/v1/task/{task_id}"),
        ("DELETE", f"/api/v1/task/{task_id}"),
        ("POST", f"/api/v1/task/{task_id}/cancel"),
    ):
        r = api.client.request(method, path, headers=api.h(api.key2))
        assert r.status_code == 404 and r.json()["code"] == 404
    hist = api.client.get("/api/open/tasks/histories", headers=api.h(api.key2)).json()["data"]
    assert hist["total"] == 0 and task_id not in str(hist)


def test_cancel_both_forms_and_refusal(api: Api) -> None:
    before = credits(api)
    a = api.client.post("/api/v1/task", headers=api.h(), json=upscale_body()).json()["data"]["task_id"]
    b = api.client.post("/api/v1/task", headers=api.h(), json=upscale_body()).json()["data"]["task_id"]
    r = api.client.delete(f"/api/v1/task/{a}", headers=api.h())
    assert r.status_code == 200 and r.json()["message"] == f"task {a} canceled"
    assert r.json()["data"]["status"] == "cancelled"
    r = api.client.post(f"/api/v1/task/{b}/cancel", headers=api.h())
    assert r.status_code == 200
    r = api.client.delete(f"/api/v1/task/{a}", headers=api.h())
    assert r.status_code == 400 and "cancelled" in r.json()["message"]
    assert credits(api) == before
    assert api.client.get(f"/api/v1/task/{a}", headers=api.h()).json()["data"]["status"] == "cancelled"


def test_staging_active_tasks_and_cancel_many(api: Api) -> None:
    ids = [api.client.post("/api/v1/task", headers=api.h(), json=upscale_body()).json()["data"] for _ in range(4)]
    assert [t["status"] for t in ids] == ["pending", "pending", "staged", "staged"]
    active = api.client.get("/account/active_tasks", headers=api.h()).json()["data"]
    group = active["image_toolkit"]
    assert (group["pending_count"], group["processing_count"], group["staged_count"]) == (2, 0, 2)
    assert len(group["active_tasks"]) == 4
    assert api.run_worker()  # completes one, promotes the first staged
    statuses = [api.client.get(f"/api/v1/task/{t['task_id']}", headers=api.h()).json()["data"]["status"] for t in ids]
    assert statuses == ["completed", "pending", "pending", "staged"]
    import time

    r = api.client.delete(f"/api/v1/tasks?created_before={int(time.time()) + 5}&model=all", headers=api.h())
    assert r.status_code == 200 and r.json()["data"]["count"] == 3
    assert api.client.get("/account/active_tasks", headers=api.h()).json()["data"] == {}
    info = credits(api)
    assert info["frozen_credits"] == 0 and info["available_credits"] + info["used_credits"] == info["total_credits"]


def test_history_paging_and_filters(api: Api) -> None:
    made = [
        api.client.post("/api/v1/task", headers=api.h(), json=upscale_body()).json()["data"]["task_id"]
        for _ in range(3)
    ]
    page1 = api.client.get("/api/open/tasks/histories?page=1&page_size=2", headers=api.h()).json()["data"]
    page2 = api.client.get("/api/open/tasks/histories?page=2&page_size=2", headers=api.h()).json()["data"]
    assert page1["total"] == 3 and page1["page"] == 1 and page1["size"] == 2
    listed = [t["task_id"] for t in page1["data"] + page2["data"]]
    assert listed == list(reversed(made))
    assert api.client.get("/api/open/tasks/histories?page_size=101", headers=api.h()).status_code == 400
    none = api.client.get("/api/open/tasks/histories?model=flux", headers=api.h()).json()["data"]
    assert none["total"] == 0
    staged = api.client.get("/api/open/tasks/histories?status=staged", headers=api.h()).json()["data"]
    assert staged["total"] == 1
    future = api.client.get("/api/open/tasks/histories?start_time=4102444800", headers=api.h()).json()["data"]
    assert future["total"] == 0


def test_not_enough_credits_is_a_4xx_and_creates_nothing(api: Api) -> None:
    poor = api.runtime.store.accounts.create_account("poor", credits=5)
    key, _ = api.runtime.store.accounts.create_key(poor.account_id)
    r = api.client.post("/api/v1/task", headers=api.h(key), json=upscale_body())
    assert r.status_code == 402 and "credits" in r.json()["message"]
    assert api.client.get("/api/open/tasks/histories", headers=api.h(key)).json()["data"]["total"] == 0


def test_private_service_mode_is_refused_clearly(api: Api) -> None:
    r = api.client.post("/api/v1/task", headers=api.h(), json={**upscale_body(), "config": {"service_mode": "private"}})
    assert r.status_code == 400 and "service_mode" in r.json()["message"]


def test_webhook_config_is_persisted_and_echoed(api: Api) -> None:
    config = {
        "service_mode": "public",
        "webhook_config": {"endpoint": "https://example.com/h", "secret": "s"},
    }
    task = api.client.post("/api/v1/task", headers=api.h(), json={**upscale_body(), "config": config}).json()["data"]
    assert task["config"] == config
    again = api.client.get(f"/api/v1/task/{task['task_id']}", headers=api.h()).json()["data"]
    assert again["config"] == config


def test_openapi_and_docs(api: Api) -> None:
    spec = api.client.get("/openapi.json").json()
    assert "/api/v1/task" in spec["paths"] and "/api/ephemeral_resource" in spec["paths"]
    assert api.client.get("/docs").status_code == 200


def test_priority_orders_claims(api: Api) -> None:
    low = api.client.post("/api/v1/task", headers=api.h(), json=upscale_body()).json()["data"]["task_id"]
    high = api.client.post("/api/v1/task", headers=api.h(), json={**upscale_body(), "config": {"priority": 5}}).json()[
        "data"
    ]["task_id"]
    bad = api.client.post("/api/v1/task", headers=api.h(), json={**upscale_body(), "config": {"priority": 1000}})
    assert bad.status_code == 400 and "priority" in bad.json()["message"]
    assert api.run_worker()
    assert api.client.get(f"/api/v1/task/{high}", headers=api.h()).json()["data"]["status"] == "completed"
    assert api.client.get(f"/api/v1/task/{low}", headers=api.h()).json()["data"]["status"] == "pending"
