"""The dashboard's files and the price quote, through the HTTP API (the browser tests drive the pages)."""

from __future__ import annotations

import base64
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from tests.support import PillowUpscale, png_bytes

from genmill.app import Runtime, create_app
from genmill.settings import Settings

UPSCALE = {"model": "Qubico/image-toolkit", "task_type": "upscale"}


@pytest.fixture
def client(tmp_path: Path) -> Iterator[tuple[TestClient, str, Runtime]]:
    settings = Settings(data_dir=tmp_path, public_url="http://testserver", workers=1)
    runtime = Runtime(settings, backends=[PillowUpscale()])
    account = runtime.store.accounts.create_account("a", credits=10**6)
    key, _ = runtime.store.accounts.create_key(account.account_id)
    with TestClient(create_app(settings, runtime=runtime)) as test_client:
        yield test_client, key, runtime
    runtime.store.close()


def test_root_leads_to_the_dashboard_served_with_a_strict_csp(client: tuple[TestClient, str, Runtime]) -> None:
    http, _, _ = client
    root = http.get("/", follow_redirects=False)
    assert root.status_code == 307 and root.headers["location"] == "/dashboard/"
    page = http.get("/dashboard/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    policy = page.headers["content-security-policy"]
    directives = dict(d.strip().split(" ", 1) for d in policy.split(";"))
    # Scripts from this origin only; WebAssembly may be compiled (the 3D viewer's mesh decoder), JS never evaluated.
    assert directives["script-src"] == "'self' 'wasm-unsafe-eval'"
    assert "unsafe-inline" not in policy and "'unsafe-eval'" not in policy
    assert "default-src 'none'" in policy and "frame-ancestors 'none'" in policy
    assert page.headers["x-content-type-options"] == "nosniff"
    # No inline script: every <script> names a file of this origin.
    scripts = re.findall(r"<script([^>]*)>(.*?)</script>", page.text, re.S)
    assert scripts and all('src="' in attrs and body.strip() == "" for attrs, body in scripts)
    for name in re.findall(r'(?:src|href)="([a-z]+\.(?:js|css))"', page.text):
        asset = http.get(f"/dashboard/{name}")
        assert asset.status_code == 200 and asset.headers["content-security-policy"] == policy, name


def test_only_the_dashboards_own_files_are_served(client: tuple[TestClient, str, Runtime]) -> None:
    http, _, _ = client
    assert http.get("/dashboard/app.js").headers["content-type"].startswith("text/javascript")
    for name in ("missing.js", "..%2Froutes.py", "__init__.py", ".hidden.js", "routes.py"):
        answer = http.get(f"/dashboard/{name}")
        assert answer.status_code == 404, name
        assert answer.json()["code"] == 404


def quote(http: TestClient, key: str, body: dict[str, Any]) -> Any:
    return http.post("/api/v1/price", headers={"X-API-Key": key}, json=body)


def test_a_quote_is_the_price_a_create_freezes_and_creates_nothing(client: tuple[TestClient, str, Runtime]) -> None:
    http, key, _ = client
    image = base64.b64encode(png_bytes(8, 8)).decode()
    before = http.get("/account/info", headers={"X-API-Key": key}).json()["data"]["credit_pack_info"]
    answer = quote(http, key, {**UPSCALE, "input": {"image": image, "scale": 4}})
    assert answer.status_code == 200, answer.json()
    quoted = answer.json()["data"]
    assert quoted["available"] is True and quoted["served_by"]["model"] == "test-pillow-upscale"
    assert quoted["price_credits"] > 0 and quoted["equivalent_in_usd"] == quoted["price_credits"] / 10_000_000
    after = http.get("/account/info", headers={"X-API-Key": key}).json()["data"]["credit_pack_info"]
    assert after == before
    listed = http.get("/api/open/tasks/histories", headers={"X-API-Key": key}).json()["data"]
    assert listed["total"] == 0
    created = http.post(
        "/api/v1/task", headers={"X-API-Key": key}, json={**UPSCALE, "input": {"image": image, "scale": 4}}
    )
    assert created.json()["data"]["meta"]["usage"]["frozen"] == quoted["price_credits"]


def test_a_quote_refuses_bad_input_naming_the_field(client: tuple[TestClient, str, Runtime]) -> None:
    http, key, _ = client
    image = base64.b64encode(png_bytes(8, 8)).decode()
    answer = quote(http, key, {**UPSCALE, "input": {"image": image, "scale": 11}})
    assert answer.status_code == 400
    assert answer.json()["message"] == "input.scale: Input should be less than or equal to 10"
    unknown = quote(http, key, {"model": "Qubico/image-toolkit", "task_type": "nope", "input": {}})
    assert unknown.status_code == 400 and "task_type" in unknown.json()["message"]
    assert quote(http, "wrong", {**UPSCALE, "input": {"image": "x"}}).status_code == 401


def test_an_entry_not_served_here_is_quoted_with_the_reason(client: tuple[TestClient, str, Runtime]) -> None:
    http, key, _ = client
    answer = quote(
        http,
        key,
        {
            "model": "Qubico/image-toolkit",
            "task_type": "background-remove",
            "input": {"image": "https://example.com/a.png"},
        },
    )
    assert answer.status_code == 200, answer.json()
    quoted = answer.json()["data"]
    assert quoted["available"] is False and quoted["served_by"] is None and quoted["price_credits"] > 0
