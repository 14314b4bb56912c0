"""The worker's own aiokafka producer for decisions, dead letters and state changelogs.

Faust's ``topic.send`` costs far more per record than aiokafka's ``send``
(docs/local-stack.md); outputs are produced in bulk at the end of each batch
and awaited before the batch's offsets may be committed.
"""

import asyncio
import logging
from collections import Counter

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from aiokafka.partitioner import DefaultPartitioner
from aiokafka.producer.message_accumulator import BatchBuilder
from tenacity import AsyncRetrying, retry_if_exception_type, wait_exponential_jitter

from schemas.process_metrics import timed_send

log = logging.getLogger(__name__)

# topic, key, value (None: a tombstone), partition (None: by key, as every producer here does)
Record = tuple[str, bytes, bytes | None, int | None]
# What aiokafka's producer uses by default (murmur2 of the key, as Kafka's Java client):
# records sent by key land where every other producer of the project puts that key.
PARTITIONER = DefaultPartitioner()


class KafkaOutputs:
    def __init__(self, bootstrap_servers: list[str]) -> None:
        self._bootstrap = bootstrap_servers
        self._producer: AIOKafkaProducer | None = None
        self._starting = asyncio.Lock()

    async def producer(self) -> AIOKafkaProducer:
        async with self._starting:
            if self._producer is None:
                producer = AIOKafkaProducer(
                    bootstrap_servers=self._bootstrap,
                    acks="all",
                    max_batch_size=1 << 20,
                    max_request_size=4 << 20,
                )
                await producer.start()
                self._producer = producer
        return self._producer

    async def send_all(self, records: list[Record]) -> dict[tuple[str, int], int]:
        """Produce every record and wait for the acknowledgements.

        A broker outage blocks the batch (and so the stream) instead of losing
        records: retried with backoff until Kafka takes them. Retried records
        may be duplicated; their consumers drop duplicates by id.

        Returns the offset of the last record written to each (topic, partition)
        that records named explicitly (state changelogs; see UserStateStore.flush).
        """
        last: dict[tuple[str, int], int] = {}
        if not records:
            return last
        with timed_send("worker", Counter(record[0] for record in records)):
            async for attempt in AsyncRetrying(
                retry=retry_if_exception_type(KafkaError),
                wait=wait_exponential_jitter(initial=0.2, max=5.0),
                before_sleep=lambda state: log.warning(
                    "producing %d records failed (%s); retrying",
                    len(records),
                    type(state.outcome.exception()).__name__,
                ),
            ):
                with attempt:
                    acks, counts = await self._send(await self.producer(), records)
                    written = await asyncio.gather(*acks)
        for metadata, count in zip(written, counts, strict=True):
            if count:  # a batch's metadata carries its first offset
                tp = (metadata.topic, metadata.partition)
                last[tp] = max(last.get(tp, -1), metadata.offset + count - 1)
        return last

    @staticmethod
    async def _send(
        producer: AIOKafkaProducer, records: list[Record]
    ) -> tuple[list[asyncio.Future], list[int]]:
        """The acknowledgements to wait for, and the record count of each batch (0: a batch
        of records sent by key, whose offsets nobody asks for)."""
        # One batch per partition, keyed records included (by the producer's default
        # partitioner): far cheaper per record than a send() each. Every batch is closed
        # before it is handed over, so it goes out at once instead of lingering: the
        # step has nothing more to add, and waits for its acknowledgements.
        batches: dict[tuple[str, int], BatchBuilder] = {}
        named: set[tuple[str, int]] = set()
        acks, counts = [], []
        partitions: dict[str, list[int]] = {}

        async def submit(tp: tuple[str, int], batch: BatchBuilder) -> None:
            batch.close()
            counts.append(batch.record_count() if tp in named else 0)
            acks.append(await producer.send_batch(batch, tp[0], partition=tp[1]))

        for topic, key, value, partition in records:
            if partition is None:
                if topic not in partitions:
                    partitions[topic] = sorted(await producer.partitions_for(topic))
                every = partitions[topic]
                partition = PARTITIONER(key, every, every)
            else:
                named.add((topic, partition))
            tp = (topic, partition)
            batch = batches.get(tp)
            if batch is None:
                batch = batches[tp] = producer.create_batch()
            if batch.append(key=key, value=value, timestamp=None) is None:
                await submit(tp, batch)
                batch = batches[tp] = producer.create_batch()
                batch.append(key=key, value=value, timestamp=None)
        for tp, batch in batches.items():
            await submit(tp, batch)
        return acks, counts

    async def stop(self) -> None:
        if self._producer is not None:
            await self._producer.stop()
            self._producer = None
