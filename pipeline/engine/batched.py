"""One loop for every agent of a worker: take a batch, feed it, ship what it made.

The agents of one worker (and its wall-clock timers) share one processor and
one write-behind store. Feeding and shipping happen under one lock: if agent B
folded records while agent A awaited its outputs, A's flush would persist B's
states before B's outputs were produced, and a crash right then would lose
B's outputs for good (the re-delivered records are dropped as already seen, and
a deadline fired by a timer has no source record at all). Under the lock a
state is flushed only in the same step that ships the outputs it caused.

A batch's records are acked when the step that shipped them returned (``take_ready``),
so offsets become committable only then.
"""

import asyncio
import inspect
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractContextManager, nullcontext
from typing import Any

from pipeline.metrics import took_batch

# What a step does before its outputs are shipped: sync (the engine) or async (dispatch).
Work = Callable[[], Awaitable[None] | None]


def _no_guard(what: str) -> AbstractContextManager[None]:
    return nullcontext()


class BatchedAgents:
    def __init__(
        self,
        ship: Callable[[], Awaitable[None]],
        guard: Callable[[str], AbstractContextManager[Any]] = _no_guard,
    ) -> None:
        """``ship`` produces the outputs and flushes the states; ``guard(what)`` wraps
        every step (the dispatcher stops the process on a step that fails)."""
        self.lock = asyncio.Lock()
        self._ship = ship
        self._guard = guard

    async def step(self, what: str, work: Work | None = None) -> None:
        """Run ``work`` and ship what it made, with no other step in between."""
        async with self.lock:
            with self._guard(what):
                if work is not None:
                    done = work()
                    if inspect.isawaitable(done):
                        await done
                await self._ship()

    async def run(
        self,
        stream: Any,
        what: str,
        feed: Callable[[list[Any]], Awaitable[None] | None],
        batch_size: int,
        within_s: float,
        idle_s: float,
        after: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        """The agent body: every batch of ``stream`` fed and shipped in one step;
        ``after`` runs outside the lock (work that may wait, such as a warehouse insert)."""
        highwater = stream.app.consumer.highwater
        async for events in take_ready(stream, batch_size, within_s, idle_s, highwater):
            took_batch(events)
            await self.step(what, lambda events=events: feed(events))
            if after is not None:
                await after()


async def take_ready(
    stream: Any,
    max_: int,
    within_s: float,
    idle_s: float,
    highwater: Callable[[Any], int | None] = lambda tp: None,
) -> AsyncIterator[list[Any]]:
    """Batches of a Faust stream's events, taken in while the step before runs.

    Faust's ``take_events`` stops taking records while its caller processes a batch,
    then waits ``within`` to fill the next one: a record arriving during a step waits
    out the step and a whole ``within`` after it. Here records keep arriving into the
    next batch while a step runs, and a batch is yielded when it is full, when
    ``within_s`` passed since it opened (at its first record, or when the step before
    returned), or when it is caught up: no record arrived for ``idle_s`` and every
    partition in it was taken to its ``highwater``, the consumer's last fetched end
    (None or an error, as for a partition revoked meanwhile: unknown, taken as caught
    up). So at low rates a record waits about one step, and a backlog, whose hand-over
    from the consumer has gaps, still fills batches. A batch's records are acked after
    its step returned.

    Records are taken from the stream's queue as Faust's stream iterator takes them
    (``receive``), without the iterator's turn of the event loop per record.
    """
    loop = asyncio.get_running_loop()
    app = stream.app
    queue = stream.channel.queue
    acking_topics = app.topics.acking_topics
    taken: list[Any] = []
    arrived = asyncio.Event()
    room = asyncio.Event()
    room.set()
    first_at = latest_at = 0.0

    def admit(event: Any) -> bool:
        """What Faust's stream iterator does with a queued event before its processors:
        False for a record of an assignment since revoked (to be acked, not taken)."""
        message = event.message
        if not app.flow_control.is_active() or message.generation_id != app.consumer_generation_id:
            return False
        if message.topic in acking_topics and not message.tracked:
            message.tracked = True
            app.consumer.track_message(message)
        stream._on_stream_event_in(message.tp, message.offset, stream, event)
        taken.append(event)
        return True

    async def receive() -> None:
        nonlocal first_at, latest_at
        try:
            while True:
                # Never more than max_ per batch: the queue waits for the next one.
                await room.wait()
                try:
                    events = [await queue.get()]
                    while len(taken) + len(events) < max_ and not queue.empty():
                        events.append(queue.get_nowait())
                except StopAsyncIteration:
                    # How Faust ends a stream's iteration when it stops. Nothing taken
                    # here is acked, so the records are read again after the restart.
                    return
                latest_at = loop.time()
                if not taken:
                    first_at = latest_at
                for event in events:
                    if not admit(event):
                        await stream.ack(event)
                if taken:
                    arrived.set()
                if len(taken) >= max_:
                    room.clear()
        finally:
            arrived.set()  # wakes the batches to end with the iteration, or its error

    def caught_up() -> bool:
        # Checked only at an idle gap, so the batch's last offsets are found here rather
        # than kept up to date for every record.
        last_offsets = {event.message.tp: event.message.offset for event in taken}
        for tp, offset in last_offsets.items():
            try:
                end = highwater(tp)
            except Exception:
                # A partition revoked meanwhile: aiokafka asserts it is assigned.
                end = None
            if end is not None and offset + 1 < end:
                return False
        return True

    receiving = asyncio.ensure_future(receive())
    returned_at = 0.0
    try:
        while not stream.should_stop:
            await stream.wait_for_stopped(arrived)
            opened_at = max(first_at, returned_at)
            while len(taken) < max_ and not receiving.done():
                closes_at = opened_at + within_s
                # A record arriving meanwhile moves the idle deadline: look again then.
                due = min(latest_at + idle_s, closes_at) - loop.time()
                if due <= 0:
                    if loop.time() >= closes_at or caught_up():
                        break
                    due = min(idle_s, closes_at - loop.time())
                await asyncio.sleep(due)
            if receiving.done():
                receiving.result()  # an error thrown into the channel
                return  # the stream stopped: what was taken is not acked, so read again
            batch = taken[:]
            taken.clear()
            arrived.clear()
            room.set()
            if not batch:
                continue
            try:
                yield batch
            finally:
                for event in batch:
                    await stream.ack(event)
                returned_at = loop.time()
    finally:
        receiving.cancel()
