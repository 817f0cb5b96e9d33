"""`WorkerTransport` over the HTTP worker protocol: the same `Worker` runs on any machine that reaches the API.

Claims long-poll (no sleep loop); results are retried across brief network failures until the server answers,
and a 409 (the lease moved on) is raised as `Conflict`, exactly as the in-process transport does. Logs, details,
outputs and errors are scrubbed before they are sent (NUL and lone surrogates as U+FFFD, NaN as null), as the
store scrubs them for in-process workers: the API refuses such text at its door, and a backend's odd log line
must not cost a task its lease.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from typing import Any

import httpx

from genmill.domain.boundary import scrub_json
from genmill.domain.catalog import CatalogEntry
from genmill.domain.records import Claim, InputFile
from genmill.errors import BackendError, Conflict, FetchError, GenmillError, Unauthorized
from genmill.worker.protocol import ClaimMoreResponse, ClaimResponse, HeartbeatResponse, OutputStored, RegisterResponse
from genmill.worker.transport import Done

log = logging.getLogger("genmill.worker")
RETRYABLE = (httpx.TransportError,)


class HttpTransport:
    def __init__(
        self, server: str, token: str, *, claim_wait: float = 20.0, transport: httpx.BaseTransport | None = None
    ) -> None:
        self.server = server.rstrip("/")
        self.claim_wait = claim_wait
        self.client = httpx.Client(
            base_url=self.server + "/api/v1/workers",
            headers={"Authorization": f"Bearer {token}"},
            timeout=httpx.Timeout(60.0, read=claim_wait + 30.0),
            transport=transport,
        )
        self.worker_id = ""

    def close(self) -> None:
        self.client.close()

    def _post(self, path: str, *, retries: int = 0, **kwargs: Any) -> httpx.Response:
        """POST with retries on connection errors; maps 401/409/4xx answers to genmill errors."""
        method = kwargs.pop("method", "POST")
        for attempt in range(retries + 1):
            try:
                response = self.client.request(method, path, **kwargs)
            except RETRYABLE as exc:
                if attempt == retries:
                    raise GenmillError(f"cannot reach the genmill server at {self.server}: {exc}") from exc
            else:
                # A load balancer's 502/503/504 while a replica restarts is as transient as a refused connection.
                if response.status_code not in (502, 503, 504) or attempt == retries:
                    break
            time.sleep(min(30.0, 0.5 * 2**attempt))
        if response.status_code == 401:
            raise Unauthorized("the server refused this worker token")
        if response.status_code == 409:
            raise Conflict(_message(response))
        if response.status_code >= 400:
            raise GenmillError(f"{path}: HTTP {response.status_code}: {_message(response)}")
        return response

    def register(self, name: str, capabilities: Iterable[tuple[str, str]]) -> RegisterResponse:
        caps = [{"model": m, "task_type": t} for m, t in capabilities]
        answer = RegisterResponse.model_validate(
            self._post("/register", retries=5, json={"name": name, "capabilities": caps}).json()
        )
        self.worker_id = answer.worker_id
        return answer

    def claim(self, worker_id: str, capabilities: Iterable[tuple[str, str]], lease_seconds: float) -> Claim | None:
        body = {"worker_id": self.worker_id or worker_id, "wait_seconds": self.claim_wait}
        answer = ClaimResponse.model_validate(self._post("/claim", json=body).json())
        return answer.task.to_claim() if answer.task else None

    def claim_more(
        self, worker_id: str, first: Claim, match: dict[str, Any], limit: int, lease_seconds: float
    ) -> list[Claim]:
        body = {
            "worker_id": self.worker_id or worker_id,
            "model": first.task.model,
            "task_type": first.task.task_type,
            "match": match,
            "limit": limit,
        }
        answer = ClaimMoreResponse.model_validate(self._post("/claim_more", json=body).json())
        return [t.to_claim() for t in answer.tasks]

    def heartbeat(self, claim: Claim, lease_seconds: float, logs: list[str], detail: dict[str, Any] | None) -> None:
        body = {"lease_id": claim.lease_id, "logs": logs, "detail": detail}
        answer = self._post(f"/tasks/{claim.task.task_id}/heartbeat", json=scrub_json(body))
        HeartbeatResponse.model_validate(answer.json())

    def complete(self, claim: Claim, output: dict[str, Any], logs: list[str], detail: dict[str, Any] | None) -> None:
        body = {"lease_id": claim.lease_id, "output": output, "logs": logs, "detail": detail}
        self._post(f"/tasks/{claim.task.task_id}/complete", retries=8, json=scrub_json(body))

    def complete_many(self, done: list[Done]) -> list[Exception | None]:
        """One request per task: the HTTP worker protocol has no batch call (yet)."""
        outcomes: list[Exception | None] = []
        for claim, output, logs, detail in done:
            try:
                self.complete(claim, output, logs, detail)
                outcomes.append(None)
            except Exception as failed:  # this one's error; the others are still sent
                outcomes.append(failed)
        return outcomes

    def fail(self, claim: Claim, error: dict[str, Any], logs: list[str], detail: dict[str, Any] | None) -> None:
        body = {"lease_id": claim.lease_id, "error": error, "logs": logs, "detail": detail}
        self._post(f"/tasks/{claim.task.task_id}/fail", retries=8, json=scrub_json(body))

    def read_input(self, claim: Claim, ref: str, field: str) -> InputFile:
        body = {"lease_id": claim.lease_id, "ref": ref, "field": field}
        try:
            response = self._post(f"/tasks/{claim.task.task_id}/input", retries=3, json=body)
        except Conflict:
            raise
        except GenmillError as exc:
            raise FetchError(exc.message) from exc
        return InputFile(
            response.content,
            response.headers.get("content-type", "application/octet-stream").split(";")[0],
            response.headers.get("x-genmill-name", ""),
        )

    def save_output(self, claim: Claim, entry: CatalogEntry, data: bytes, ext: str, content_type: str) -> str:
        params = {"lease_id": claim.lease_id, "ext": ext, "content_type": content_type}
        try:
            response = self._post(
                f"/tasks/{claim.task.task_id}/outputs", method="PUT", retries=3, params=params, content=data
            )
        except Conflict:
            raise
        except GenmillError as exc:
            raise BackendError(f"could not store the output: {exc.message}") from exc
        return OutputStored.model_validate(response.json()).url

    def wait_for_work(self, timeout: float) -> None:
        """Nothing to do: the claim itself long-polls."""


def _message(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:300]
    return str(body.get("message") or body)[:300] if isinstance(body, dict) else str(body)[:300]
