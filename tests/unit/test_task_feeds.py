"""The shared task feed on its own, over an in-memory event log: every stream gets every event once and in order,
whether it follows live, starts far back or falls behind the feed's window; a task that ended with its events
pruned ends its streams at once; a failing read ends them instead of hanging."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from typing import Any, cast

from genmill.api.streams import FEED_WINDOW, TaskFeeds
from genmill.bus import EventBus
from genmill.domain.records import EventRef, StoredEvent
from genmill.engine import TaskEngine

TASK = "task-1"


class EventLog:
    """What TaskFeeds asks of the task engine, over a list."""

    def __init__(self, bus: EventBus) -> None:
        self.bus = bus
        self.events: list[StoredEvent] = []
        self.ended = False
        self.broken = False

    def add(self, count: int, *, end: bool = False) -> None:
        refs = []
        for n in range(count):
            last = end and n == count - 1
            status = "completed" if last else "processing"
            event = StoredEvent(
                len(self.events) + 1,
                TASK,
                "status" if last else "progress",
                status,
                {"task_id": TASK, "status": status, "n": len(self.events) + 1},
                datetime.now(UTC),
            )
            self.events.append(event)
            refs.append(EventRef(event.event_id, TASK, "acct", status, event.kind, False))
        self.ended = self.ended or end
        self.bus.publish(refs)

    def events_after(self, task_id: str, after: int) -> list[StoredEvent]:
        if self.broken:
            raise RuntimeError("the database went away")
        return [e for e in self.events if e.event_id > after][:500]

    def is_terminal(self, task_id: str) -> bool:
        return self.ended

    def stream_position(self, task_id: str) -> tuple[int, bool]:
        if self.broken:
            raise RuntimeError("the database went away")
        return (self.events[-1].event_id if self.events else 0, self.ended)


def ids(frames: list[bytes]) -> list[int]:
    return [int(f.split(b"\n", 1)[0].removeprefix(b"id: ")) for f in frames if f.startswith(b"id: ")]


async def collect(feeds: TaskFeeds, after: int) -> list[bytes]:
    return [frame async for frame in feeds.stream(TASK, after)]


def setup() -> tuple[EventLog, TaskFeeds]:
    bus = EventBus()
    log = EventLog(bus)
    return log, TaskFeeds(cast(TaskEngine, log), bus)


def test_every_stream_gets_every_event_once_in_order_however_far_back_it_starts() -> None:
    async def scenario() -> tuple[list[list[bytes]], bytes | None]:  # every stream's frames, the wait's answer
        log, feeds = setup()
        log.add(3)
        live = asyncio.create_task(collect(feeds, 0))
        resumed = asyncio.create_task(collect(feeds, 2))
        waiting = asyncio.create_task(feeds.wait_for_end(TASK, 30))
        while feeds.watchers(TASK) < 3:
            await asyncio.sleep(0.01)
        log.add(FEED_WINDOW * 3)  # more than the feed keeps: whoever is behind reads the rest from the log
        await asyncio.sleep(0.05)
        late = asyncio.create_task(collect(feeds, 0))
        log.add(5, end=True)
        streams = list(await asyncio.gather(live, resumed, late))
        answer = await waiting
        assert feeds.watchers(TASK) == 0
        return streams, answer

    (live, resumed, late), answer = asyncio.run(scenario())
    total = 3 + FEED_WINDOW * 3 + 5
    assert ids(live) == list(range(1, total + 1))
    assert ids(resumed) == list(range(3, total + 1))
    assert ids(late) == list(range(1, total + 1))
    assert answer is not None
    assert json.loads(answer) == {
        "code": 200,
        "data": {"task_id": TASK, "status": "completed", "n": total},
        "message": "success",
    }
    frame: Any = live[-1].decode()
    assert frame.startswith(f"id: {total}\nevent: status\ndata: ") and frame.endswith("\n\n")


def test_a_task_that_ended_with_its_events_pruned_ends_its_streams_at_once() -> None:
    async def scenario() -> tuple[list[bytes], bytes | None]:
        log, feeds = setup()
        log.ended = True
        return await collect(feeds, 0), await feeds.wait_for_end(TASK, 30)

    assert asyncio.run(scenario()) == ([], None)


def test_a_failing_read_ends_the_streams_instead_of_hanging() -> None:
    async def scenario() -> tuple[list[bytes], bytes | None]:
        log, feeds = setup()
        log.add(2)
        got: list[bytes] = []

        async def follow() -> None:
            async for frame in feeds.stream(TASK, 0):
                got.append(frame)

        stream = asyncio.create_task(follow())
        while len(got) < 2:
            await asyncio.sleep(0.01)
        log.broken = True
        log.add(1)
        await stream
        return got, await feeds.wait_for_end(TASK, 30)

    frames, answer = asyncio.run(scenario())
    assert ids(frames) == [1, 2] and answer is None
