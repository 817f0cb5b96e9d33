"""PiAPI's other surfaces end to end against `genmill serve` (a real process, its own CPU backends): the legacy
face swap API and an operation on an earlier task (`origin_task_id`), each as a client of hosted PiAPI would
call it."""

from __future__ import annotations

import base64
import io
import time
from collections.abc import Callable, Iterator

import pytest
from PIL import Image
from tests.backends.memory import image_ref
from tests.backends.test_faces import portrait, striped
from tests.e2e.harness import Server, call

pytest.importorskip("mediapipe")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = Server(tmp_path_factory.mktemp("genmill-piapi-services"), GENMILL_ECHO_PRICE_CREDITS="5")
    srv.start()
    yield srv
    srv.stop()


def _poll(fetch: Callable[[], dict[str, object]], done: set[str], timeout: float = 120) -> dict[str, object]:
    deadline = time.time() + timeout
    answer = fetch()
    while answer["status"] not in done:
        assert time.time() < deadline, f"still {answer['status']} after {timeout:g}s"
        time.sleep(0.2)
        answer = fetch()
    return answer


def test_the_legacy_face_swap_api_swaps_a_real_portrait(server: Server) -> None:
    key = server.new_key("legacy")
    body = {"target_image": image_ref(portrait(), "JPEG"), "swap_image": image_ref(striped()), "result_type": "base64"}
    code, created = call("POST", server.url + "/api/face_swap/v1/async", key, body)
    assert code == 200 and created["message"] == "success", created
    task_id = created["data"]["task_id"]

    def fetch() -> dict[str, object]:
        code, answer = call("POST", server.url + "/api/face_swap/v1/fetch", key, {"task_id": task_id})
        assert code == 200, answer
        return dict(answer["data"])

    done = _poll(fetch, {"success", "failed"})
    assert done["status"] == "success", done
    swapped = Image.open(io.BytesIO(base64.b64decode(str(done["image"]), validate=True)))
    assert swapped.size == portrait().size
    code, unified = call("GET", f"{server.url}/api/v1/task/{task_id}", key)
    assert unified["data"]["status"] == "completed" and unified["data"]["task_type"] == "face-swap"


def test_an_operation_on_an_earlier_task_runs_and_another_account_cannot_name_it(server: Server) -> None:
    key, other = server.new_key("origin owner"), server.new_key("someone else")
    body = {"model": "genmill/echo", "task_type": "echo", "input": {"payload": {"seed": 7}}}
    code, origin = call("POST", server.url + "/api/v1/task", key, body, {"Prefer": "wait=60"})
    assert code == 200 and origin["data"]["status"] == "completed", origin
    derive = {
        "model": "genmill/echo",
        "task_type": "echo-derive",
        "input": {"origin_task_id": origin["data"]["task_id"], "payload": "again"},
    }
    code, refused = call("POST", server.url + "/api/v1/task", other, derive)
    assert code == 400 and refused["message"].startswith("input.origin_task_id: no task"), refused
    code, derived = call("POST", server.url + "/api/v1/task", key, derive, {"Prefer": "wait=60"})
    assert code == 200 and derived["data"]["status"] == "completed", derived
    assert derived["data"]["output"]["origin"]["task_id"] == origin["data"]["task_id"]
