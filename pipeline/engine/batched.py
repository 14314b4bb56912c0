"""One loop for every agent of a worker: take a batch, feed it, ship what it made.

The agents of one worker (and its wall-clock timers) share one processor and
one write-behind store. Feeding and shipping happen under one lock: if agent B
folded records while agent A awaited its outputs, A's flush would persist B's
states before B's outputs were produced, and a crash right then would lose
B's outputs for good (the re-delivered records are dropped as already seen, and
a deadline fired by a timer has no source record at all). Under the lock a
state is flushed only in the same step that ships the outputs it caused.

Faust acks a batch's offsets when ``take_events`` moves to the next batch, so
offsets become committable only after the step that shipped them returned.
"""

import asyncio
import inspect
from collections.abc import Awaitable, Callable
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
        after: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        """The agent body: every batch of ``stream`` fed and shipped in one step;
        ``after`` runs outside the lock (work that may wait, such as a warehouse insert)."""
        async for events in stream.take_events(batch_size, within=within_s):
            took_batch(events)
            await self.step(what, lambda events=events: feed(events))
            if after is not None:
                await after()
