"""Request bodies (the `TaskCreate` side). Responses are built by `genmill.domain.wire`."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class WebhookConfig(BaseModel):
    endpoint: str = Field("", description="URL to POST task updates to.")
    secret: str = Field("", description="Sent back in the x-webhook-secret header.")


class TaskConfig(BaseModel):
    service_mode: str = Field("", description="'public' (shared pool), 'private' (own workers) or empty.")
    webhook_config: WebhookConfig | None = None
    priority: int = Field(
        0, ge=-100, le=100, description="Higher runs first among the account's peers (our addition; default 0)."
    )


class TaskCreate(BaseModel):
    model: str = Field(..., max_length=100, examples=["Qubico/image-toolkit"])
    task_type: str = Field(..., max_length=100, examples=["upscale"])
    input: dict[str, Any] = Field(..., description="The model's input; see GET /api/v1/models for each schema.")
    config: TaskConfig | None = None


class UploadCreate(BaseModel):
    file_name: str = Field(..., description="Name with an allowed extension, at most 128 characters.")
    file_data: str = Field(..., description="Base64 or a data: URI; at most 10 MB decoded.")
