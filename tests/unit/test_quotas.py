"""The limits on use as pure rules and in-memory counters: token buckets, input size, open streams, the cap on
connections under the open-file limit. Time is a number the test moves; nothing sleeps."""

from __future__ import annotations

import pytest

from genmill.domain.quotas import (
    Bucket,
    Rate,
    check_input_size,
    full_bucket,
    retry_after_seconds,
    stored_json_bytes,
    take,
)
from genmill.engine.quotas import PRUNE_AT, Quotas, QuotaSettings, RateLimiter, StreamSlots
from genmill.errors import PayloadTooLarge, RateLimited
from genmill.httpserver import RESERVED_FILES, connection_cap


class FakeTime:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_bucket_allows_its_burst_then_says_when_the_next_token_comes() -> None:
    rate = Rate(per_second=2, burst=3)
    bucket = full_bucket(rate, 0.0)
    assert [take(bucket, rate, 0.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert take(bucket, rate, 0.0) == pytest.approx(0.5)
    assert take(bucket, rate, 0.25) == pytest.approx(0.25)  # refused takes nothing: the wait only shrinks
    assert take(bucket, rate, 0.5) == 0.0
    assert take(bucket, rate, 100.0) == 0.0 and bucket.tokens == pytest.approx(2.0)  # refilled to the burst, no more


def test_a_clock_that_goes_back_earns_nothing_and_zero_is_no_limit() -> None:
    rate = Rate(per_second=1, burst=1)
    bucket = Bucket(tokens=0.0, updated=10.0)
    assert take(bucket, rate, 5.0) == pytest.approx(1.0)
    assert take(Bucket(0.0, 0.0), Rate(0, 10), 0.0) == 0.0
    assert take(Bucket(0.0, 0.0), Rate(5, 0), 0.0) == 0.0


def test_retry_after_is_whole_seconds_and_at_least_one() -> None:
    assert [retry_after_seconds(w) for w in (0.001, 0.5, 1.0, 1.2)] == [1, 1, 1, 2]


def test_the_limiter_keeps_one_bucket_per_key_and_answers_429_with_retry_after() -> None:
    clock = FakeTime()
    limiter = RateLimiter(Rate(per_second=0.5, burst=2), "requests", "API key", clock=clock)
    limiter.check("a")
    limiter.check("a")
    with pytest.raises(RateLimited) as refused:
        limiter.check("a")
    assert refused.value.status_code == 429 and refused.value.retry_after == 2
    assert "per API key" in refused.value.message and refused.value.detail["limit"] == "requests"
    limiter.check("b")  # another key has its own bucket
    clock.now += 2
    limiter.check("a")


def test_the_limiter_forgets_full_buckets_when_it_holds_many() -> None:
    clock = FakeTime()
    limiter = RateLimiter(Rate(per_second=1, burst=1), "requests", "API key", clock=clock)
    for n in range(PRUNE_AT):
        limiter.check(f"key{n}")
    with pytest.raises(RateLimited):
        limiter.check("key0")
    clock.now += 5  # every bucket refilled
    limiter.check("new")
    assert len(limiter._buckets) == 1


def test_stream_slots_are_per_account_and_released_once() -> None:
    slots = StreamSlots(limit=2)
    first = slots.acquire("acct")
    with slots.hold("acct"):
        with pytest.raises(RateLimited) as refused:
            slots.acquire("acct")
        assert refused.value.retry_after > 0 and refused.value.detail["max"] == 2
        slots.acquire("other").release()
    first.release()
    first.release()  # a second release gives nothing back twice
    assert slots.open_count("acct") == 0
    held = [slots.acquire("acct"), slots.acquire("acct")]
    assert slots.open_count("acct") == 2
    for slot in held:
        slot.release()
    unlimited = StreamSlots(limit=0)
    assert all(unlimited.acquire("acct") for _ in range(500))


def test_an_input_over_the_limit_is_a_413_naming_input() -> None:
    payload = {"text": "é" * 600}
    size = stored_json_bytes(payload)
    assert size == len('{"text":""}') + 1200  # UTF-8 bytes, compact separators
    check_input_size(size, size)
    check_input_size(size, 0)
    with pytest.raises(PayloadTooLarge) as refused:
        check_input_size(size, size - 1)
    assert refused.value.message.startswith("input: ") and refused.value.detail["field"] == "input"


def test_free_tasks_are_limited_per_account_and_priced_ones_are_not() -> None:
    clock = FakeTime()
    quotas = Quotas(QuotaSettings(free_tasks=Rate(1, 2), max_task_input_bytes=100), clock=clock)
    quotas.admit_task("acct", {"x": 1}, free=True)
    quotas.admit_task("acct", {"x": 1}, free=True)
    with pytest.raises(RateLimited) as refused:
        quotas.admit_task("acct", {"x": 1}, free=True)
    assert refused.value.detail["limit"] == "free tasks"
    quotas.admit_task("acct", {"x": 1}, free=False)
    quotas.admit_task("other", {"x": 1}, free=True)
    with pytest.raises(PayloadTooLarge):
        quotas.admit_task("acct", {"x": "y" * 200}, free=False)


def test_the_connection_cap_fits_under_the_open_file_limit() -> None:
    assert connection_cap(2048, 0) == 2048
    assert connection_cap(2048, 1_048_576) == 2048
    assert connection_cap(2048, 1024) == 1024 - RESERVED_FILES
    assert connection_cap(2048, 100) == 16
