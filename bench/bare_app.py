"""The baseline: a bare FastAPI app on the same server stack that validates genmill's create body and answers.

    python -m bench.bare_app --port 8001 [--processes N]

No database, no accounts, no thread pool: `POST /api/v1/task` checks that an X-API-Key header is present,
validates the body with genmill's own `TaskCreate` schema and the echo input model, and answers an envelope of
the same shape as genmill's; `GET /api/v1/task/{id}` answers a task of that shape. What genmill's create and get
do beyond this is what the benchmark's ratios measure. Served exactly as `genmill serve` serves: the same
uvicorn (uvloop, httptools) and options through `genmill.httpserver.serve`, and with `--processes N` the same
supervisor and SO_REUSEPORT sockets (`genmill.processes`), so a ratio compares equal numbers of processes.
"""

from __future__ import annotations

import argparse
import logging
import socket
import sys
import uuid
from typing import Annotated, Any

from fastapi import FastAPI, Header
from fastapi.responses import JSONResponse

from genmill.api.schemas import TaskCreate
from genmill.httpserver import ServerLimits, serve
from genmill.models.echo.catalog import Echo
from genmill.processes import Supervisor, listening_sockets

app = FastAPI(title="bare baseline")

ZERO_TIME = "0001-01-01T00:00:00Z"


def task_like(task_id: str, body: TaskCreate | None, inputs: dict[str, Any]) -> dict[str, Any]:
    return {
        "task_id": task_id,
        "model": body.model if body else "genmill/echo",
        "task_type": body.task_type if body else "echo",
        "status": "pending",
        "config": {"service_mode": "", "webhook_config": {"endpoint": "", "secret": ""}},
        "input": inputs,
        "output": None,
        "meta": {
            "created_at": ZERO_TIME,
            "started_at": ZERO_TIME,
            "ended_at": ZERO_TIME,
            "usage": {"type": "quota", "frozen": 0, "consume": 0},
            "is_using_private_pool": False,
        },
        "detail": None,
        "logs": [],
        "error": {"code": 0, "raw_message": "", "message": "", "detail": None},
    }


def unauthorized() -> JSONResponse:
    return JSONResponse({"code": 401, "data": None, "message": "missing API key"}, status_code=401)


@app.post("/api/v1/task", response_model=None)
async def create_task(
    body: TaskCreate, x_api_key: Annotated[str | None, Header()] = None
) -> dict[str, Any] | JSONResponse:
    if not x_api_key:
        return unauthorized()
    inputs = Echo.model_validate(body.input).model_dump(mode="json")
    return {"code": 200, "data": task_like(str(uuid.uuid4()), body, inputs), "message": "success"}


@app.get("/api/v1/task/{task_id}", response_model=None)
async def get_task(task_id: str, x_api_key: Annotated[str | None, Header()] = None) -> dict[str, Any] | JSONResponse:
    if not x_api_key:
        return unauthorized()
    return {"code": 200, "data": task_like(task_id, None, {"payload": {"n": 1}, "sleep_ms": 0}), "message": "success"}


@app.get("/healthz")
async def healthz() -> dict[str, Any]:
    return {"code": 200, "data": {"version": "bare"}, "message": "success"}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.bare_app", description="the bench's bare FastAPI baseline")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8001)
    ap.add_argument("--processes", type=int, default=1)
    ap.add_argument("--log-level", default="warning")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    limits = ServerLimits()
    if args.processes <= 1:
        serve(app, host=args.host, port=args.port, log_level=args.log_level, limits=limits)
        return 0

    def serve_one(_index: int, sock: socket.socket) -> None:
        serve(app, host=args.host, port=args.port, log_level=args.log_level, limits=limits, sockets=[sock])

    return Supervisor(listening_sockets(args.host, args.port, args.processes), serve_one).run()


if __name__ == "__main__":
    sys.exit(main())
