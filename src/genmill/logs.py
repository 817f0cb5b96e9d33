"""How genmill logs: text for a person at a terminal, or one JSON object per line for a log pipeline
(GENMILL_LOG_FORMAT=json), each line with the request id of the HTTP request it belongs to.

`quiet_third_party()` runs before any model library is imported (first thing in `genmill.cli.main` and in
`create_app`): TensorFlow, MediaPipe and absl read their log levels from the environment once, at import, and
otherwise fill a server's log with C++ banners about CPU instructions and delegates.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

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

STANDARD_ATTRS = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}


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


def configure_logging(log_format: str, level: int = logging.INFO) -> None:
    """Route every logger (uvicorn's too) to stderr in `log_format`."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        uvicorn_logger = logging.getLogger(name)
        uvicorn_logger.handlers = []
        uvicorn_logger.propagate = True
    logging.getLogger("uvicorn.access").setLevel(logging.WARNING)  # genmill.access says it, with the request id
    logging.getLogger("alembic").setLevel(logging.WARNING)
