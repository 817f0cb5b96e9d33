"""Long-polling workers: a task that becomes pending wakes one waiter that can run it, not every waiter."""

from __future__ import annotations

import asyncio
from contextlib import ExitStack

from genmill.bus import EventBus, PendingWaiter
from genmill.domain.records import EventRef
from genmill.store.events import decode_ref, encode_ref

UPSCALE = ("Qubico/image-toolkit", "upscale")
ECHO = ("genmill/echo", "echo")


def pending(event_id: int, entry: tuple[str, str] = UPSCALE, pool: str = "public") -> EventRef:
    return EventRef(event_id, f"t{event_id}", "a1", "pending", "status", False, entry[0], entry[1], pool)


async def settle() -> None:
    for _ in range(3):  # call_soon_threadsafe callbacks run on the next turns of the loop
        await asyncio.sleep(0)


def woken(waiters: list[PendingWaiter]) -> list[int]:
    return [i for i, waiter in enumerate(waiters) if waiter.event.is_set()]


def test_each_pending_task_wakes_the_longest_waiting_worker_that_runs_it() -> None:
    async def scenario() -> None:
        bus = EventBus()
        with ExitStack() as stack:
            waiters = [
                stack.enter_context(bus.watch_pending([UPSCALE], "public")),
                stack.enter_context(bus.watch_pending([ECHO], "public")),
                stack.enter_context(bus.watch_pending([UPSCALE, ECHO], "public")),
                stack.enter_context(bus.watch_pending([UPSCALE], "acct-private")),
            ]
            bus.publish([pending(1)])
            await settle()
            assert woken(waiters) == [0]
            bus.publish([pending(1)])  # announced again (NOTIFY after the local publish): nobody more
            await settle()
            assert woken(waiters) == [0]
            bus.publish([pending(2), pending(3, ECHO)])
            await settle()
            assert woken(waiters) == [0, 1, 2]
            bus.publish([pending(4, UPSCALE, "acct-private")])
            await settle()
            assert woken(waiters) == [0, 1, 2, 3]
            bus.publish([pending(5)])  # every upscale worker is woken already: the next claim finds it
            await settle()
            assert bus.pending_waiters() == 4

    asyncio.run(scenario())


def test_a_wake_up_not_taken_passes_to_a_waiter_still_there() -> None:
    """A woken worker whose request ends before it claims (cancelled, timed out) hands its wake-up on."""

    async def scenario() -> None:
        bus = EventBus()
        with bus.watch_pending([UPSCALE], "public") as staying:
            with bus.watch_pending([UPSCALE], "public") as leaving:
                staying.woken_by = pending(9)  # busy with an earlier wake-up: not chosen
                bus.publish([pending(1)])
                await settle()
                assert leaving.event.is_set()
                staying.take()
            await settle()
            assert staying.event.is_set() and staying.woken_by is not None and staying.woken_by.task_id == "t1"

    asyncio.run(scenario())


def test_an_event_that_does_not_say_what_it_needs_wakes_every_waiter() -> None:
    async def scenario() -> None:
        bus = EventBus()
        with bus.watch_pending([UPSCALE], "public") as one, bus.watch_pending([ECHO], "acct") as two:
            bus.publish([EventRef(1, "t1", "a1", "pending", "status", False)])
            await settle()
            assert one.event.is_set() and two.event.is_set()

    asyncio.run(scenario())


def test_notifications_carry_what_the_task_needs_and_older_ones_still_decode() -> None:
    ref = pending(7, ECHO, "acct")
    assert decode_ref(encode_ref(ref)) == ref
    older = decode_ref('[7, "t7", "a1", "pending", "status", true]')
    assert older == EventRef(7, "t7", "a1", "pending", "status", True) and older.model == ""
