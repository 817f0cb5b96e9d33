"""A model's child process (`backends.isolation.ProcessModel`) ends with the server that started it: a server
killed with SIGKILL cannot stop it, and an orphan would hold its model's memory until the machine runs out."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

SERVER = """
import os, sys
from genmill.backends.isolation import ProcessModel
if __name__ == "__main__":
    model = ProcessModel(dict, name="test")
    model.start()
    print(model._pool.submit(os.getpid).result(), flush=True)
    sys.stdin.read()
"""


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return not (stat.exists() and stat.read_text().split(") ", 1)[1].startswith("Z"))


def test_the_model_process_ends_when_its_server_is_killed(tmp_path: Path) -> None:
    script = tmp_path / "server.py"
    script.write_text(SERVER)
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    with subprocess.Popen(
        [sys.executable, str(script)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env
    ) as server:
        assert server.stdout is not None
        child = int(server.stdout.readline())
        assert child != server.pid and alive(child)
        server.send_signal(signal.SIGKILL)
        server.wait(10)
        deadline = time.monotonic() + 20
        while alive(child) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not alive(child), "the model process outlived the server"
