"""`genmill run` and `genmill task` in-process against a real server on loopback: exit codes, what goes to stdout
and stderr, and progress lines."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.integration.client_servers import MODEL, Server, direct
from tests.loopback import free_port
from tests.support import png_bytes

from genmill.cli import main


@pytest.fixture
def server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Server]:
    with direct(tmp_path) as running:
        monkeypatch.setenv("GENMILL_URL", running.url)
        monkeypatch.setenv("GENMILL_API_KEY", running.key)
        yield running


def test_run_prints_the_saved_paths_and_shows_progress_on_stderr(
    server: Server, photo: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The backend is held while the task runs, so the display must show it processing (a task that ended before
    # the CLI looked would show only its end); it is let go once the display has said so.
    server.upscaler.gate.clear()
    codes: list[int] = []
    argv = ["run", MODEL, "upscale", f"image=@{photo}", "scale=3", "-o", str(tmp_path / "out")]
    running = threading.Thread(target=lambda: codes.append(main(argv)))
    running.start()
    out, err = "", ""
    deadline = time.monotonic() + 60
    while "processing" not in err and time.monotonic() < deadline and running.is_alive():
        time.sleep(0.05)
        more = capsys.readouterr()
        out, err = out + more.out, err + more.err
    server.upscaler.gate.set()
    running.join(60)
    more = capsys.readouterr()
    out, err = out + more.out, err + more.err
    (saved,) = (tmp_path / "out").iterdir()
    assert codes == [0] and out.split() == [str(saved)]
    assert "processing" in err and "completed" in err and "  resizing 8x6 by 3" in err  # status and log lines
    assert "HTTP Request" not in err  # httpx's per-request log is silenced


def test_a_failed_task_exits_1_with_its_error_and_json_carries_the_task(
    server: Server, photo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["run", MODEL, "background-remove", f"image=@{photo}", "--json"])
    out, err = capsys.readouterr()
    assert code == 1
    assert "failed: the segmentation model rejected the image" in err
    task = json.loads(out)
    assert task["status"] == "failed" and task["error"]["code"] > 0


def test_inline_base64_is_never_printed(server: Server, capsys: pytest.CaptureFixture[str]) -> None:
    import base64

    inline = base64.b64encode(png_bytes(64, 64)).decode()
    code = main(["run", MODEL, "upscale", f"image={inline}", "--no-wait", "--json"])
    out, _ = capsys.readouterr()
    assert code == 0 and inline not in out and json.loads(out)["task_id"]


def test_timeouts_cancel_and_unreachable_servers_have_their_exit_codes(
    server: Server, photo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    server.upscaler.gate.clear()
    assert main(["run", MODEL, "upscale", f"image=@{photo}", "--timeout", "0.5"]) == 5
    _, err = capsys.readouterr()
    assert "genmill task watch" in err
    assert main(["run", MODEL, "upscale", f"image=@{photo}", "--no-wait"]) == 0
    pending = capsys.readouterr().out.strip()
    assert main(["task", "cancel", pending]) == 0
    assert capsys.readouterr().out.split() == [pending, "cancelled"]
    assert main(["task", "get", pending]) == 1  # a cancelled task reads like a failed one
    assert capsys.readouterr().out.split()[:2] == [pending, "cancelled"]
    assert main(["task", "list", "--status", "cancelled", "--json"]) == 0
    assert [t["task_id"] for t in json.loads(capsys.readouterr().out)] == [pending]
    assert main(["task", "cancel", pending]) == 3  # the server refuses a second cancel
    assert main(["task", "list", "--url", f"http://127.0.0.1:{free_port()}"]) == 4
    assert main(["run", MODEL, "upscale", "image"]) == 2
    threading.Thread(target=server.upscaler.gate.set).start()
