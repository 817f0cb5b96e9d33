"""A tiny OpenAI-compatible chat server on 127.0.0.1 for the lyrics tests: it records each request body and
answers `/v1/chat/completions` with the assistant text a test sets (or an HTTP error), as vLLM or Ollama would."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class FakeChatServer:
    """What the server answers next, and every request body it was sent."""

    base_url: str = ""
    answer: str = ""
    status: int = 200
    requests: list[dict[str, Any]] = field(default_factory=list)


@contextmanager
def fake_chat_server() -> Iterator[FakeChatServer]:
    state = FakeChatServer()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0"))))
            state.requests.append({"path": self.path, **body})
            if self.path != "/v1/chat/completions" or state.status >= 400:
                reply: dict[str, Any] = {"error": {"message": "model is overloaded"}}
                self._send(state.status if state.status >= 400 else 404, reply)
                return
            message = {"role": "assistant", "content": state.answer}
            usage = {"prompt_tokens": 20, "completion_tokens": 50, "total_tokens": 70}
            reply = {"object": "chat.completion", "choices": [{"index": 0, "message": message}], "usage": usage}
            self._send(200, reply)

        def _send(self, status: int, reply: dict[str, Any]) -> None:
            data = json.dumps(reply).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    state.base_url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
