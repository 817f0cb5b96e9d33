"""How genmill logs: text for a person at a terminal, or one JSON object per line for a log pipeline
(GENMILL_LOG_FORMAT=json), each line with the request id of the HTTP request it belongs to.

`quiet_third_party()` runs before any model library is imported (first thing in `genmill.cli.main` and in
`create_app`): TensorFlow, MediaPipe and absl read their log levels from the environment once, at import, and
otherwise fill a server's log with C++ banners about CPU instructions and delegates. MediaPipe's TensorFlow Lite
and absl lines ignore every such variable (they are written by native code straight to file descriptor 2), so
`genmill serve` and `genmill worker` also run `filter_native_noise()`: descriptor 2 becomes a pipe whose lines are
copied to the real stderr unless they are one of those known banners (`NATIVE_NOISE`).
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import re
import sys
import threading
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any, TextIO

LOG_FORMATS = ("text", "json")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

request_id: ContextVar[str] = ContextVar("genmill_request_id", default="")
"""The X-Request-ID of the HTTP request being answered ("" outside a request); set by the request id middleware."""

NOISY_ENV = {
    "TF_CPP_MIN_LOG_LEVEL": "3",  # TensorFlow's C++ INFO/WARNING/ERROR banners
    "TF_ENABLE_ONEDNN_OPTS": "0",  # and its oneDNN notice
    "GLOG_minloglevel": "2",  # MediaPipe's glog lines (delegates, feedback managers)
    "ABSL_MIN_LOG_LEVEL": "2",
}
NOISY_LOGGERS = ("absl", "tensorflow", "mediapipe", "h5py", "jax", "numexpr")

NATIVE_NOISE = re.compile(
    rb"^(INFO: Created TensorFlow Lite .*delegate.*"
    rb"|WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR"
    rb"|[IW]\d{4} [\d:. ]+\d+ (inference_feedback_manager|gl_context|landmark_projection_calculator)\.cc:\d+\] .*)$"
)
"""Native lines that say nothing an operator can act on: delegates created, absl not initialised, feedback
tensors disabled (once per model load of MediaPipe's face and segmentation graphs)."""

STANDARD_ATTRS = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "color_message"}


def quiet_third_party() -> None:
    """Silence TensorFlow, MediaPipe and absl below warnings; an operator's own setting of a variable wins."""
    for name, value in NOISY_ENV.items():
        os.environ.setdefault(name, value)
    for name in NOISY_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time, level, logger, message, the request id and any `extra=` fields."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        rid = getattr(record, "request_id", "") or request_id.get()
        if rid:
            line["request_id"] = rid
        for key, value in record.__dict__.items():
            if key not in STANDARD_ATTRS and key not in line:
                line[key] = value
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str, ensure_ascii=False)


def log_format_from_env() -> str:
    """GENMILL_LOG_FORMAT, read before Settings exist (logging is set up first): text unless it says json."""
    value = os.environ.get("GENMILL_LOG_FORMAT", "text").strip().lower() or "text"
    if value not in LOG_FORMATS:
        raise ValueError(f"GENMILL_LOG_FORMAT: must be one of {', '.join(LOG_FORMATS)}, not {value!r}")
    return value


class GenmillHandler(logging.StreamHandler[TextIO]):
    """The handler `configure_logging` installs (and replaces when called again)."""


def configure_logging(log_format: str, level: int = logging.INFO) -> None:
    """Route every logger (uvicorn's too) to stderr in `log_format`. Like `logging.basicConfig`, it leaves a root
    logger that something else already set up (a test runner, an embedding program) to its owner."""
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, GenmillHandler)]:
        root.removeHandler(old)
    if not root.handlers:
        handler = GenmillHandler(sys.stderr)
        handler.setFormatter(JsonFormatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT))
        root.addHandler(handler)
    root.setLevel(level)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        uvicorn_logger = logging.getLogger(name)
        uvicorn_logger.handlers = []
        uvicorn_logger.propagate = True
    logging.getLogger("uvicorn.access").setLevel(logging.WARNING)  # genmill.access says it, with the request id
    logging.getLogger("alembic").setLevel(logging.WARNING)


def filter_native_noise() -> None:
    """Replace file descriptor 2 with a pipe copied to the real stderr line by line, minus `NATIVE_NOISE`.

    Python's own stderr keeps writing to the real descriptor (a duplicate), so a log line or a traceback never
    waits on the copying thread; only what native libraries write to descriptor 2 goes through it. At exit the
    pipe is closed and what is left is copied out before the process ends.
    """
    real = os.dup(2)
    read_end, write_end = os.pipe()
    sys.stderr.flush()
    sys.stderr = open(real, "w", buffering=1, encoding=sys.stderr.encoding, errors="backslashreplace", closefd=False)  # noqa: SIM115
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.StreamHandler) and handler.stream is sys.__stderr__:
            handler.setStream(sys.stderr)
    os.dup2(write_end, 2)
    os.close(write_end)

    def copy() -> None:
        pending = b""
        while chunk := os.read(read_end, 65536):
            pending += chunk
            *lines, pending = pending.split(b"\n")
            kept = b"".join(line + b"\n" for line in lines if not NATIVE_NOISE.match(line))
            if kept:
                os.write(real, kept)
        if pending and not NATIVE_NOISE.match(pending):
            os.write(real, pending)

    copier = threading.Thread(target=copy, name="native-stderr", daemon=True)
    copier.start()

    def drain() -> None:
        os.dup2(real, 2)  # the pipe's last write end closes: the copier reads the rest, then end of file
        copier.join(timeout=2)

    atexit.register(drain)
