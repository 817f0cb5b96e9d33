"""Limits on use: token buckets for request rates, and the size of what a task stores.

Pure rules: the caller owns the buckets and passes the time (`time.monotonic()` in service, any number in a
test), so a rule is checked without sleeping. `genmill.engine.quotas` keeps the buckets per key or account.

A bucket holds up to `burst` tokens and gains `per_second` of them each second; a request takes one. A full
bucket is the same as no bucket at all, which lets the owner forget the buckets nobody has used lately.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

from genmill.errors import PayloadTooLarge, RateLimited


@dataclass(frozen=True)
class Rate:
    """`per_second` sustained with bursts up to `burst`; a rate of 0 (or a burst of 0) is no limit at all."""

    per_second: float
    burst: int

    @property
    def unlimited(self) -> bool:
        return self.per_second <= 0 or self.burst <= 0


@dataclass
class Bucket:
    """Tokens left at `updated` (a monotonic time in seconds)."""

    tokens: float
    updated: float


def full_bucket(rate: Rate, now: float) -> Bucket:
    return Bucket(float(rate.burst), now)


def refill(bucket: Bucket, rate: Rate, now: float) -> None:
    """Add what `rate` earned since the bucket was last updated, never past the burst (a clock that went back
    earns nothing)."""
    elapsed = max(0.0, now - bucket.updated)
    bucket.tokens = min(float(rate.burst), bucket.tokens + elapsed * rate.per_second)
    bucket.updated = max(bucket.updated, now)


def take(bucket: Bucket, rate: Rate, now: float) -> float:
    """Take one token: 0.0 when the request may go ahead, otherwise the seconds until a token is there (nothing
    is taken then, so a refused client does not dig itself deeper)."""
    if rate.unlimited:
        return 0.0
    refill(bucket, rate, now)
    if bucket.tokens >= 1.0:
        bucket.tokens -= 1.0
        return 0.0
    return (1.0 - bucket.tokens) / rate.per_second


def is_full(bucket: Bucket, rate: Rate, now: float) -> bool:
    """Whether the bucket has refilled to its burst, i.e. holds nothing a new bucket would not."""
    refill(bucket, rate, now)
    return bucket.tokens >= rate.burst


def retry_after_seconds(wait: float) -> int:
    """The whole seconds a `Retry-After` header says for a wait (at least 1: 0 would invite an instant retry)."""
    return max(1, math.ceil(wait))


def rate_limited(what: str, rate: Rate, per: str, wait: float) -> RateLimited:
    """The 429 for a refused request: what was limited, the limit, and when to come back."""
    seconds = retry_after_seconds(wait)
    return RateLimited(
        f"too many {what}: at most {rate.per_second:g} per second (bursts of {rate.burst}) per {per}; "
        f"retry after {seconds} s",
        retry_after=seconds,
        detail={"limit": what, "per_second": rate.per_second, "burst": rate.burst, "retry_after": seconds},
    )


def stored_json_bytes(value: Any) -> int:
    """The size of `value` as compact UTF-8 JSON: what a task's input costs in its row, in every event snapshot
    and in every answer that shows the task."""
    return len(json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str).encode("utf-8", "replace"))


def check_input_size(size: int, limit: int) -> None:
    """Refuse a task whose input would store more than `limit` bytes (0: no limit), naming `input` (413)."""
    if limit > 0 and size > limit:
        raise PayloadTooLarge(
            f"input: the task's input is {size} bytes as JSON; the limit is {limit} bytes. Send large files as "
            "URLs (POST /api/ephemeral_resource stores one for 24 hours) instead of inline base64",
            detail={"field": "input", "bytes": size, "limit": limit},
        )


def streams_refused(open_streams: int, limit: int, retry_after: int) -> RateLimited:
    """The 429 for one more event stream or `Prefer: wait` of an account that already holds `limit` of them."""
    return RateLimited(
        f"too many open streams: the account already has {open_streams} event streams and waiting requests "
        f"open on this server (the limit is {limit}); close one or retry after {retry_after} s",
        retry_after=retry_after,
        detail={"limit": "streams", "open": open_streams, "max": limit, "retry_after": retry_after},
    )
