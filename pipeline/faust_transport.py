"""Faust transport and flow-control workarounds: a configurable fetch wait; no queue wipe on resume.

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

from typing import Any

import aiokafka
import faust
from faust.transport.drivers import aiokafka as faust_aiokafka
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

    class Transport(faust_aiokafka.Transport):
        pass

    Transport.Consumer = Consumer
    return Transport(app.conf.broker_consumer, app)


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
