"""Shared live feeds of task events: one reader per watched task, however many streams and waits watch it.

A completion watched by thousands of event streams and `Prefer: wait` requests used to cost one database read
and one JSON encoding per watcher, on a thread or on the event loop, and stalled every other request while they
ran. Now each task that someone watches in this process has one `TaskFeed`: one bus subscription, one read of
the new events per change (in the thread pool), each event encoded once into its Server-Sent Events frame and,
for the terminal one, into the JSON answer a waiting request returns. Every watcher takes the same bytes.

A feed keeps only its last `FEED_WINDOW` frames. A stream that starts further back (`Last-Event-ID`) or falls
behind reads what it misses from the database itself, like any other request, then follows the feed.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from starlette.concurrency import run_in_threadpool
from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from genmill.api.envelope import ok
from genmill.bus import EventBus
from genmill.domain.states import TERMINAL
from genmill.engine import TaskEngine
from genmill.engine.quotas import StreamSlot

log = logging.getLogger("genmill.api")

FEED_WINDOW = 64
"""Frames a feed keeps for watchers a little behind; further back they read from the database."""

SSE_KEEPALIVE_SECONDS = 15.0

EVENTS_PAGE = 500
"""The most events one read returns (`EventLog.events_after`); a full page means there may be more."""


@dataclass(frozen=True)
class Frame:
    event_id: int
    data: bytes
    """The whole Server-Sent Events frame, encoded once for every stream."""
    terminal: bool


@dataclass(frozen=True)
class Batch:
    frames: list[Frame]
    final_answer: bytes | None
    """The `{"code": 200, "data": <task>, ...}` answer of the terminal event, when the batch has it."""
    ended: bool
    """The task has ended and nothing more will come (also when its events were pruned)."""


def encode_events(tasks: TaskEngine, task_id: str, after: int) -> Batch:
    """Every event of the task after `after`, encoded (in a worker thread: the JSON of a large task is slow)."""
    frames: list[Frame] = []
    final: bytes | None = None
    while True:
        events = tasks.events_after(task_id, after)
        for event in events:
            data = json.dumps(event.snapshot)
            frame = f"id: {event.event_id}\nevent: {event.kind}\ndata: {data}\n\n".encode()
            terminal = event.kind == "status" and event.status in TERMINAL
            frames.append(Frame(event.event_id, frame, terminal))
            after = event.event_id
            if terminal:
                final = json.dumps(ok(event.snapshot)).encode()
                return Batch(frames, final, True)
        if len(events) < EVENTS_PAGE:
            break
    return Batch(frames, None, not frames and tasks.is_terminal(task_id))


class TaskFeed:
    """The events of one task as this process has read them since someone started watching it."""

    def __init__(self, task_id: str) -> None:
        self.task_id = task_id
        self.base = 0
        """Every event after `base` up to `last` is in `frames`."""
        self.last = 0
        self.frames: deque[Frame] = deque()
        self.finished = False
        self.final_answer: bytes | None = None
        self.ready = asyncio.Event()
        self.error: BaseException | None = None
        self.watchers = 0
        self.follower: asyncio.Task[None] | None = None
        self._changed = asyncio.Event()

    @property
    def changed(self) -> asyncio.Event:
        """Set at the next change; take it before looking at the feed, then wait on it."""
        return self._changed

    def _notify(self) -> None:
        old, self._changed = self._changed, asyncio.Event()
        old.set()

    def start(self, last: int, ended: bool) -> None:
        self.base = self.last = last
        self.finished = ended
        self.ready.set()
        self._notify()

    def add(self, batch: Batch) -> None:
        for frame in batch.frames:
            self.frames.append(frame)
            self.last = frame.event_id
        while len(self.frames) > FEED_WINDOW:
            self.base = self.frames.popleft().event_id
        if batch.final_answer is not None:
            self.final_answer = batch.final_answer
        self.finished = self.finished or batch.ended
        self._notify()

    def fail(self, error: BaseException) -> None:
        self.error = error
        self.finished = True
        self.ready.set()
        self._notify()

    def frames_after(self, cursor: int) -> list[Frame]:
        """The frames after `cursor` (which is at least `base`), oldest first."""
        found: list[Frame] = []
        for frame in reversed(self.frames):
            if frame.event_id <= cursor:
                break
            found.append(frame)
        found.reverse()
        return found


class TaskFeeds:
    """The feeds of this process, one per watched task, each dropped when its last watcher leaves."""

    def __init__(self, tasks: TaskEngine, bus: EventBus) -> None:
        self.tasks = tasks
        self.bus = bus
        self._feeds: dict[tuple[asyncio.AbstractEventLoop, str], TaskFeed] = {}

    def watchers(self, task_id: str) -> int:
        """Streams and waits following the task in this process now (for tests and diagnostics)."""
        return sum(feed.watchers for (_, watched), feed in self._feeds.items() if watched == task_id)

    @asynccontextmanager
    async def join(self, task_id: str) -> AsyncIterator[TaskFeed]:
        loop = asyncio.get_running_loop()
        key = (loop, task_id)
        feed = self._feeds.get(key)
        if feed is None:
            feed = self._feeds[key] = TaskFeed(task_id)
            feed.follower = loop.create_task(self._follow(feed))
        feed.watchers += 1
        try:
            await feed.ready.wait()
            yield feed
        finally:
            feed.watchers -= 1
            if feed.watchers == 0:
                if self._feeds.get(key) is feed:
                    del self._feeds[key]
                if feed.follower is not None:
                    feed.follower.cancel()

    async def _follow(self, feed: TaskFeed) -> None:
        try:
            with self.bus.watch(feed.task_id) as changed:
                # Subscribed first, then read where the task is: nothing committed in between is missed.
                last, ended = await run_in_threadpool(self.tasks.stream_position, feed.task_id)
                feed.start(last, ended)
                while not feed.finished:
                    await changed.wait()
                    changed.clear()
                    feed.add(await run_in_threadpool(encode_events, self.tasks, feed.task_id, feed.last))
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the database went away: watchers end, clients reconnect with Last-Event-ID
            log.warning("the event feed of %s stopped: its events could not be read", feed.task_id, exc_info=True)
            feed.fail(exc)

    async def stream(self, task_id: str, after: int) -> AsyncIterator[bytes]:
        """The task's Server-Sent Events after event `after`, ending after its terminal status."""
        async with self.join(task_id) as feed:
            cursor = after
            while feed.error is None:
                changed = feed.changed
                if cursor < feed.base:  # behind the feed: read the gap from the database, like any request
                    try:
                        batch = await run_in_threadpool(encode_events, self.tasks, task_id, cursor)
                    except Exception:
                        log.warning("event stream of %s ended: its events could not be read", task_id, exc_info=True)
                        return
                    for frame in batch.frames:
                        yield frame.data
                        if frame.terminal:
                            return
                    cursor = max([cursor, feed.base, *(f.event_id for f in batch.frames)])
                    if batch.ended:
                        return
                    continue
                frames = feed.frames_after(cursor)
                for frame in frames:
                    yield frame.data
                    cursor = frame.event_id
                    if frame.terminal:
                        return
                if frames:
                    continue
                if feed.finished:
                    return
                try:
                    async with asyncio.timeout(SSE_KEEPALIVE_SECONDS):
                        await changed.wait()
                except TimeoutError:
                    yield b": keep-alive\n\n"

    async def wait_for_end(self, task_id: str, seconds: float) -> bytes | None:
        """The task's terminal answer, encoded once for every waiter, if it ends within `seconds`; None when it
        does not, or ended before this feed started (the caller reads the task then)."""
        async with self.join(task_id) as feed:
            try:
                async with asyncio.timeout(seconds):
                    while not feed.finished:
                        await feed.changed.wait()
            except TimeoutError:
                return None
            return feed.final_answer


class StreamWithSlot(StreamingResponse):
    """An event stream that gives its account's stream slot back however it ends (finished, disconnected,
    cancelled), even when its body never started."""

    def __init__(self, content: AsyncIterator[bytes], slot: StreamSlot, headers: dict[str, str]) -> None:
        super().__init__(content, media_type="text/event-stream", headers=headers)
        self.slot = slot

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self.slot.release()
