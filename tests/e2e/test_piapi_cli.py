"""A public PiAPI client, unchanged, against genmill: piapi-skills' `piapi-cli` (from PyPI, in the dev extra).

Two real genmill servers on loopback: the front, which clients talk to, runs nothing itself and forwards every
Midjourney and Kling task to the upstream (GENMILL_UPSTREAM_* as an operator sets it) and every gpt-4o-mini chat
call to the upstream's OpenAI-compatible API (GENMILL_LLM_MODELS); the upstream serves them with its stand-ins
(FLUX.1 for Midjourney, Wan for Kling, a local transformers model for gpt-4o-mini) on tiny random models, enabled
as an operator enables them (GENMILL_STAND_INS). `piapi-cli` runs as a subprocess with only PIAPI_API_BASE,
PIAPI_LLM_BASE and PIAPI_API_KEY pointing at the front, and its own polling, status handling, stream parsing and
printing decide what it reports.
"""

from __future__ import annotations

import json
import json as jsonlib
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
pytest.importorskip("diffusers")
pytest.importorskip("ftfy")

from tests.backends import video_tiny
from tests.backends.test_flux import build_models
from tests.backends.test_midjourney import SMALL
from tests.backends.test_video_services import SEGMENT
from tests.backends.tiny_chat import save_tiny_chat_model
from tests.loopback import free_port, run_uvicorn

from genmill.app import Runtime, create_app
from genmill.backends.base import Backend
from genmill.backends.upstream import UpstreamBackend
from genmill.models.flux.midjourney import midjourney_backends
from genmill.models.flux.shared import FluxShared
from genmill.models.video.pipeline import VideoShared
from genmill.models.video.services import SERVICES, WanServiceBackend
from genmill.settings import Settings

pytestmark = [
    pytest.mark.backends,
    pytest.mark.filterwarnings("ignore:`FluxPosEmbed` is deprecated:FutureWarning"),
]

PIAPI_CLI = str(Path(sys.executable).parent / "piapi-cli")
FORWARDED = [("midjourney", "imagine"), ("kling", "text2video"), ("kling", "image2video")]
CREDITS = 10**10
CHAT_MODEL = "gpt-4o-mini"


@dataclass
class Server:
    url: str
    key: str
    runtime: Runtime


@contextmanager
def _serve(data_dir: Path, backends: list[Backend], **settings: Any) -> Iterator[Server]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    config = Settings(data_dir=data_dir, public_url=url, workers=1, allow_private_urls=True, **settings)
    runtime = Runtime(config, backends=backends)
    account = runtime.store.accounts.create_account("piapi-cli user", credits=CREDITS)
    key, _ = runtime.store.accounts.create_key(account.account_id)
    with closing(runtime.store), run_uvicorn(create_app(config, runtime=runtime), port, stop_timeout=15):
        yield Server(url, key, runtime)


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("piapi-cli-models")
    build_models(root)
    video_tiny.build_wan(root)
    save_tiny_chat_model(root / "tiny-chat")
    return root


@pytest.fixture(scope="module")
def upstream(models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """The second genmill: the stand-ins on tiny models, enabled by the operator."""
    backends: list[Backend] = [
        *midjourney_backends(models_dir, shared=FluxShared(device="cpu"), settings=SMALL),
        WanServiceBackend(SERVICES[0], models_dir, shared=VideoShared(device="cpu"), geometry=SEGMENT),
    ]
    with _serve(
        tmp_path_factory.mktemp("upstream"),
        backends,
        stand_ins="midjourney,kling-wan,gpt-4o-mini",
        llm_models=jsonlib.dumps({CHAT_MODEL: {"path": str(models_dir / "tiny-chat")}}),
    ) as server:
        yield server


@pytest.fixture(scope="module")
def front(upstream: Server, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """The genmill the client talks to: it forwards, meters its own account and keeps the outputs."""
    data_dir = tmp_path_factory.mktemp("front")
    forward = UpstreamBackend(
        base_url=upstream.url,
        api_key=upstream.key,
        entries=FORWARDED,
        poll_interval=0.2,
        timeout=300,
        allow_private=True,
        local_url="",
    )
    chat = {CHAT_MODEL: {"base_url": f"{upstream.url}/v1", "api_key": upstream.key}}
    with _serve(data_dir, [forward], llm_models=jsonlib.dumps(chat)) as server:
        forward.local_url = server.url
        yield server
        forward.unload()


def piapi_cli(front: Server, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        "PATH": os.environ.get("PATH", ""),
        "PIAPI_API_BASE": front.url,
        "PIAPI_LLM_BASE": f"{front.url}/v1",
        "PIAPI_API_KEY": front.key,
    }
    return subprocess.run([PIAPI_CLI, *args], env=env, capture_output=True, text=True, timeout=600, check=False)


def _fetch(url: str) -> httpx.Response:
    answer = httpx.get(url, timeout=30)
    assert answer.status_code == 200, url
    return answer


def test_piapi_cli_imagine_runs_on_the_forwarded_flux_stand_in(front: Server, upstream: Server) -> None:
    done = piapi_cli(front, "imagine", "a red fox in the snow", "--aspect", "1:1", "--poll-interval", "0.5")
    assert done.returncode == 0, done.stderr
    task = json.loads(done.stdout)["data"]
    assert (task["model"], task["task_type"], task["status"]) == ("midjourney", "imagine", "completed")
    output = task["output"]
    assert len(output["image_urls"]) == 4 and len(output["temporary_image_urls"]) == 4
    for url in [output["image_url"], *output["image_urls"]]:
        assert url.startswith(front.url + "/files/"), url  # copied into the front's own storage
        assert _fetch(url).headers["content-type"] == "image/png"
    assert "upstream_task_id" in task["detail"]
    assert task["detail"]["served_by"]["model"].startswith("upstream")
    upstream_task = httpx.get(
        f"{upstream.url}/api/v1/task/{task['detail']['upstream_task_id']}",
        headers={"X-API-Key": upstream.key},
        timeout=30,
    ).json()["data"]
    assert "stand-in for Midjourney" in upstream_task["detail"]["served_by"]["model"]


def test_piapi_cli_kling_runs_on_the_forwarded_wan_stand_in(front: Server) -> None:
    done = piapi_cli(front, "kling", "a fox trots across a meadow", "--duration", "5", "--poll-interval", "0.5")
    assert done.returncode == 0, done.stderr
    task = json.loads(done.stdout)["data"]
    assert (task["model"], task["task_type"], task["status"]) == ("kling", "text2video", "completed")
    video = task["output"]["works"][0]["video"]
    assert video["resource"].startswith(front.url + "/files/")
    assert _fetch(video["resource"]).content[4:8] == b"ftyp"  # an MP4 container
    stored = front.runtime.store.tasks.get_any(task["task_id"])
    assert stored.consumed_credits == stored.price > 0  # metered by the front at Kling's price


def _direct_answer(upstream: Server, prompt: str, max_tokens: int) -> str:
    """What the upstream's model answers when asked directly (greedy decoding: the same every time)."""
    body = {"model": CHAT_MODEL, "messages": [{"role": "user", "content": prompt}], "max_tokens": max_tokens}
    answer = httpx.post(
        f"{upstream.url}/v1/chat/completions",
        json=body,
        headers={"Authorization": f"Bearer {upstream.key}"},
        timeout=60,
    )
    assert answer.status_code == 200, answer.text
    return str(answer.json()["choices"][0]["message"]["content"])


@pytest.mark.parametrize("stream", [False, True], ids=["llm", "llm --stream"])
def test_piapi_cli_llm_is_answered_through_the_forwarded_chat_api(
    front: Server, upstream: Server, stream: bool
) -> None:
    prompt = "say the sky is blue"
    expected = _direct_answer(upstream, prompt, 6)
    used_before = _used(front)
    done = piapi_cli(front, "llm", CHAT_MODEL, prompt, "--max-tokens", "6", *(["--stream"] if stream else []))
    assert done.returncode == 0, done.stderr
    assert done.stdout == expected + "\n"
    assert expected.strip()
    history = httpx.get(
        f"{front.url}/api/open/tasks/histories", params={"model": "llm"}, headers={"X-API-Key": front.key}, timeout=30
    )
    assert history.status_code == 200, history.text
    newest = history.json()["data"]["data"][0]
    assert (newest["model"], newest["status"], newest["meta"]["usage"]["type"]) == (CHAT_MODEL, "completed", "llm")
    assert 0 < _used(front) - used_before == newest["meta"]["usage"]["consume"]


def _used(server: Server) -> int:
    info = httpx.get(f"{server.url}/account/info", headers={"X-API-Key": server.key}, timeout=30).json()["data"]
    return int(info["credit_pack_info"]["used_credits"])
