"""Which creates queue for a worker and how long a queued task may wait (genmill.domain.waiting)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from genmill.catalog import build_catalog
from genmill.domain.failures import FailureCode
from genmill.domain.waiting import (
    QueuePolicy,
    accepts,
    names_entry,
    no_worker_failure,
    waited_too_long,
)
from genmill.settings import Settings

T0 = datetime(2025, 1, 1, tzinfo=UTC)
TEN_MINUTES = timedelta(minutes=10)


def test_an_item_names_every_entry_a_model_or_one_entry() -> None:
    assert names_entry("*", "Qubico/wanx", "txt2video")
    assert names_entry("Qubico/wanx", "Qubico/wanx", "txt2video")
    assert names_entry("Qubico/wanx/txt2video", "Qubico/wanx", "txt2video")
    assert not names_entry("Qubico/wanx/img2video", "Qubico/wanx", "txt2video")
    assert not names_entry("Qubico", "Qubico/wanx", "txt2video")


def test_the_default_policy_declares_nothing_and_waits_ten_minutes() -> None:
    policy = QueuePolicy.parse()
    assert not policy.declares("genmill/echo", "echo")
    assert policy.max_wait("genmill/echo", "echo") == TEN_MINUTES == policy.shortest_wait()


def test_the_most_specific_wait_limit_applies() -> None:
    policy = QueuePolicy.parse("Qubico/wanx, genmill/echo/echo", "120, Qubico/wanx=1800, Qubico/wanx/txt2video=3600")
    assert policy.declares("Qubico/wanx", "img2video") and policy.declares("genmill/echo", "echo")
    assert not policy.declares("Qubico/tts", "zero-shot")
    assert policy.max_wait("Qubico/wanx", "txt2video") == timedelta(hours=1)
    assert policy.max_wait("Qubico/wanx", "img2video") == timedelta(minutes=30)
    assert policy.max_wait("genmill/echo", "echo") == timedelta(minutes=2) == policy.shortest_wait()
    assert QueuePolicy.parse(max_pending="*=30").max_wait("genmill/echo", "echo") == timedelta(seconds=30)


@pytest.mark.parametrize("bad", ["ten", "0", "-5", "Qubico/wanx=", "=60", "Qubico/wanx=nan", "inf"])
def test_a_bad_wait_limit_names_the_item(bad: str) -> None:
    with pytest.raises(ValueError, match=r"seconds|name a model"):
        QueuePolicy.parse(max_pending=bad)
    with pytest.raises(ValidationError):
        Settings(max_pending_seconds=bad)


def test_names_that_are_not_in_the_catalog_are_reported() -> None:
    catalog = build_catalog()
    policy = QueuePolicy.parse("*, Qubico/wanx, genmill/echo/echo, Qubico/nope", "60, genmill/echo/dance=5")
    assert policy.unknown_names(catalog) == ["Qubico/nope", "genmill/echo/dance"]


def test_a_create_is_accepted_when_served_now_recently_or_declared() -> None:
    assert accepts(serving_now=True, served_recently=True, declared=False)
    assert accepts(serving_now=False, served_recently=True, declared=False)
    assert accepts(serving_now=False, served_recently=False, declared=True)
    assert not accepts(serving_now=False, served_recently=False, declared=False)


def test_the_wait_counts_from_pending_or_from_the_last_worker_seen_whichever_is_later() -> None:
    assert not waited_too_long(T0, None, T0 + TEN_MINUTES, TEN_MINUTES)
    assert waited_too_long(T0, None, T0 + TEN_MINUTES + timedelta(seconds=1), TEN_MINUTES)
    seen_later = T0 + timedelta(minutes=5)
    assert not waited_too_long(T0, seen_later, T0 + timedelta(minutes=14), TEN_MINUTES)
    assert waited_too_long(T0, seen_later, T0 + timedelta(minutes=16), TEN_MINUTES)
    seen_before = T0 - timedelta(hours=1)
    assert waited_too_long(T0, seen_before, T0 + timedelta(minutes=11), TEN_MINUTES)


def test_the_failure_says_which_entry_and_pool_found_no_worker() -> None:
    error = no_worker_failure("Qubico/wanx", "txt2video", "public", limit=TEN_MINUTES, last_served=T0).to_error()
    assert error["code"] == FailureCode.NO_WORKER and int(FailureCode.NO_WORKER) == 10004
    assert error["message"].startswith("no worker of this deployment ran Qubico/wanx/txt2video within 600 s")
    assert "credits were released" in error["message"] and "2025-01-01T00:00:00Z" in error["raw_message"]
    assert error["detail"] == {"max_pending_seconds": 600.0, "last_worker_seen_at": "2025-01-01T00:00:00Z"}
    private = no_worker_failure("Qubico/wanx", "txt2video", "acct-1", limit=TEN_MINUTES, last_served=None)
    assert "this account's private pool" in private.message and "no worker served it" in private.raw_message
