"""genmill's log lines: the JSON format, GENMILL_LOG_FORMAT, and native third-party banners kept out of stderr
(a subprocess, since the filter takes over the process's file descriptor 2)."""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from genmill.cli import main
from genmill.logs import JsonFormatter, log_format_from_env, quiet_third_party, request_id

SRC = str(Path(__file__).resolve().parents[2] / "src")

FILTERED_PROCESS = """
import logging, os, sys
from genmill.cli import main
from genmill.logs import configure_logging, filter_native_noise, quiet_third_party
quiet_third_party()
configure_logging("text")
filter_native_noise()
os.write(2, b"INFO: Created TensorFlow Lite XNNPACK delegate for CPU.\\n")
os.write(2, b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\\n")
os.write(2, b"W0000 00:00:1796001017.331781    3315 inference_feedback_manager.cc:114] Feedback manager requires"
            b" a model with a single signature inference. Disabling support for feedback tensors.\\n")
os.write(2, b"native: a real problem\\n")
logging.getLogger("genmill").warning("python: still logged")
"""

MEDIAPIPE_RUN = """
import numpy as np
from mediapipe.python.solutions.face_mesh import FaceMesh
with FaceMesh(static_image_mode=True, max_num_faces=1, refine_landmarks=True) as mesh:
    mesh.process(np.zeros((64, 64, 3), dtype=np.uint8))
"""


def run_python(code: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": SRC}
    for name in ("TF_CPP_MIN_LOG_LEVEL", "GLOG_minloglevel", "ABSL_MIN_LOG_LEVEL", "TF_ENABLE_ONEDNN_OPTS"):
        env.pop(name, None)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)


def test_json_lines_carry_the_request_id_and_extra_fields() -> None:
    record = logging.makeLogRecord(
        {"name": "genmill.tasks", "levelname": "INFO", "msg": "task %s done", "args": ("t1",), "task_id": "t1"}
    )
    token = request_id.set("req-7")
    try:
        line = json.loads(JsonFormatter().format(record))
    finally:
        request_id.reset(token)
    assert line["message"] == "task t1 done" and line["level"] == "info" and line["logger"] == "genmill.tasks"
    assert line["request_id"] == "req-7" and line["task_id"] == "t1" and line["ts"].endswith("+00:00")
    assert "request_id" not in json.loads(JsonFormatter().format(record))  # outside a request, no id


def test_the_log_format_setting_is_text_or_json(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GENMILL_LOG_FORMAT", raising=False)
    assert log_format_from_env() == "text"
    monkeypatch.setenv("GENMILL_LOG_FORMAT", "JSON")
    assert log_format_from_env() == "json"
    monkeypatch.setenv("GENMILL_LOG_FORMAT", "xml")
    with pytest.raises(ValueError, match="GENMILL_LOG_FORMAT"):
        log_format_from_env()
    assert main(["accounts", "list"]) == 2  # the command says so instead of a traceback


def test_quieting_keeps_an_operators_own_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "1")
    glog = "GLOG_minloglevel"  # MediaPipe's spelling
    monkeypatch.delenv(glog, raising=False)
    quiet_third_party()
    assert os.environ["TF_CPP_MIN_LOG_LEVEL"] == "1" and os.environ[glog] == "2"
    assert logging.getLogger("absl").level == logging.ERROR


def test_native_banners_are_dropped_and_everything_else_kept() -> None:
    done = run_python(FILTERED_PROCESS)
    assert done.returncode == 0, done.stderr
    lines = done.stderr.splitlines()
    assert "native: a real problem" in lines
    assert any(line.endswith("WARNING genmill: python: still logged") for line in lines)
    assert not [line for line in lines if "TensorFlow Lite" in line or "absl" in line or "W0000" in line]


@pytest.mark.skipif(importlib.util.find_spec("mediapipe") is None, reason="needs the cpu extra (mediapipe)")
def test_mediapipe_logs_nothing_through_the_filter() -> None:
    loud = run_python(MEDIAPIPE_RUN)
    assert loud.returncode == 0 and "TensorFlow Lite" in loud.stderr  # what the filter is for
    quiet = run_python(FILTERED_PROCESS + MEDIAPIPE_RUN)
    assert quiet.returncode == 0, quiet.stderr
    assert [line for line in quiet.stderr.splitlines() if "python: still logged" not in line] == [
        "native: a real problem"
    ]
