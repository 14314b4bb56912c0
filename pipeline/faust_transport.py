"""Faust transport and flow-control workarounds: a configurable fetch wait; a record's
hand-over without four tasks; no queue wipe on resume.

Each class here patches one behaviour of faust-streaming 0.15.3; what was measured
and how to measure it again is in docs/local-stack.md ("Faust patches").

Faust builds its consumer with ``fetch_max_wait_ms=1500`` and no setting to
change it (faust/transport/drivers/aiokafka.py). No upstream issue asks for one
(faust-streaming's issues searched for it; the nearest, PR #279, exposed another
aiokafka option, ``metadata_max_age_ms``, the same way this would). Measured on
Tansu, a waiting fetch is not answered when records arrive, so produce → consume
latency equals the fetch wait. On Apache Kafka, which answers as soon as data is
there, a short wait only costs idle polls.
"""

import inspect
from collections.abc import Coroutine, Generator
from typing import Any

import aiokafka
import faust
from faust.transport.drivers import aiokafka as faust_aiokafka
from mode.services import WaitResults
from mode.utils.queues import FlowControlEvent

# Topic options of every agent here: records arrive as bytes and the agent parses
# them, so a poison record becomes a dead letter, not a crash in Faust's codec.
RAW_BYTES = {
    "key_type": bytes,
    "value_type": bytes,
    "key_serializer": "raw",
    "value_serializer": "raw",
}


def low_latency_transport(app: faust.App, fetch_max_wait_ms: int) -> faust_aiokafka.Transport:
    class ConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
        def _create_worker_consumer(self, transport: Any) -> aiokafka.AIOKafkaConsumer:
            consumer = super()._create_worker_consumer(transport)
            # Read by aiokafka when start() builds its fetcher.
            consumer._fetch_max_wait_ms = fetch_max_wait_ms
            return consumer

    class Consumer(faust_aiokafka.Consumer):
        def _new_consumer_thread(self) -> ConsumerThread:
            return ConsumerThread(self, loop=self.loop, beacon=self.beacon)

        # mode's signature, which Faust calls: the timeout is not ours to rename.
        async def wait_first(self, *coros: Any, timeout: Any = None) -> WaitResults:  # noqa: ASYNC109
            return await first_step_inline(super().wait_first, self, coros, timeout)

    class Transport(faust_aiokafka.Transport):
        pass

    Transport.Consumer = Consumer
    return Transport(app.conf.broker_consumer, app)


async def first_step_inline(
    wait_first: Any, service: Any, coros: tuple[Any, ...], wait_timeout: Any
) -> WaitResults:
    """``Service.wait_first`` that runs its first coroutine inline until it first waits.

    Faust's consumer hands every fetched record to the streams through
    ``wait_first(callback(message), suspend_flow.wait())``: four tasks and an
    ``asyncio.wait`` per record (~33 µs here), although the callback almost never
    waits (it only does when flow control is suspended, the producer's buffer is
    full or a stream's queue is). The callback's first step now runs here; only a
    callback that waits is handed, where it stands, to ``wait_first`` to race the
    events as before. Nothing runs inline once the flow is suspended or the
    service stopping.
    """
    first, *others = coros
    if (
        not inspect.iscoroutine(first)
        or service.suspend_flow.is_set()
        or service.should_stop
        or service._crashed.is_set()
    ):
        return await wait_first(*coros, timeout=wait_timeout)
    try:
        waiting_on = first.send(None)
    except BaseException as ended:
        for other in others:
            if inspect.iscoroutine(other):
                other.close()  # never started: no "never awaited" warning
        if isinstance(ended, StopIteration):
            return WaitResults([first], [ended.value], False)
        raise
    return await wait_first(Resumed(first, waiting_on), *others, timeout=wait_timeout)


class Resumed:
    """The rest of a coroutine that was stepped by hand and is waiting on ``waiting_on``.

    Awaited (by a task), it hands ``waiting_on`` to the task as the coroutine would
    have, then passes the task's sends and throws (cancellation included) on to it."""

    def __init__(self, coro: Coroutine[Any, Any, Any], waiting_on: Any) -> None:
        self._coro = coro
        self._waiting_on = waiting_on

    def __await__(self) -> Generator[Any, Any, Any]:
        waiting_on = self._waiting_on
        while True:
            try:
                received = yield waiting_on
            except GeneratorExit:
                self._coro.close()
                raise
            except BaseException as exc:
                try:
                    waiting_on = self._coro.throw(exc)
                except StopIteration as done:
                    return done.value
            else:
                try:
                    waiting_on = self._coro.send(received)
                except StopIteration as done:
                    return done.value


class KeepQueuedFlowControl(FlowControlEvent):
    """Faust's flow control without the buffer wipe on ``resume()``.

    mode's ``FlowControlEvent.resume()`` clears every stream queue. Faust's
    recovery calls it *after* it has resumed the stream partitions, sought them
    to the committed offsets and let the fetcher run again, so records fetched
    in that window are dropped from the queues while the consumer's read offset
    has already moved past them: they are never processed (upstream:
    https://github.com/faust-streaming/faust/issues/596, open; PRs #217 and
    #253 reordered recovery's calls but left the wipe). Seen here as a
    dispatcher that, after a restart, silently never sent a few hundred nudges.
    Revocation still clears the queues (Faust calls ``clear()`` itself there);
    records kept at resume belong to the new assignment and at worst repeat ones
    a seek re-fetches, which every agent here tolerates (at-least-once with
    idempotent effects).
    """

    def resume(self) -> None:
        self._suspend.clear()
        self._resume.set()
