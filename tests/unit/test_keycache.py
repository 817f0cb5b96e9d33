"""The API key cache: hits within its lifetime, expiry after it, and off when the lifetime is 0."""

from __future__ import annotations

from datetime import UTC, datetime

from genmill.api.keycache import MAX_ENTRIES, KeyCache
from genmill.domain.ledger import Balances
from genmill.domain.records import Account

ACCOUNT = Account("a1", "one", "self-hosted", True, 5, Balances(10, 0, 0), datetime(2026, 1, 1, tzinfo=UTC))


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_key_is_trusted_for_the_lifetime_then_checked_again() -> None:
    clock = Clock()
    cache = KeyCache(10.0, clock=clock)
    assert cache.get("k") is None
    cache.put("k", ACCOUNT)
    clock.now += 9.9
    assert cache.get("k") == ACCOUNT
    clock.now += 0.1
    assert cache.get("k") is None
    assert cache.get("k") is None  # the expired entry is gone, not revived


def test_zero_lifetime_caches_nothing() -> None:
    cache = KeyCache(0.0)
    cache.put("k", ACCOUNT)
    assert cache.get("k") is None


def test_the_cache_never_grows_past_its_bound() -> None:
    cache = KeyCache(60.0)
    for i in range(MAX_ENTRIES + 5):
        cache.put(f"k{i}", ACCOUNT)
    assert len(cache._entries) <= MAX_ENTRIES
    assert cache.get(f"k{MAX_ENTRIES + 4}") == ACCOUNT
