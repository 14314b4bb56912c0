"""The collector's Kafka producer: started on first use, replaced after the broker failed.

``publish`` returns only once the broker acknowledged every record, so a 202
from the collector means the events are in Kafka. When the broker does not
answer in time it raises ``BrokerUnavailable`` and the caller reports nothing
as accepted (some records may still have landed: clients resend with the same
event ids, and duplicates are dropped downstream).
"""

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import Sequence

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from aiokafka.partitioner import murmur2

from api.settings import ApiSettings
from schemas.process_metrics import timed_send

log = logging.getLogger(__name__)
# aiokafka's debug line prints record values, which may hold phone numbers.
logging.getLogger("aiokafka.producer.producer").setLevel(logging.INFO)

# After a failure, requests fail fast for this long instead of each waiting on the broker.
RETRY_AFTER_S = 2


@functools.lru_cache(maxsize=65_536)
def partition_for(key: bytes, partitions: int) -> int:
    """The Java client's (and Faust's) default partitioner, cached: shoppers send many events."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions


class BrokerUnavailable(Exception):
    def __init__(self, reason: str, retry_after_s: int = RETRY_AFTER_S) -> None:
        super().__init__(reason)
        self.retry_after_s = retry_after_s


class EventProducer:
    def __init__(self, settings: ApiSettings) -> None:
        self.settings = settings
        self._producer: AIOKafkaProducer | None = None
        self._starting = asyncio.Lock()
        self._retry_at = 0.0
        self._retired: set[asyncio.Task[None]] = set()

    def _new_producer(self) -> AIOKafkaProducer:
        timeout_ms = int(self.settings.produce_timeout_s * 1000)
        return AIOKafkaProducer(
            bootstrap_servers=self.settings.bootstrap_servers,
            client_id="intentflow-collector",
            # The leader and all in-sync replicas have the record before we answer 202.
            acks="all",
            # Tansu has no transactions (InitProducerId fails); duplicates are dropped
            # downstream by event_id instead.
            enable_idempotence=False,
            linger_ms=5,
            max_batch_size=256 * 1024,
            request_timeout_ms=timeout_ms,
            metadata_max_age_ms=60_000,
        )

    async def _started(self) -> AIOKafkaProducer:
        if self._producer is not None:
            return self._producer
        async with self._starting:
            if self._producer is not None:
                return self._producer
            if time.monotonic() < self._retry_at:
                raise BrokerUnavailable("broker unreachable; retrying shortly")
            producer = self._new_producer()
            try:
                await asyncio.wait_for(producer.start(), self.settings.produce_timeout_s)
            except (KafkaError, OSError, TimeoutError) as exc:
                self._retry_at = time.monotonic() + RETRY_AFTER_S
                await self._stop_quietly(producer)
                log.warning("Kafka producer could not start: %s", type(exc).__name__)
                raise BrokerUnavailable("broker unreachable") from exc
            self._producer = producer
            return producer

    async def publish(self, topic: str, records: Sequence[tuple[bytes, bytes]]) -> None:
        """Send ``(key, value)`` records and wait until the broker acknowledged all of them."""
        if not records:
            return
        producer = await self._started()
        try:
            with timed_send("collector", {topic: len(records)}):
                async with asyncio.timeout(self.settings.produce_timeout_s):
                    partitions = len(await producer.partitions_for(topic))
                    # Queue every record first, then wait once: one linger window a request.
                    futures = [
                        await producer.send(
                            topic, value, key=key, partition=partition_for(key, partitions)
                        )
                        for key, value in records
                    ]
                    await asyncio.gather(*futures)
        except (KafkaError, TimeoutError) as exc:
            self._retire(producer)
            log.warning(
                "Kafka did not acknowledge %d records: %s", len(records), type(exc).__name__
            )
            raise BrokerUnavailable("broker did not acknowledge the events") from exc

    def _retire(self, producer: AIOKafkaProducer) -> None:
        # A fresh producer reconnects cleanly once the broker is back (a restarted broker
        # may have lost topics and metadata); the old one is stopped in the background.
        if self._producer is not producer:
            return
        self._producer = None
        self._retry_at = time.monotonic() + RETRY_AFTER_S
        task = asyncio.create_task(self._stop_quietly(producer))
        self._retired.add(task)
        task.add_done_callback(self._retired.discard)

    async def _stop_quietly(self, producer: AIOKafkaProducer) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(producer.stop(), self.settings.produce_timeout_s)

    @property
    def connected(self) -> bool:
        """True once a producer started and has not failed since (for health reports)."""
        return self._producer is not None

    async def close(self) -> None:
        producer, self._producer = self._producer, None
        if producer is not None:
            await self._stop_quietly(producer)
        if self._retired:
            await asyncio.gather(*self._retired, return_exceptions=True)
