from __future__ import annotations

import base64
import json
import random
import time
from datetime import timedelta

import pytest

from genmill.domain.webhooks import (
    RETRY_SCHEDULE,
    DeliveryState,
    decide,
    parse_retry_after,
    sign,
    signing_key,
)


@pytest.mark.parametrize(
    ("code", "state"),
    [(200, "delivered"), (204, "delivered"), (410, "gone"), (400, "failed"), (404, "failed"), (401, "failed")],
)
def test_final_answers(code: int, state: str) -> None:
    assert decide(code, 1).state == DeliveryState(state)


@pytest.mark.parametrize("code", [None, 500, 502, 503, 408, 429])
def test_retryable_answers_back_off(code: int | None) -> None:
    rng = random.Random(1)
    first = decide(code, 1, rng=rng)
    later = decide(code, 5, rng=rng)
    assert first.state is DeliveryState.PENDING and later.state is DeliveryState.PENDING
    assert first.retry_in is not None and later.retry_in is not None
    assert timedelta(seconds=4) <= first.retry_in <= timedelta(seconds=6)
    assert later.retry_in > first.retry_in


def test_retries_span_about_a_day_then_stop() -> None:
    assert 20 * 3600 <= sum(RETRY_SCHEDULE) <= 30 * 3600
    assert decide(500, len(RETRY_SCHEDULE)).state is DeliveryState.PENDING
    assert decide(500, len(RETRY_SCHEDULE) + 1).state is DeliveryState.EXHAUSTED


def test_retry_after_is_honoured_and_capped() -> None:
    decision = decide(429, 1, retry_after=120)
    assert decision.retry_in is not None and decision.retry_in >= timedelta(seconds=120)
    capped = decide(429, 1, retry_after=10**9)
    assert capped.retry_in is not None and capped.retry_in <= timedelta(days=1)
    assert parse_retry_after("30") == 30 and parse_retry_after("soon") is None and parse_retry_after(None) is None


def test_scale_shrinks_the_schedule() -> None:
    decision = decide(500, 1, scale=0.01, rng=random.Random(0))
    assert decision.retry_in is not None and decision.retry_in < timedelta(seconds=0.1)


def test_signature_matches_the_standard_webhooks_library() -> None:
    standardwebhooks = pytest.importorskip("standardwebhooks")
    body = b'{"timestamp": 1, "data": {"status": "completed"}}'
    now = int(time.time())
    for secret in ("s3cret", "whsec_" + base64.b64encode(b"0123456789abcdef").decode()):
        key = signing_key(secret)
        headers = {
            "webhook-id": "msg_1",
            "webhook-timestamp": str(now),
            "webhook-signature": sign(key, "msg_1", now, body),
        }
        receiver_secret = secret if secret.startswith("whsec_") else "whsec_" + base64.b64encode(key).decode()
        assert standardwebhooks.Webhook(receiver_secret).verify(body, headers) == json.loads(body)
        tampered = {**headers, "webhook-id": "msg_2"}
        with pytest.raises(standardwebhooks.WebhookVerificationError):
            standardwebhooks.Webhook(receiver_secret).verify(body, tampered)
