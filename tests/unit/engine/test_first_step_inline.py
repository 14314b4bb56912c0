"""The consumer's hand-over of a record to the streams (``first_step_inline``).

Faust's own consumer, built by the project's transport (no broker is reached: the
consumer is never started), racing a record's callback against its flow events.
"""

import asyncio
import inspect
from collections.abc import Callable, Coroutine
from typing import Any

import faust
from hypothesis import given, settings
from hypothesis import strategies as st
from mode import Service

from pipeline.faust_transport import low_latency_transport


def consumer() -> Any:
    app = faust.App("test-first-step", broker="kafka://127.0.0.1:1", web_enabled=False)
    transport = low_latency_transport(app, fetch_max_wait_ms=10)

    async def on_message(message: Any) -> None:
        raise AssertionError("no record is fetched here")

    def on_partitions(partitions: Any) -> None:
        raise AssertionError("no partition is assigned here")

    return transport.create_consumer(
        callback=on_message,
        on_partitions_revoked=on_partitions,
        on_partitions_assigned=on_partitions,
    )


async def others_ran_meanwhile(wait: Callable[[], Coroutine[Any, Any, Any]]) -> bool:
    """Whether a task ready before ``wait()`` got a turn before it returned."""
    ran = asyncio.Event()
    other = asyncio.create_task(asyncio.sleep(0, result=None))
    other.add_done_callback(lambda _: ran.set())
    await wait()
    turned = ran.is_set()
    await other
    return turned


async def handed(value: Any) -> Any:
    return value


async def test_a_callback_that_never_waits_runs_at_once_without_tasks() -> None:
    taking = consumer()
    results: list[Any] = []

    async def hand_over() -> None:
        outcome = await taking.wait_first(handed("record"), taking.suspend_flow.wait())
        results.append((outcome.results, outcome.stopped))

    # Faust's wait_first schedules four tasks and waits for them: others run first.
    assert not await others_ran_meanwhile(hand_over)
    assert results == [(["record"], False)]


async def test_a_suspended_flow_takes_faust_s_own_path() -> None:
    taking = consumer()
    taking.suspend_flow.set()

    async def hand_over() -> None:
        await taking.wait_first(handed("record"), taking.suspend_flow.wait())

    assert await others_ran_meanwhile(hand_over)


async def test_a_callback_that_waits_is_raced_against_the_flow_as_before() -> None:
    taking = consumer()
    loop = asyncio.get_running_loop()
    gave_up = asyncio.Event()

    async def blocked(until: asyncio.Future) -> str:
        try:
            return await until
        except asyncio.CancelledError:
            gave_up.set()
            raise

    arrives = loop.create_future()
    loop.call_soon(arrives.set_result, "late record")
    outcome = await taking.wait_first(blocked(arrives), taking.suspend_flow.wait())
    assert outcome.results == ["late record"]
    assert not gave_up.is_set()

    never = loop.create_future()
    loop.call_soon(taking.suspend_flow.set)
    outcome = await taking.wait_first(blocked(never), taking.suspend_flow.wait())
    assert outcome.results == [True]  # the flow was suspended first
    await asyncio.wait_for(gave_up.wait(), 5)  # and the waiting callback is cancelled


class Plain(Service):
    """A service with mode's own ``wait_first``: the reference."""

    def __init__(self) -> None:
        super().__init__()
        self.suspend_flow = asyncio.Event()


class Boom(Exception):
    pass


@settings(max_examples=60, deadline=None)
@given(
    waits=st.lists(st.sampled_from(["yield", "future"]), max_size=4),
    raises=st.booleans(),
)
def test_results_and_errors_are_mode_s_own(waits: list[str], raises: bool) -> None:
    """Whatever the callback awaits before it ends or fails, the caller sees what
    mode's ``wait_first`` gives it."""

    async def callback() -> str:
        loop = asyncio.get_running_loop()
        for wait in waits:
            if wait == "yield":
                await asyncio.sleep(0)
            else:
                future = loop.create_future()
                loop.call_soon(future.set_result, None)
                await future
        if raises:
            raise Boom(len(waits))
        return f"after {len(waits)}"

    async def outcome(service: Any) -> tuple[str, Any]:
        flow_wait = service.suspend_flow.wait()
        try:
            got = await service.wait_first(callback(), flow_wait)
        except Boom as exc:
            return "raised", exc.args
        finally:
            # Started by a task, or closed: never left to warn "never awaited".
            assert inspect.getcoroutinestate(flow_wait) != inspect.CORO_CREATED
        return "returned", (got.results, got.stopped)

    async def both() -> None:
        assert await outcome(consumer()) == await outcome(Plain())

    asyncio.run(both())
