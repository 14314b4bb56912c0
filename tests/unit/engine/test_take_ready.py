"""How a batched agent takes its batches from a Faust stream (``take_ready``).

A real Faust stream over an in-memory Faust channel: the stream machinery, its
processors and its acks are Faust's own; only the broker is left out (the chaos and
integration suites run the same agents on the Tansu broker).
"""

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import faust
from faust.events import Event
from faust.types.tuples import Message
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.engine.batched import take_ready

WAIT_S = 5.0  # the most any condition below is waited for


@dataclass
class Taken:
    """What the agent was handed (each batch's values), and the order in which its
    steps ended and its records were acked."""

    channel: Any
    stream: Any
    batches: list[list[Any]] = field(default_factory=list)
    log: list[tuple[str, Any]] = field(default_factory=list)
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    def note(self, entry: tuple[str, Any]) -> None:
        self.log.append(entry)
        self.changed.set()

    async def until(self, condition: Callable[[], bool]) -> None:
        async def watch() -> None:
            while not condition():
                self.changed.clear()
                await self.changed.wait()

        await asyncio.wait_for(watch(), WAIT_S)


@asynccontextmanager
async def taking(
    max_: int,
    within_s: float,
    idle_s: float,
    step: Callable[[list[Any]], Awaitable[None]] | None = None,
    highwater: Callable[[Any], int | None] = lambda tp: None,
) -> AsyncIterator[Taken]:
    """A Faust stream over a channel, taken in batches by ``take_ready``."""
    app = faust.App("test-take-ready", broker="kafka://127.0.0.1:1", web_enabled=False)
    app.flow_control.resume()  # what a started worker does
    channel = app.channel()
    stream = app.stream(channel)
    taken = Taken(channel, stream)
    faust_ack = stream.ack

    async def ack(event: Any) -> bool:
        taken.note(("acked", event.value))
        return await faust_ack(event)

    stream.ack = ack  # type: ignore[method-assign]

    async def agent() -> None:
        try:
            async for batch in take_ready(stream, max_, within_s, idle_s, highwater):
                values = [event.value for event in batch]
                taken.batches.append(values)
                taken.note(("taken", values))
                if step is not None:
                    await step(values)
                taken.note(("step ended", values))
            taken.note(("ended", None))
        except Exception as exc:
            taken.note(("failed", type(exc).__name__))
            raise

    task = asyncio.create_task(agent())
    try:
        yield taken
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_a_lone_record_is_handed_over_once_nothing_more_arrives_not_after_the_window():
    # Faust's take_events would hold it for the whole window (60 s).
    async with taking(max_=100, within_s=60.0, idle_s=0.005) as taken:
        await taken.channel.send(value="alone")
        await taken.until(lambda: taken.batches == [["alone"]])


async def test_a_batch_behind_its_highwater_waits_for_more_past_the_idle_gap():
    # A backlog: the consumer has fetched far beyond what it handed over (a channel's
    # records carry offset -1), so a pause in the hand-over does not end the batch.
    far_ahead = 10**9
    async with taking(100, 0.5, 0.005, highwater=lambda tp: far_ahead) as taken:
        await taken.channel.send(value="first")
        await asyncio.sleep(0.05)  # ten idle gaps, within the window
        await taken.channel.send(value="second")
        await taken.until(lambda: len(taken.batches) == 1)
        assert taken.batches == [["first", "second"]]


async def test_a_partition_revoked_meanwhile_counts_as_caught_up():
    def revoked(tp: Any) -> int:
        raise AssertionError("Partition is not assigned")  # what aiokafka's highwater does

    async with taking(100, 60.0, 0.005, highwater=revoked) as taken:
        await taken.channel.send(value="alone")
        await taken.until(lambda: taken.batches == [["alone"]])


async def test_records_arriving_during_a_step_make_the_next_batch_together():
    gate = asyncio.Event()

    async def step(values: list[Any]) -> None:
        if values == ["first"]:
            await gate.wait()  # e.g. awaiting the outputs' acknowledgements

    async with taking(100, 60.0, 0.005, step) as taken:
        await taken.channel.send(value="first")
        await taken.until(lambda: taken.batches == [["first"]])
        for n in range(7):
            await taken.channel.send(value=n)
        gate.set()
        await taken.until(lambda: len(taken.batches) == 2)
        assert taken.batches[1] == list(range(7))


async def test_a_steady_stream_is_cut_into_batches_by_the_window():
    # Records never pause for the idle gap (60 s): only the window can end a batch.
    async with taking(1000, 0.03, 60.0) as taken:
        for n in range(200):
            await taken.channel.send(value=n)
            await asyncio.sleep(0.002)  # the pace of the records, not a wait for a result
        # ~400 ms of records in 30 ms windows: batches were handed over while sending.
        assert len(taken.batches) >= 2
        await taken.channel.send(value="last")
        await taken.until(lambda: sum(map(len, taken.batches)) == 201)


async def test_a_batch_is_acked_only_after_its_step_ended():
    async def step(values: list[Any]) -> None:
        await asyncio.sleep(0.01)

    async with taking(3, 60.0, 0.005, step) as taken:
        for n in range(8):
            await taken.channel.send(value=n)
        await taken.until(lambda: sum(1 for entry in taken.log if entry[0] == "acked") == 8)
    for values in taken.batches:
        ended = taken.log.index(("step ended", values))
        acks = [taken.log.index(("acked", value)) for value in values]
        assert min(acks) > ended


@settings(max_examples=25, deadline=None)
@given(
    bursts=st.lists(st.integers(min_value=1, max_value=40), min_size=1, max_size=8),
    max_=st.integers(min_value=1, max_value=16),
    step_ms=st.integers(min_value=0, max_value=5),
)
def test_every_record_is_handed_over_once_in_order_and_no_batch_exceeds_its_size(
    bursts: list[int], max_: int, step_ms: int
):
    async def step(values: list[Any]) -> None:
        await asyncio.sleep(step_ms / 1000)

    async def run() -> list[list[Any]]:
        async with taking(max_, 0.02, 0.002, step) as taken:
            value = 0
            for size in bursts:
                for _ in range(size):
                    await taken.channel.send(value=value)
                    value += 1
                await asyncio.sleep(0.003)  # a pause between bursts
            await taken.until(lambda: sum(map(len, taken.batches)) >= value)
            return taken.batches

    batches = asyncio.run(run())
    assert [value for batch in batches for value in batch] == list(range(sum(bursts)))
    assert all(1 <= len(batch) <= max_ for batch in batches)


async def test_records_of_an_assignment_since_revoked_are_acked_not_taken():
    # What Faust's stream iterator does with them: a record fetched before a rebalance
    # (an older consumer generation) is skipped, its partition may be someone else's.
    async with taking(100, 60.0, 0.005) as taken:
        app = taken.stream.app
        stale = Message(
            topic=None,
            partition=0,
            offset=0,
            timestamp=0.0,
            timestamp_type=0,
            headers=[],
            key=None,
            value=b"revoked",
            checksum=None,
            generation_id=app.consumer_generation_id - 1,
        )
        taken.stream.channel.queue.put_nowait(Event(app, None, "revoked", {}, stale))
        await taken.until(lambda: ("acked", "revoked") in taken.log)
        await taken.channel.send(value="assigned")
        await taken.until(lambda: taken.batches == [["assigned"]])


class Thrown(Exception):
    pass


async def test_an_error_thrown_into_the_stream_reaches_the_agent():
    # Faust forwards errors through a channel's queue; a taker that swallowed them
    # would leave the agent waiting for records forever.
    async with taking(100, 60.0, 0.005) as taken:
        await taken.channel.send(value="before")
        await taken.until(lambda: taken.batches == [["before"]])
        await taken.stream.channel.throw(Thrown())
        await taken.until(lambda: ("failed", "Thrown") in taken.log)


async def test_a_stream_whose_iteration_stops_ends_its_batches_quietly():
    # How Faust stops a stream: StopAsyncIteration thrown into its channel.
    async with taking(100, 60.0, 0.005) as taken:
        await taken.channel.send(value="before")
        await taken.until(lambda: taken.batches == [["before"]])
        await taken.stream.channel.throw(StopAsyncIteration())  # no record waiting
        await taken.until(lambda: ("ended", None) in taken.log)
        assert not [entry for entry in taken.log if entry[0] == "failed"]


async def test_a_stream_stopped_with_records_queued_ends_without_taking_them():
    gate = asyncio.Event()

    async def step(values: list[Any]) -> None:
        await gate.wait()

    async with taking(1, 60.0, 0.005, step) as taken:
        await taken.channel.send(value="first")
        await taken.until(lambda: taken.batches == [["first"]])
        await taken.channel.send(value="queued")
        # Faust's queue raises what was thrown into it before the records it holds.
        await taken.stream.channel.throw(StopAsyncIteration())
        gate.set()
        await taken.until(lambda: ("ended", None) in taken.log)
        assert taken.batches == [["first"]]
        assert ("acked", "queued") not in taken.log  # read again after the restart


async def test_an_error_thrown_while_a_batch_is_open_ends_it_at_once():
    # The batch is behind its highwater, so only its 60 s window would end it.
    checked = asyncio.Event()

    def behind(tp: Any) -> int:
        checked.set()
        return 10**9

    async with taking(100, 60.0, 0.005, highwater=behind) as taken:
        await taken.channel.send(value="open")
        await asyncio.wait_for(checked.wait(), WAIT_S)  # taken, and its batch open
        await taken.stream.channel.throw(Thrown())
        await taken.until(lambda: ("failed", "Thrown") in taken.log)
        assert taken.batches == []
