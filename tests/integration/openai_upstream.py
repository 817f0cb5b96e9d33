"""A loopback OpenAI-compatible server for the chat API tests: it streams a fixed answer word by word (with a
last usage chunk when asked for it), or answers it whole, draws small PNGs for the Images API, and records every
request body.

`hold` pauses the stream after its first word until set, so a test can leave mid-answer; `status` makes every call
fail with that HTTP status and an OpenAI error body; `usage` False leaves usage out (as some servers do).
"""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tests.support import png_bytes

WORDS = ("Hello", " there", ", friend", "!")
PROMPT_TOKENS = 21
TOOL_CALL_DELTAS = (
    {"index": 0, "id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": ""}},
    {"index": 0, "function": {"arguments": '{"city": '}},
    {"index": 0, "function": {"arguments": '"Paris"}'}},
)


@dataclass
class FakeUpstream:
    words: tuple[str, ...] = WORDS
    status: int = 200
    usage: bool = True
    tool_call: bool = False
    """Answer with a streamed tool call (get_weather for Paris) instead of the words."""
    hold: threading.Event = field(default_factory=threading.Event)
    bodies: list[dict[str, Any]] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    closed_early: threading.Event = field(default_factory=threading.Event)
    url: str = ""

    def __post_init__(self) -> None:
        self.hold.set()

    def usage_object(self) -> dict[str, int]:
        return {
            "prompt_tokens": PROMPT_TOKENS,
            "completion_tokens": len(self.words),
            "total_tokens": PROMPT_TOKENS + len(self.words),
        }


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: object) -> None:
        """Quiet: the tests read `FakeUpstream.bodies`."""

    def do_POST(self) -> None:
        fake = self.server.fake
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        fake.bodies.append(body)
        fake.headers.append({k.lower(): v for k, v in self.headers.items()})
        if self.path not in ("/v1/chat/completions", "/v1/images/generations"):
            self._json(404, {"error": {"message": f"no route {self.path}", "type": "invalid_request_error"}})
        elif fake.status != 200:
            self._json(fake.status, {"error": {"message": "the model is overloaded", "type": "server_error"}})
        elif self.path == "/v1/images/generations":
            drawn = [{"b64_json": base64.b64encode(png_bytes(8, 6)).decode()} for _ in range(int(body.get("n", 1)))]
            self._json(200, {"created": 1, "data": drawn})
        elif body.get("stream"):
            self._stream(fake, body)
        else:
            answer = {"choices": [{"index": 0, "message": {"role": "assistant", "content": "".join(fake.words)}}]}
            self._json(200, {**answer, "usage": fake.usage_object()})

    def _json(self, status: int, value: dict[str, Any]) -> None:
        data = json.dumps(value).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _stream(self, fake: FakeUpstream, body: dict[str, Any]) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Connection", "close")
        self.end_headers()
        head = {"id": "upstream-1", "object": "chat.completion.chunk", "created": 1, "model": body["model"]}
        events: list[dict[str, Any]] = [{**head, "choices": [{"index": 0, "delta": {"role": "assistant"}}]}]
        if fake.tool_call:
            events += [
                {**head, "choices": [{"index": 0, "delta": {"tool_calls": [call]}}]} for call in TOOL_CALL_DELTAS
            ]
            events.append({**head, "choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]})
        else:
            events += [{**head, "choices": [{"index": 0, "delta": {"content": w}}]} for w in fake.words]
            events.append({**head, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
        if fake.usage and (body.get("stream_options") or {}).get("include_usage"):
            events.append({**head, "choices": [], "usage": fake.usage_object()})
        try:
            for i, event in enumerate(events):
                if i == 2:
                    fake.hold.wait(30)
                self.wfile.write(f"data: {json.dumps(event)}\n\n".encode())
                self.wfile.flush()
                if i >= 2 and not fake.hold.is_set():
                    time.sleep(0.05)
            self.wfile.write(b"data: [DONE]\n\n")
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            fake.closed_early.set()
        self.close_connection = True


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, fake: FakeUpstream) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.fake = fake


@contextmanager
def serve_upstream(fake: FakeUpstream | None = None) -> Iterator[FakeUpstream]:
    fake = fake or FakeUpstream()
    server = _Server(fake)
    fake.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield fake
    finally:
        fake.hold.set()
        server.shutdown()
        server.server_close()
        thread.join(10)
