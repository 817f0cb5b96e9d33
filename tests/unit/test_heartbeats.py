"""The shared heartbeat thread: beats each watched claim on schedule and never beats after a task leaves."""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from typing import Any

from genmill.domain.records import Claim, Task
from genmill.domain.states import TaskStatus
from genmill.errors import Conflict
from genmill.worker.heartbeats import Heartbeats

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def claim(task_id: str) -> Claim:
    task = Task(
        task_id, "a", "m", "t", "f", TaskStatus.PROCESSING, {}, {}, None, None, [], None, 0, 0, 0, "", 0, 1, 3,
        NOW, NOW, None,
    )  # fmt: skip
    return Claim(task, f"lease-{task_id}", NOW)


class Ctx:
    def __init__(self) -> None:
        self.lost = threading.Event()
        self.logs = ["working"]

    def drain(self) -> tuple[list[str], dict[str, Any] | None]:
        logs, self.logs = self.logs, []
        return logs, None


def test_each_watched_claim_is_beaten_with_its_buffered_logs() -> None:
    beats: list[tuple[str, list[str]]] = []
    both = threading.Event()

    def beat(c: Claim, logs: list[str], detail: dict[str, Any] | None) -> None:
        beats.append((c.task.task_id, logs))
        if {t for t, _ in beats} == {"t1", "t2"}:
            both.set()

    hb = Heartbeats(beat, 0.01)
    with hb.watch(claim("t1"), Ctx()), hb.watch(claim("t2"), Ctx()):
        assert both.wait(10)
    hb.close()
    assert ("t1", ["working"]) in beats and ("t2", ["working"]) in beats


def test_leaving_waits_for_the_beat_in_flight() -> None:
    started, release = threading.Event(), threading.Event()
    finished: list[str] = []

    def beat(c: Claim, logs: list[str], detail: dict[str, Any] | None) -> None:
        started.set()
        release.wait(10)
        finished.append(c.task.task_id)

    hb = Heartbeats(beat, 0.01)
    releaser = threading.Timer(0.05, release.set)
    with hb.watch(claim("t1"), Ctx()):
        assert started.wait(10)
        releaser.start()
    assert finished == ["t1"]  # the block did not end before the beat it overlapped had finished
    releaser.join()
    hb.close()


def test_a_refused_beat_marks_the_lease_lost_and_stops_beating_it() -> None:
    calls: list[str] = []

    def beat(c: Claim, logs: list[str], detail: dict[str, Any] | None) -> None:
        calls.append(c.task.task_id)
        raise Conflict("lease gone")

    hb = Heartbeats(beat, 0.01)
    ctx = Ctx()
    with hb.watch(claim("t1"), ctx):
        assert ctx.lost.wait(10)
        count = len(calls)
        threading.Event().wait(0.1)
        assert len(calls) == count
    hb.close()


def test_a_first_beat_sooner_than_the_interval_carries_what_the_task_said_at_its_start() -> None:
    """The worker asks for an early first beat so that a task's `served_by` shows while it runs, not only after a
    whole heartbeat interval."""
    sent = threading.Event()

    def beat(c: Claim, logs: list[str], detail: dict[str, Any] | None) -> None:
        sent.set()

    hb = Heartbeats(beat, 3600.0)
    with hb.watch(claim("t1"), Ctx(), first_beat=0.0):
        assert sent.wait(10)
    hb.close()
