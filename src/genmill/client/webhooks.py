"""Checking that a webhook delivery came from the server: PiAPI's `x-webhook-secret` header, or genmill's
Standard Webhooks signature (docs/webhooks.md). Pure: hmac and the standard library only."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import time
from collections.abc import Mapping

from genmill.client.errors import ProtocolError, WebhookVerificationError
from genmill.client.models import Task, WebhookEvent

DEFAULT_TOLERANCE_SECONDS = 300


def signing_key(secret: str) -> bytes:
    """The HMAC key genmill signs with: a `whsec_<base64>` secret decoded, any other secret as its UTF-8 bytes."""
    if secret.startswith("whsec_"):
        try:
            return base64.b64decode(secret.removeprefix("whsec_"), validate=True)
        except (binascii.Error, ValueError):
            pass
    return secret.encode("utf-8")


def verify_webhook(
    body: bytes | str,
    headers: Mapping[str, str],
    secret: str,
    *,
    require_signature: bool = False,
    tolerance_seconds: float = DEFAULT_TOLERANCE_SECONDS,
    now: float | None = None,
) -> WebhookEvent:
    """Verify a delivery and return its task; raise `WebhookVerificationError` if it does not verify.

    `secret` is the task's `webhook_config.secret`, or, for a task without one, the account's `whsec_…` signing
    secret (`GET /account/webhook_secret`). With a `webhook-signature` header (genmill), the HMAC-SHA256 of
    `"<webhook-id>.<webhook-timestamp>.<body>"` must match one of its `v1,` signatures and the timestamp must be
    within `tolerance_seconds` of now (replays of old deliveries are refused). Without one (PiAPI), the
    `x-webhook-secret` header must equal `secret`, unless `require_signature` is set.
    """
    raw = body.encode("utf-8") if isinstance(body, str) else body
    lowered = {k.lower(): v for k, v in headers.items()}
    signature = lowered.get("webhook-signature")
    webhook_id = lowered.get("webhook-id")
    timestamp: int | None = None
    if signature is not None:
        stamp = lowered.get("webhook-timestamp", "")
        if webhook_id is None or not stamp.isdigit():
            raise WebhookVerificationError("webhook-id or webhook-timestamp missing or malformed")
        timestamp = int(stamp)
        current = time.time() if now is None else now
        if abs(current - timestamp) > tolerance_seconds:
            raise WebhookVerificationError(f"webhook-timestamp {timestamp} is more than {tolerance_seconds:g} s away")
        signed = f"{webhook_id}.{timestamp}.".encode() + raw
        expected = base64.b64encode(hmac.new(signing_key(secret), signed, hashlib.sha256).digest()).decode()
        offered = [part.split(",", 1)[1] for part in signature.split() if part.startswith("v1,")]
        if not any(hmac.compare_digest(expected, candidate) for candidate in offered):
            raise WebhookVerificationError("webhook-signature does not match")
    elif require_signature:
        raise WebhookVerificationError("no webhook-signature header")
    else:
        given = lowered.get("x-webhook-secret")
        if given is None or not hmac.compare_digest(given.encode("utf-8"), secret.encode("utf-8")):
            raise WebhookVerificationError("x-webhook-secret missing or wrong")
    try:
        payload = json.loads(raw)
        data = payload["data"] if isinstance(payload, dict) else None
        task = Task.from_wire(data)
    except (ValueError, KeyError, ProtocolError) as exc:
        raise WebhookVerificationError(f"the body is not a task delivery: {exc}") from exc
    body_stamp = payload.get("timestamp")
    if timestamp is None and isinstance(body_stamp, int):
        timestamp = body_stamp
    return WebhookEvent(task=task, timestamp=timestamp, webhook_id=webhook_id)
