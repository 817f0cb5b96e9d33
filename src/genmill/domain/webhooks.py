"""Webhook rules as pure functions: what an answer means, when to try again, how to sign.

Retries follow an exponential schedule with ±20 % jitter that spans about a day (the sum of `RETRY_SCHEDULE` is
about 27 hours); 410 Gone stops for good; other 4xx (except 408 and 429) are the receiver's verdict and are not
retried; 5xx, 408, 429, timeouts and connection errors are.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import random
from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum

RETRY_SCHEDULE = (5, 30, 120, 600, 1800, 3600, 7200, 14400, 28800, 43200)
"""Seconds to wait after attempt 1, 2, …; once exhausted the delivery is given up."""
MAX_RETRY_AFTER = 86400


class DeliveryState(StrEnum):
    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed"  # the receiver refused it with a 4xx: recorded, not retried
    GONE = "gone"  # 410: the receiver asked us to stop
    EXHAUSTED = "exhausted"  # retried for about a day without success


@dataclass(frozen=True)
class Decision:
    state: DeliveryState
    retry_in: timedelta | None = None


def decide(
    status_code: int | None,
    attempts: int,
    *,
    retry_after: float | None = None,
    scale: float = 1.0,
    rng: random.Random | None = None,
) -> Decision:
    """What to do after attempt number `attempts` got `status_code` (None: timeout or connection error)."""
    if status_code is not None and 200 <= status_code < 300:
        return Decision(DeliveryState.DELIVERED)
    if status_code == 410:
        return Decision(DeliveryState.GONE)
    retryable = status_code is None or status_code >= 500 or status_code in (408, 429)
    if not retryable:
        return Decision(DeliveryState.FAILED)
    if attempts > len(RETRY_SCHEDULE):
        return Decision(DeliveryState.EXHAUSTED)
    base = RETRY_SCHEDULE[attempts - 1] * scale
    jitter = (rng or random).uniform(0.8, 1.2)
    delay = base * jitter
    if retry_after is not None and retry_after > 0:
        delay = max(delay, min(retry_after, MAX_RETRY_AFTER))
    return Decision(DeliveryState.PENDING, timedelta(seconds=delay))


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header given in seconds (HTTP dates are rare from webhook receivers)."""
    if not value:
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        return None
    return seconds if seconds >= 0 else None


def signing_key(secret: str) -> bytes:
    """The HMAC key for a secret: `whsec_<base64>` secrets are decoded (Standard Webhooks); others used as UTF-8.

    A receiver verifying a plain secret with the `standardwebhooks` library passes
    `"whsec_" + base64(secret)` as its secret.
    """
    if secret.startswith("whsec_"):
        try:
            return base64.b64decode(secret.removeprefix("whsec_"), validate=True)
        except ValueError:
            pass
    return secret.encode("utf-8")


def sign(key: bytes, message_id: str, timestamp: int, body: bytes) -> str:
    """The Standard Webhooks `webhook-signature` value: `v1,<base64 HMAC-SHA256 of "id.timestamp.body">`."""
    signed = f"{message_id}.{timestamp}.".encode() + body
    digest = hmac.new(key, signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()
