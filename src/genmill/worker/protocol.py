"""The HTTP worker protocol's messages, shared by the server's router and the remote worker's transport.

A remote worker registers its capabilities, long-polls for a claim, heartbeats with logs and progress, reads
inputs and uploads outputs through the server (which applies the same guarded fetching and storage as for
in-process workers), then completes or fails. Every call after the claim carries the lease id; a stale or foreign
lease is a 409, so a task completes, and bills, exactly once.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from genmill.domain.records import Claim, OriginTask, Task
from genmill.domain.states import TaskStatus

MAX_CLAIM_WAIT = 30.0


class Capability(BaseModel):
    model: str = Field(..., max_length=100)
    task_type: str = Field(..., max_length=100)


class RegisterRequest(BaseModel):
    name: str = Field("", max_length=200)
    capabilities: list[Capability] = Field(..., min_length=1, max_length=1000)


class RegisterResponse(BaseModel):
    worker_id: str
    pool: str
    lease_seconds: float
    heartbeat_seconds: float


class ClaimRequest(BaseModel):
    worker_id: str
    wait_seconds: float = Field(20.0, ge=0, le=MAX_CLAIM_WAIT, description="Long-poll up to this long.")


class ClaimMoreRequest(BaseModel):
    worker_id: str
    model: str
    task_type: str
    match: dict[str, Any] = Field(default_factory=dict)
    limit: int = Field(..., ge=1, le=64)


class ClaimedOrigin(BaseModel):
    """The earlier task a claimed derived operation works on (`genmill.domain.records.OriginTask` on the wire)."""

    task_id: str
    model: str
    task_type: str
    input: dict[str, Any]
    output: dict[str, Any]
    detail: dict[str, Any] | None = None
    created_at: datetime

    @classmethod
    def from_origin(cls, origin: OriginTask) -> ClaimedOrigin:
        return cls(
            task_id=origin.task_id,
            model=origin.model,
            task_type=origin.task_type,
            input=origin.input,
            output=origin.output,
            detail=origin.detail,
            created_at=origin.created_at,
        )

    def to_origin(self) -> OriginTask:
        return OriginTask(
            task_id=self.task_id,
            model=self.model,
            task_type=self.task_type,
            input=self.input,
            output=self.output,
            detail=self.detail,
            created_at=self.created_at,
        )


class ClaimedTask(BaseModel):
    task_id: str
    account_id: str
    model: str
    task_type: str
    input: dict[str, Any]
    attempts: int
    max_attempts: int
    created_at: datetime
    lease_id: str
    lease_expires_at: datetime
    origin: ClaimedOrigin | None = Field(
        None, description="The earlier task, when this task is an operation on one (its entry has derived_from)."
    )

    @classmethod
    def from_claim(cls, claim: Claim) -> ClaimedTask:
        t = claim.task
        return cls(
            task_id=t.task_id,
            account_id=t.account_id,
            model=t.model,
            task_type=t.task_type,
            input=t.input,
            attempts=t.attempts,
            max_attempts=t.max_attempts,
            created_at=t.created_at,
            lease_id=claim.lease_id,
            lease_expires_at=claim.lease_expires_at,
            origin=None if claim.origin is None else ClaimedOrigin.from_origin(claim.origin),
        )

    def to_claim(self) -> Claim:
        task = Task(
            task_id=self.task_id,
            account_id=self.account_id,
            model=self.model,
            task_type=self.task_type,
            family="",
            status=TaskStatus.PROCESSING,
            input=self.input,
            config={},
            output=None,
            detail=None,
            logs=[],
            error=None,
            price=0,
            frozen_credits=0,
            consumed_credits=0,
            service_mode="",
            priority=0,
            attempts=self.attempts,
            max_attempts=self.max_attempts,
            created_at=self.created_at,
            started_at=None,
            ended_at=None,
            lease_id=self.lease_id,
            lease_expires_at=self.lease_expires_at,
        )
        origin = None if self.origin is None else self.origin.to_origin()
        return Claim(task, self.lease_id, self.lease_expires_at, origin)


class ClaimResponse(BaseModel):
    task: ClaimedTask | None = None


class ClaimMoreResponse(BaseModel):
    tasks: list[ClaimedTask] = Field(default_factory=list)


class Heartbeat(BaseModel):
    lease_id: str
    logs: list[str] = Field(default_factory=list, max_length=1000)
    detail: dict[str, Any] | None = None


class HeartbeatResponse(BaseModel):
    lease_expires_at: datetime
    cancel_requested: bool = False


class Completion(Heartbeat):
    output: dict[str, Any]


class Failure(Heartbeat):
    error: dict[str, Any]


class InputRequest(BaseModel):
    lease_id: str
    ref: str = Field(..., max_length=64 * 1024 * 1024)
    field: str = Field(..., max_length=100)


class OutputStored(BaseModel):
    url: str
