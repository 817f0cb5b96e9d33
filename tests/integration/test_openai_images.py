"""The OpenAI-compatible image models over real HTTP: `POST /v1/images/generations` (gpt-image-1) and gpt-4o-image
in chat, drawn by a loopback server of OpenAI's Images API, stored here, and billed per image."""

from __future__ import annotations

import base64
import io
import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image
from tests.integration.openai_app import POOR_CREDITS, Chat, serve_chat_api
from tests.integration.openai_upstream import serve_upstream

from genmill.domain.catalog import usd
from genmill.domain.states import TaskStatus

CREDITS = 10_000_000
PER_IMAGE = usd(0.02)


@pytest.fixture
def images(tmp_path: Path) -> Iterator[Chat]:
    with serve_upstream() as upstream:
        models = {
            "gpt-image-1": {"base_url": upstream.url},
            "gpt-4o-image": {"base_url": upstream.url},
            "gpt-4o-image-preview": {"base_url": upstream.url, "model": "gpt-4o-image"},
        }
        with serve_chat_api(tmp_path, upstream, models, credits=CREDITS, stand_ins="gpt-4o-image-preview") as served:
            yield served


def fetch_png(chat: Chat, url: str) -> Image.Image:
    r = chat.http.get(url)
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    return Image.open(io.BytesIO(r.content))


def test_images_come_back_as_urls_of_stored_copies_billed_per_image(images: Chat) -> None:
    r = images.post(
        {"model": "gpt-image-1", "prompt": "a red fox", "n": 2, "size": "1024x1024"}, path="/v1/images/generations"
    )
    assert r.status_code == 200, r.text
    answer = r.json()
    assert set(answer) == {"created", "data"} and len(answer["data"]) == 2
    for item in answer["data"]:
        assert set(item) == {"url"} and item["url"].startswith(images.url + "/files/")
        assert fetch_png(images, item["url"]).size == (8, 6)
    sent = images.upstream.bodies[0]
    assert sent == {
        "size": "1024x1024",
        "prompt": "a red fox",
        "n": 2,
        "response_format": "b64_json",
        "model": "gpt-image-1",
    }
    assert images.balances() == (CREDITS - 2 * PER_IMAGE, 0, 2 * PER_IMAGE)
    (task,) = images.runtime.store.tasks.history(
        images.account_id, page=1, page_size=5, model=None, start=None, end=None, status=None
    ).tasks
    assert task.status is TaskStatus.COMPLETED and task.family == "gpts" and task.task_type == "image_generation"
    assert task.output == answer


def test_b64_json_answers_carry_the_image_bytes(images: Chat) -> None:
    body = {"model": "gpt-image-1", "prompt": "a red fox", "response_format": "b64_json"}
    r = images.post(body, path="/v1/images/generations")
    assert r.status_code == 200
    (item,) = r.json()["data"]
    assert Image.open(io.BytesIO(base64.b64decode(item["b64_json"]))).size == (8, 6)


def test_gpt_4o_image_answers_a_chat_call_with_the_image_in_markdown(images: Chat) -> None:
    body = {
        "model": "gpt-4o-image",
        "messages": [{"role": "user", "content": [{"type": "text", "text": "draw a red fox"}]}],
        "stream": True,
    }
    with images.http.stream("POST", f"{images.url}/v1/chat/completions", json=body, headers=images.bearer()) as r:
        assert r.status_code == 200
        events = [line.removeprefix("data: ") for line in r.iter_lines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in map(json.loads, events[:-1]) if c["choices"])
    found = re.fullmatch(r"!\[image\]\((?P<url>[^)]+)\)", text)
    assert found is not None and found["url"].startswith(images.url + "/files/")
    assert fetch_png(images, found["url"]).size == (8, 6)
    assert images.upstream.bodies[0]["prompt"] == "draw a red fox"
    assert images.balances() == (CREDITS - PER_IMAGE, 0, PER_IMAGE)


def test_the_preview_alias_is_its_own_model_name_served_as_a_stand_in_only_when_enabled(images: Chat) -> None:
    listed = images.http.get(f"{images.url}/v1/models", headers=images.bearer()).json()["data"]
    served = {m["id"]: m["served_by"] for m in listed}
    assert set(served) == {"gpt-image-1", "gpt-4o-image", "gpt-4o-image-preview"}
    assert served["gpt-4o-image-preview"]["stand_in"] is True and served["gpt-4o-image"]["stand_in"] is False
    body = {"model": "gpt-4o-image-preview", "messages": [{"role": "user", "content": "a fox"}]}
    r = images.post(body)
    assert r.status_code == 200
    assert r.json()["choices"][0]["message"]["content"].startswith("![image](")


def test_image_calls_are_refused_before_anyone_pays(images: Chat) -> None:
    short = images.post({"model": "gpt-image-1", "prompt": "a fox"}, key=images.poor_key, path="/v1/images/generations")
    assert short.status_code == 402 and short.json()["error"]["type"] == "insufficient_quota"
    too_many = images.post({"model": "gpt-image-1", "prompt": "a fox", "n": 5}, path="/v1/images/generations")
    assert too_many.status_code == 400 and too_many.json()["error"]["param"] == "n"
    no_prompt = images.post({"model": "gpt-image-1"}, path="/v1/images/generations")
    assert no_prompt.status_code == 400 and no_prompt.json()["error"]["param"] == "prompt"
    chat_model = images.post({"model": "gpt-4o-image", "prompt": "a fox"}, path="/v1/images/generations")
    assert chat_model.status_code == 404 and chat_model.json()["error"]["code"] == "model_not_found"
    no_text = images.post({"model": "gpt-4o-image", "messages": [{"role": "system", "content": "x"}]})
    assert no_text.status_code == 400 and no_text.json()["error"]["param"] == "messages"
    assert images.upstream.bodies == []
    assert images.balances() == (CREDITS, 0, 0)
    poor = next(a for a in images.runtime.store.accounts.list_accounts() if a.name == "poor")
    assert poor.balances.available == POOR_CREDITS


def test_a_failed_drawing_is_a_502_and_releases_the_credits(images: Chat) -> None:
    images.upstream.status = 500
    r = images.post({"model": "gpt-image-1", "prompt": "a fox"}, path="/v1/images/generations")
    assert r.status_code == 502 and "the model is overloaded" in r.json()["error"]["message"]
    assert images.balances() == (CREDITS, 0, 0)
