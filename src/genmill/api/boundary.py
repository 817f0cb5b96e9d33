"""The API's one door check: every string that enters is valid Unicode without NUL, JSON bodies are bounded in
depth with numbers the database can hold, and `Last-Event-ID` is an event id; otherwise a 400 that names the field
and the rule, before any handler runs, so nothing is stored, billed or claimed.

A pure ASGI middleware rather than checks in each handler, so that no route (today's or a later one, the worker
protocol included) can forget it. The rules themselves are `genmill.domain.boundary`'s. The path, the query and
the headers are checked as the framework will decode them; a JSON body is decoded once here, checked, and passed on
unchanged. Bodies that are not JSON (a worker's output upload) pass untouched.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from urllib.parse import parse_qsl

from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from genmill.api.envelope import error_response
from genmill.domain.boundary import (
    DEPTH_RULE,
    INT64_MAX,
    NUL_RULE,
    Violation,
    json_violation,
    loads_request_json,
    may_hold_unsafe_text,
    text_rule,
)

LAST_EVENT_ID_RULE = f"must be an event id from this stream (an integer from 0 to {INT64_MAX})"
THREAD_BYTES = 64 * 1024
"""Bodies larger than this are decoded and checked in the thread pool, off the event loop."""

_EVENT_ID = re.compile(rb"[0-9]{1,19}")


def _is_json(scope: Scope) -> bool:
    """Whether the framework will decode this request's body as JSON (`application/json`, `application/*+json`)."""
    for name, value in scope.get("headers", ()):
        if name == b"content-type":
            media: bytes = value.split(b";", 1)[0].strip().lower()
            return media == b"application/json" or (media.startswith(b"application/") and media.endswith(b"+json"))
    return False


def head_violation(scope: Scope) -> Violation | None:
    """What the request line and headers break: NUL or a lone surrogate in the path or the query, NUL in a header,
    a `Last-Event-ID` that is not a 64-bit event id."""
    rule = text_rule(scope.get("path", ""))
    if rule is not None:
        return Violation("path", rule)
    query: bytes = scope.get("query_string", b"")
    if b"%" in query or b"\x00" in query:  # NUL can only arrive as %00 (or raw); decoding replaces bad UTF-8
        for name, value in parse_qsl(query.decode("latin-1"), keep_blank_values=True):
            rule = text_rule(name)
            if rule is not None:
                return Violation("query parameter name", rule)
            rule = text_rule(value)
            if rule is not None:
                return Violation(name, rule)
    for name, value in scope.get("headers", ()):
        if b"\x00" in value:
            return Violation(f"header {name.decode('latin-1')}", NUL_RULE)
        if name == b"last-event-id" and value and not _valid_event_id(value):
            return Violation("Last-Event-ID", LAST_EVENT_ID_RULE)
    return None


def _valid_event_id(value: bytes) -> bool:
    return _EVENT_ID.fullmatch(value) is not None and int(value) <= INT64_MAX


def body_violation(body: bytes) -> Violation | None:
    """What a JSON body breaks. A body that is not JSON at all is left to the framework's own 400."""
    try:
        value = loads_request_json(body)
    except RecursionError:
        return Violation("body", DEPTH_RULE)
    except ValueError:
        return None
    return json_violation(value, check_text=may_hold_unsafe_text(body))


class BoundaryCheck:
    def __init__(self, app: ASGIApp, raw_body_paths: Iterable[tuple[str, str]] = ()) -> None:
        """`raw_body_paths`: (path prefix, path suffix) of routes whose body is bytes, never decoded as JSON."""
        self.app = app
        self.raw_body_paths = tuple(raw_body_paths)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        violation = head_violation(scope)
        if violation is not None:
            await _refuse(violation, scope, receive, send)
            return
        path: str = scope.get("path", "")
        if not _is_json(scope) or any(path.startswith(h) and path.endswith(t) for h, t in self.raw_body_paths):
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client left before its body arrived: there is no one to answer
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        if len(body) > THREAD_BYTES:
            violation = await run_in_threadpool(body_violation, body)
        else:
            violation = body_violation(body)
        if violation is not None:
            await _refuse(violation, scope, receive, send)
            return
        await self.app(scope, _replay(body, receive), send)


def _replay(body: bytes, receive: Receive) -> Receive:
    """A `receive` that gives the app the body read here, then whatever the client sends next (a disconnect)."""
    given = False

    async def replay() -> Message:
        nonlocal given
        if given:
            return await receive()
        given = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replay


async def _refuse(violation: Violation, scope: Scope, receive: Receive, send: Send) -> None:
    response = error_response(
        400,
        f"Invalid request parameters: {violation}",
        detail={"field": violation.field, "rule": violation.rule},
    )
    await response(scope, receive, send)
