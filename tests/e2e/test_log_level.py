"""`genmill serve --log-level` governs genmill's own lines (the access log, task transitions) as well as
uvicorn's: at `warning` a request and a task's run write nothing, at the default `info` both are there."""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.e2e.harness import Server

ECHO = {"model": "genmill/echo", "task_type": "echo", "input": {"text": "hello"}}


@pytest.mark.parametrize("level", ["warning", "info"])
def test_the_log_level_applies_to_genmills_own_lines(tmp_path: Path, level: str) -> None:
    server = Server(tmp_path, GENMILL_BACKENDS="echo")
    key = server.new_key("logs")
    server.start("--log-level", level)
    try:
        task = server.run_task(key, ECHO)
        assert task["status"] == "completed"
    finally:
        server.stop()
    log = server.log_text()
    access = "POST /api/v1/task 200" in log
    transition = f"task {task['task_id']} genmill/echo echo -> completed" in log
    assert (access, transition) == ((True, True) if level == "info" else (False, False)), log[-2000:]
