"""`GET /api/v1/models` gives each entry's list price: what a task with the default input reserves."""

from __future__ import annotations

import base64
from typing import Any

from tests.integration.conftest import Api
from tests.support import png_bytes


def entries(api: Api) -> dict[tuple[str, str], dict[str, Any]]:
    models = api.client.get("/api/v1/models").json()["data"]["models"]
    return {(m["model"], m["task_type"]): m for m in models}


def test_the_list_price_is_what_a_task_with_default_input_reserves(api: Api) -> None:
    upscale = entries(api)[("Qubico/image-toolkit", "upscale")]
    assert upscale["list_price_credits"] == 20_000  # $0.002, docs/credits.md

    def available() -> int:
        info = api.client.get("/account/info", headers=api.h()).json()["data"]["credit_pack_info"]
        return int(info["available_credits"])

    before = available()
    image = "data:image/png;base64," + base64.b64encode(png_bytes(8, 8)).decode()
    body = {"model": "Qubico/image-toolkit", "task_type": "upscale", "input": {"image": image}}
    r = api.client.post("/api/v1/task", headers=api.h(), json=body)
    assert r.status_code == 200, r.text
    assert before - available() == upscale["list_price_credits"]


def test_a_price_that_needs_an_input_without_default_is_null(api: Api) -> None:
    listed = entries(api)
    # zero-shot TTS is priced by the length of gen_text, which has no default
    assert listed[("Qubico/tts", "zero-shot")]["list_price_credits"] is None
    assert all(m["list_price_credits"] is None or m["list_price_credits"] >= 0 for m in listed.values())
    assert listed[("midjourney", "imagine")]["list_price_credits"] == 450_000  # fast mode, the default
