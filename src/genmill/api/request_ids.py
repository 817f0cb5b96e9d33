"""Every request gets an id: the caller's X-Request-ID when it sends a sane one, else a new one. It is echoed in
the answer's X-Request-ID, set for every log line written while the request is answered (`genmill.logs`), and
the request's access line (`genmill.access`: method, path, status, milliseconds) carries it.

A pure ASGI middleware, so streamed answers (SSE, file downloads) pass through unbuffered.
"""

from __future__ import annotations

import logging
import re
import time
import uuid

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from genmill.logs import request_id

HEADER = "X-Request-ID"
SANE_ID = re.compile(r"[A-Za-z0-9._:/+=@-]{1,128}")
"""An id from the caller is kept only when it is short and printable, so it cannot forge log lines."""

access_log = logging.getLogger("genmill.access")


class RequestIds:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        sent = dict(scope.get("headers") or []).get(b"x-request-id", b"").decode("latin-1").strip()
        rid = sent if SANE_ID.fullmatch(sent) else uuid.uuid4().hex
        token = request_id.set(rid)
        started = time.perf_counter()
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"x-request-id"]
                message = {**message, "headers": [*headers, (b"x-request-id", rid.encode("latin-1"))]}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            access_log.info(
                "%s %s %d",
                scope["method"],
                scope["path"],
                status,
                extra={
                    "method": scope["method"],
                    "path": scope["path"],
                    "status": status,
                    "duration_ms": round((time.perf_counter() - started) * 1000, 1),
                },
            )
            request_id.reset(token)
