"""The pure rules of operations on an earlier task (`genmill.domain.origins`) and of which output values are files
(`genmill.domain.output_files`)."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from genmill.domain.catalog import ORIGIN_WINDOW, PRIVATE_ORIGIN_WINDOW, DerivedFrom
from genmill.domain.origins import origin_refusal, origin_window
from genmill.domain.output_files import file_refs, is_file_key
from genmill.domain.records import Task
from genmill.domain.states import TaskStatus

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
DERIVED = DerivedFrom(models=("midjourney",), task_types=("imagine", "variation"))


def task(**changes: Any) -> Task:
    base = Task(
        task_id="t-1",
        account_id="a-1",
        model="midjourney",
        task_type="imagine",
        family="midjourney",
        status=TaskStatus.COMPLETED,
        input={},
        config={},
        output={"image_url": "https://x/1.png"},
        detail=None,
        logs=[],
        error=None,
        price=1,
        frozen_credits=0,
        consumed_credits=1,
        service_mode="",
        priority=0,
        attempts=1,
        max_attempts=3,
        created_at=NOW - timedelta(hours=1),
        started_at=None,
        ended_at=None,
    )
    return dataclasses.replace(base, **changes)


def rule(origin: Task | None, *, age: timedelta | None = None, private: bool = False) -> str | None:
    if origin is not None and age is not None:
        origin = dataclasses.replace(origin, created_at=NOW - age)
    refusal = origin_refusal(DERIVED, "t-1", origin, now=NOW, private=private)
    if refusal is None:
        return None
    assert refusal.field == "input.origin_task_id"
    assert refusal.message == f"input.origin_task_id: {refusal.rule}"
    return refusal.rule


def test_a_completed_task_of_the_model_within_the_window_is_accepted() -> None:
    assert rule(task()) is None
    assert rule(task(task_type="variation"), age=ORIGIN_WINDOW) is None


def test_a_missing_task_is_named_by_its_id() -> None:
    assert rule(None) == "no task t-1 found for this account"


@pytest.mark.parametrize("status", [TaskStatus.PENDING, TaskStatus.PROCESSING, TaskStatus.FAILED, TaskStatus.STAGED])
def test_a_task_that_is_not_completed_is_refused_naming_its_status(status: TaskStatus) -> None:
    assert rule(task(status=status)) == f"task t-1 is {status.value}; only a completed task can be worked on"


def test_the_wrong_model_or_task_type_is_refused_naming_what_is_accepted() -> None:
    assert rule(task(model="Qubico/flux1-dev")) == (
        "task t-1 is of model Qubico/flux1-dev; this operation works on midjourney"
    )
    assert rule(task(task_type="describe")) == (
        "task t-1 is a describe task; this operation works on one of imagine, variation"
    )
    any_type = DerivedFrom(models=("midjourney",))
    assert origin_refusal(any_type, "t-1", task(task_type="describe"), now=NOW, private=False) is None


def test_the_window_is_three_hours_or_three_days_on_a_private_pool() -> None:
    assert origin_window(private=False) == ORIGIN_WINDOW == timedelta(hours=3)
    assert origin_window(private=True) == PRIVATE_ORIGIN_WINDOW == timedelta(days=3)
    late = rule(task(), age=ORIGIN_WINDOW + timedelta(minutes=6))
    assert late is not None and late.startswith("task t-1 was created 3.1 hours ago;")
    assert "within 3 hours of its creation (3 days on the account's private pool)" in late
    assert rule(task(), age=ORIGIN_WINDOW + timedelta(minutes=6), private=True) is None
    assert rule(task(), age=PRIVATE_ORIGIN_WINDOW, private=True) is None
    too_late = rule(task(), age=PRIVATE_ORIGIN_WINDOW + timedelta(hours=1), private=True)
    assert too_late is not None and "73.0 hours ago" in too_late
    assert "within 3 days of its creation on the account's private pool" in too_late


@pytest.mark.parametrize(
    "key",
    ["url", "urls", "image_url", "image_urls", "temporary_image_urls", "discord_image_url", "audio_url", "resource"],
)
def test_file_keys(key: str) -> None:
    assert is_file_key(key)


@pytest.mark.parametrize("key", ["curl", "task_id", "status", "prompt", "resourcefulness", ""])
def test_not_file_keys(key: str) -> None:
    assert not is_file_key(key)


def test_file_refs_finds_every_service_shape_in_order() -> None:
    output = {
        "works": [{"video": {"resource": "k1", "resource_without_watermark": "k2"}, "cover": {"resource": "k3"}}],
        "video": {"url": "l1"},
        "clips": {"c-9": {"audio_url": "s1", "image_url": "s2", "title": "not a file"}},
        "image_urls": ["m1", "m2"],
        "task_id": "not a file",
        "progress": 100,
    }
    assert list(file_refs(output)) == [
        ("works[0].video.resource", "k1"),
        ("works[0].video.resource_without_watermark", "k2"),
        ("works[0].cover.resource", "k3"),
        ("video.url", "l1"),
        ("clips.c-9.audio_url", "s1"),
        ("clips.c-9.image_url", "s2"),
        ("image_urls[0]", "m1"),
        ("image_urls[1]", "m2"),
    ]
