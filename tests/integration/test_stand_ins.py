"""Stand-ins serve only where the operator enabled them, and what runs an entry is visible before anyone pays:
`/api/v1/models`, `genmill models` and the task's `detail` carry `served_by`; inputs a backend cannot honour are
refused at create with no credit moved; an input a backend rejects while running fails the task with 10001."""

from __future__ import annotations

import base64
import importlib.util
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from tests.integration.test_remote_workers import Served, remote_worker, served  # noqa: F401 - fixture
from tests.support import PillowUpscale, png_bytes

from genmill import cli
from genmill.app import Runtime, create_app
from genmill.backends.base import Availability, Backend, RunContext, ServedBy
from genmill.catalog import build_catalog
from genmill.domain.catalog import CatalogEntry, TaskInput
from genmill.errors import InputRejected
from genmill.settings import Settings
from genmill.worker.backendset import BackendSet, StandIns

ACE_STEP = ("Qubico/ace-step", "txt2audio")
UPSCALE = ("Qubico/image-toolkit", "upscale")
TTS = ("Qubico/tts", "zero-shot")
CATALOG = build_catalog()


class FakeMusic(Backend):
    """Another model than the one the entry names: a stand-in, as MusicGen is for ACE-Step."""

    name = "fake-music"
    entries = (ACE_STEP,)

    def served_by(self, entry: CatalogEntry) -> ServedBy:
        return ServedBy("FakeGen", stand_in=True, limits=("lyrics are not sung",))

    def availability(self) -> Availability:
        return Availability(True)

    def load(self) -> None:
        pass

    def run(self, entry: CatalogEntry, inputs: TaskInput, ctx: RunContext) -> dict[str, Any]:
        ctx.progress(0.5, "half way")  # a progress write must keep served_by in the detail
        return {"audio_url": ctx.save_output(b"RIFF", ext="wav", content_type="audio/wav")}


class RejectsInput(PillowUpscale):
    """A backend that finds, while running, an input it cannot use."""

    name = "test-rejects-input"

    def run(self, entry: CatalogEntry, inputs: TaskInput, ctx: RunContext) -> dict[str, Any]:
        raise InputRejected("image: 4000x3000 is larger than 2048x2048")


@pytest.fixture
def make_api(tmp_path: Path) -> Iterator[Any]:
    made: list[tuple[TestClient, Runtime]] = []

    def make(backends: list[Backend], **settings: Any) -> tuple[TestClient, Runtime, str, str]:
        config = Settings(data_dir=tmp_path / str(len(made)), public_url="http://testserver", workers=1, **settings)
        runtime = Runtime(config, backends=backends)
        client = TestClient(create_app(config, runtime=runtime, run_workers=False))
        client.__enter__()
        made.append((client, runtime))
        account = runtime.store.accounts.create_account("one", credits=10_000_000)
        key, _ = runtime.store.accounts.create_key(account.account_id)
        return client, runtime, key, account.account_id

    yield make
    for client, runtime in made:
        client.__exit__(None, None, None)
        runtime.store.close()


def create(client: TestClient, key: str, entry: tuple[str, str], fields: dict[str, Any]) -> Any:
    body = {"model": entry[0], "task_type": entry[1], "input": fields}
    return client.post("/api/v1/task", headers={"X-API-Key": key}, json=body)


def credits(runtime: Runtime, account_id: str) -> tuple[int, int]:
    balances = runtime.store.accounts.get(account_id).balances
    return balances.available, balances.frozen


def models_by_key(client: TestClient) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    data = client.get("/api/v1/models").json()["data"]
    return {f"{m['model']}/{m['task_type']}": m for m in data["models"]}, data["backends"]


def test_a_stand_in_is_refused_at_create_until_the_operator_enables_it(make_api: Any) -> None:
    client, runtime, key, account_id = make_api([FakeMusic(), PillowUpscale()])
    before = credits(runtime, account_id)
    refused = create(client, key, ACE_STEP, {"style_prompt": "jazz", "duration": 5})
    assert refused.status_code == 400
    message = refused.json()["message"]
    assert "stand-in not enabled: FakeGen stands in for Qubico/ace-step" in message
    assert "GENMILL_STAND_INS=fake-music" in message
    assert credits(runtime, account_id) == before
    models, backends = models_by_key(client)
    ace = models["Qubico/ace-step/txt2audio"]
    assert ace["available"] is False and ace["served_by"] is None and "stand-in not enabled" in ace["reason"]
    fake = next(b for b in backends if b["name"] == "fake-music")
    assert fake["served_by"]["Qubico/ace-step/txt2audio"]["stand_in"] is True
    assert "stand-in not enabled" in fake["not_served"]["Qubico/ace-step/txt2audio"]


@pytest.mark.parametrize("setting", ["all", "fake-music", "Qubico/ace-step", "Qubico/ace-step/txt2audio"])
def test_an_enabled_stand_in_serves_and_the_task_says_so_in_its_detail(make_api: Any, setting: str) -> None:
    client, runtime, key, _ = make_api([FakeMusic(), PillowUpscale()], stand_ins=setting)
    created = create(client, key, ACE_STEP, {"style_prompt": "jazz", "duration": 5})
    assert created.status_code == 200, created.text
    assert runtime.workers[0].run_once()
    task = client.get(f"/api/v1/task/{created.json()['data']['task_id']}", headers={"X-API-Key": key}).json()
    assert task["data"]["status"] == "completed"
    served_by = {"model": "FakeGen", "stand_in": True, "limits": ["lyrics are not sung"]}
    assert task["data"]["detail"] == {"served_by": served_by, "progress": 0.5, "note": "half way"}
    models, _ = models_by_key(client)
    assert models["Qubico/ace-step/txt2audio"]["served_by"] == served_by
    available = [m for m in models.values() if m["available"]]
    assert available and all(isinstance(m["served_by"], dict) and m["served_by"]["model"] for m in available)
    assert all(m["served_by"] is None for m in models.values() if not m["available"])


def test_stand_in_setting_parses_and_refuses_mixing_all_with_names() -> None:
    assert StandIns.parse("none") == StandIns() == StandIns.parse("")
    assert StandIns.parse("ALL").every
    assert StandIns.parse(" musicgen , Qubico/mmaudio ").names == {"musicgen", "Qubico/mmaudio"}
    with pytest.raises(ValueError, match="stand alone"):
        Settings(stand_ins="all,musicgen")
    entry = CATALOG.get(*ACE_STEP)
    assert entry is not None
    assert not BackendSet([FakeMusic()], CATALOG).can_run(*ACE_STEP)
    assert BackendSet([FakeMusic()], CATALOG, stand_ins=StandIns.parse("fake-music")).can_run(*ACE_STEP)


def test_genmill_models_marks_stand_ins_and_limits(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    monkeypatch.setattr("genmill.backends.registry.discover_backends", lambda *a, **k: [FakeMusic()])
    monkeypatch.delenv("GENMILL_STAND_INS", raising=False)
    assert cli.main(["models", "--models-dir", str(tmp_path)]) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if "Qubico/ace-step  txt2audio" in x)
    assert line.startswith("missing") and "stand-in not enabled: FakeGen stands in for Qubico/ace-step" in line
    monkeypatch.setenv("GENMILL_STAND_INS", "all")
    assert cli.main(["models", "--models-dir", str(tmp_path)]) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if "Qubico/ace-step  txt2audio" in x)
    assert line == "available  Qubico/ace-step  txt2audio  [stand-in: FakeGen]  [limits: lyrics are not sung]"


def test_an_input_rejected_while_running_fails_with_10001_and_releases_the_credits(make_api: Any) -> None:
    client, runtime, key, account_id = make_api([RejectsInput()])
    before = credits(runtime, account_id)
    image = base64.b64encode(png_bytes(6, 4)).decode()
    created = create(client, key, UPSCALE, {"image": image, "scale": 2})
    assert created.status_code == 200 and credits(runtime, account_id) != before
    assert runtime.workers[0].run_once()
    task = client.get(f"/api/v1/task/{created.json()['data']['task_id']}", headers={"X-API-Key": key}).json()
    assert task["data"]["status"] == "failed"
    assert task["data"]["error"]["code"] == 10001
    assert task["data"]["error"]["message"] == "image: 4000x3000 is larger than 2048x2048"
    assert credits(runtime, account_id) == before


def test_a_remote_worker_keeps_10001_and_sends_served_by(served: Served) -> None:  # noqa: F811 - fixture
    import httpx

    _, key = served.account()
    token, _ = served.runtime.store.workers.create_token("gpu-1")
    worker, transport = remote_worker(served.url, token, RejectsInput())
    body = {
        "model": UPSCALE[0],
        "task_type": UPSCALE[1],
        "input": {"image": base64.b64encode(png_bytes(6, 4)).decode(), "scale": 2},
    }
    created = httpx.post(served.url + "/api/v1/task", headers={"X-API-Key": key}, json=body, timeout=30)
    assert worker.run_once()
    task = served.task(key, created.json()["data"]["task_id"])
    assert task["status"] == "failed" and task["error"]["code"] == 10001
    assert task["detail"]["served_by"] == {"model": "test-rejects-input", "stand_in": False, "limits": []}
    transport.close()


piper_missing = importlib.util.find_spec("piper") is None


@pytest.mark.skipif(piper_missing, reason="piper-tts is not installed")
@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"gen_text": "hello", "ref_audio": "https://example.com/voice.wav"}, "input.ref_audio: voice cloning"),
        ({"gen_text": "你好世界。今天天气很好。"}, "input.gen_text: the voice here speaks English (en_US) only"),
        ({"gen_text": "Привет, как дела?"}, "letter(s) are outside its script"),
    ],
)
def test_tts_refuses_what_piper_cannot_speak_at_create_with_no_credit_moved(
    make_api: Any, fields: dict[str, Any], expected: str
) -> None:
    from genmill.models.tts.piper import PiperTtsBackend

    client, runtime, key, account_id = make_api([PiperTtsBackend()])
    before = credits(runtime, account_id)
    refused = create(client, key, TTS, fields)
    assert refused.status_code == 400 and expected in refused.json()["message"]
    assert credits(runtime, account_id) == before
    assert create(client, key, TTS, {"gen_text": "Café au lait, naïve, 42 €."}).status_code == 200
    models, _ = models_by_key(client)
    tts = models["Qubico/tts/zero-shot"]["served_by"]
    assert tts["stand_in"] is False and any("ref_audio" in limit for limit in tts["limits"])
