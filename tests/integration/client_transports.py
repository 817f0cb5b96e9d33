"""httpx transports for the SDK's tests: they pass every request to the real server on loopback, record it, and
can inject faults a network produces (a refused connection, an answer lost after the server acted, a 503)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum

import httpx


class Fault(Enum):
    REFUSE = "refuse"
    """The connection fails before the request reaches the server."""
    LOSE_ANSWER = "lose_answer"
    """The server receives and handles the request; its answer is lost on the way back."""
    ANSWER_503 = "answer_503"
    """A proxy in front answers 503 without passing the request on."""
    NO_EVENTS = "no_events"
    """The event stream path answers 404, as on a server without it (hosted PiAPI)."""


Rule = Callable[[httpx.Request, int], Fault | None]
"""Given a request and how many requests came before it, the fault to inject, or None."""


def no_faults(request: httpx.Request, index: int) -> Fault | None:
    return None


def fault_answer(request: httpx.Request, fault: Fault) -> httpx.Response | None:
    if fault is Fault.REFUSE:
        raise httpx.ConnectError("connection refused (injected)", request=request)
    if fault is Fault.ANSWER_503:
        return httpx.Response(503, json={"code": 503, "data": None, "message": "injected"}, request=request)
    if fault is Fault.NO_EVENTS:
        return httpx.Response(404, json={"code": 404, "data": None, "message": "Not Found"}, request=request)
    return None


def answer_lost(request: httpx.Request) -> httpx.ReadError:
    return httpx.ReadError("connection reset after the request was handled (injected)", request=request)


@dataclass
class Recorder:
    """What the sync and the async transports share: the requests seen, and the fault each one gets."""

    rule: Rule = no_faults
    requests: list[httpx.Request] = field(default_factory=list)

    def paths(self, method: str = "GET") -> list[str]:
        return [r.url.path for r in self.requests if r.method == method]

    def record(self, request: httpx.Request) -> tuple[Fault | None, httpx.Response | None]:
        """Record `request`; its fault, and the answer that replaces the server's when the fault is one."""
        index = len(self.requests)
        self.requests.append(request)
        fault = self.rule(request, index)
        return fault, fault_answer(request, fault) if fault is not None else None


@dataclass
class Recording(Recorder, httpx.BaseTransport):
    inner: httpx.HTTPTransport = field(default_factory=httpx.HTTPTransport)

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        fault, answer = self.record(request)
        if answer is not None:
            return answer
        response = self.inner.handle_request(request)
        if fault is Fault.LOSE_ANSWER:
            response.read()
            response.close()
            raise answer_lost(request)
        return response

    def close(self) -> None:
        self.inner.close()


@dataclass
class AsyncRecording(Recorder, httpx.AsyncBaseTransport):
    inner: httpx.AsyncHTTPTransport = field(default_factory=httpx.AsyncHTTPTransport)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        fault, answer = self.record(request)
        if answer is not None:
            return answer
        response = await self.inner.handle_async_request(request)
        if fault is Fault.LOSE_ANSWER:
            await response.aread()
            await response.aclose()
            raise answer_lost(request)
        return response

    async def aclose(self) -> None:
        await self.inner.aclose()
