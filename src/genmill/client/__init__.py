"""genmill's Python SDK: `Client` and `AsyncClient` for the PiAPI Unified API, on genmill or hosted PiAPI.

    from pathlib import Path
    from genmill.client import Client

    with Client("http://127.0.0.1:8000", "gm_...") as client:
        task = client.run("Qubico/image-toolkit", "upscale", {"image": Path("photo.png")}, output_dir="out")
        print(task.status, task.files)

It needs only httpx: it imports nothing of the server. docs/sdk.md is the guide.
"""

from genmill.client.aio import AsyncClient
from genmill.client.errors import (
    APIError,
    AuthenticationError,
    BadRequest,
    Conflict,
    ConnectionFailed,
    GenmillClientError,
    Gone,
    InsufficientCredits,
    NotFound,
    PayloadTooLarge,
    PermissionDenied,
    ProtocolError,
    RateLimited,
    ServerError,
    TaskFailed,
    WaitTimeout,
    WebhookVerificationError,
)
from genmill.client.models import Account, Task, TaskError, TaskStatus, WebhookEvent
from genmill.client.sync import Client
from genmill.client.webhooks import verify_webhook

__all__ = [
    "APIError",
    "Account",
    "AsyncClient",
    "AuthenticationError",
    "BadRequest",
    "Client",
    "Conflict",
    "ConnectionFailed",
    "GenmillClientError",
    "Gone",
    "InsufficientCredits",
    "NotFound",
    "PayloadTooLarge",
    "PermissionDenied",
    "ProtocolError",
    "RateLimited",
    "ServerError",
    "Task",
    "TaskError",
    "TaskFailed",
    "TaskStatus",
    "WaitTimeout",
    "WebhookEvent",
    "WebhookVerificationError",
    "verify_webhook",
]
