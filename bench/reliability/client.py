"""The suite's HTTP client: raw requests (any bytes, any path) whose answers are tallied by status.

Every scenario counts what the server answered, because a 5xx anywhere is a finding: `Tally` keeps the count per
status and names each 5xx (method, path, status, the first bytes of the body). A 429 is the server's rate limit
doing its job, not a failure: `Client.send` waits `Retry-After` (capped) and asks again, and the tally keeps how
often that happened. Refused connections while a scenario has killed the server are retried the same way when
the caller says so; such a request was never acknowledged, so it cannot be a lost task.
"""

from __future__ import annotations

import http.client
import json
import re
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

TASK_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
THROTTLE_WAIT_CAP_S = 2.0
"""Longest wait the suite honours from a `Retry-After` before asking again."""
THROTTLE_RETRIES = 30
"""A 429 asked again this often is answered to the caller (it is a refusal, e.g. too many staged tasks)."""


@dataclass
class Answer:
    status: int
    body: bytes
    headers: dict[str, str]

    def json(self) -> Any:
        try:
            return json.loads(self.body)
        except ValueError:
            return None

    def data(self) -> Any:
        parsed = self.json()
        return parsed.get("data") if isinstance(parsed, dict) else None


@dataclass
class Tally:
    """What the server answered, for one scenario; thread-safe."""

    statuses: Counter[int] = field(default_factory=Counter)
    server_errors: list[str] = field(default_factory=list)
    throttled: int = 0
    refused_connections: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, method: str, path: str, status: int, body: bytes = b"") -> None:
        with self.lock:
            self.statuses[status] += 1
            if status >= 500:
                where = TASK_ID.sub("{id}", path.split("?")[0] if "histories" not in path else path)
                self.server_errors.append(f"{method} {where[:120]} → {status} {body[:160]!r}")

    @property
    def requests(self) -> int:
        return sum(self.statuses.values())

    @property
    def five_xx(self) -> int:
        return sum(n for status, n in self.statuses.items() if status >= 500)


def send_raw(
    method: str, url: str, data: bytes | None = None, headers: dict[str, str] | None = None, timeout: float = 60
) -> Answer:
    """One request as given (no JSON encoding, no retries); connection failures raise OSError."""
    request = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as r:
            return Answer(int(r.status), bytes(r.read()), {k.lower(): v for k, v in r.headers.items()})
    except urllib.error.HTTPError as e:
        return Answer(int(e.code), bytes(e.read()), {k.lower(): v for k, v in e.headers.items()})
    except http.client.HTTPException as e:  # a reset mid-answer: the caller treats it as a refused connection
        raise ConnectionError(str(e)) from e


class Client:
    """Requests to one server (whose URL may change between restarts), tallied in `tally`."""

    def __init__(self, base_url: str, tally: Tally | None = None) -> None:
        self.base_url = base_url
        self.tally = tally or Tally()

    def send(
        self,
        method: str,
        path: str,
        key: str | None = None,
        body: Any = None,
        *,
        raw: bytes | None = None,
        headers: dict[str, str] | None = None,
        retry_down_s: float = 0.0,
        timeout: float = 60,
    ) -> Answer:
        """`body` is sent as JSON (`raw` as given). A 429 is waited out and asked again (`THROTTLE_RETRIES` times);
        with `retry_down_s`, so is a refused or reset connection for that long (the server is being restarted),
        else it raises OSError."""
        sent_headers = {"Content-Type": "application/json", **(headers or {})}
        if key is not None:
            sent_headers["X-API-Key"] = key
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        give_up = time.monotonic() + retry_down_s
        throttled = 0
        while True:
            try:
                answer = send_raw(method, self.base_url + path, data, sent_headers, timeout)
            except OSError:
                with self.tally.lock:
                    self.tally.refused_connections += 1
                if time.monotonic() >= give_up:
                    raise
                time.sleep(0.2)
                continue
            if answer.status == 429 and throttled < THROTTLE_RETRIES:
                throttled += 1
                with self.tally.lock:
                    self.tally.throttled += 1
                time.sleep(min(THROTTLE_WAIT_CAP_S, _retry_after(answer.headers)))
                continue
            self.tally.record(method, path, answer.status, answer.body)
            return answer


def _retry_after(headers: dict[str, str]) -> float:
    try:
        return max(0.05, float(headers.get("retry-after", "0.2")))
    except ValueError:
        return 0.2
