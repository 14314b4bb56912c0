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
from aiokafka.producer.message_accumulator import BatchBuilder
from tenacity import AsyncRetrying, retry_if_exception_type, wait_exponential_jitter

from schemas.process_metrics import timed_send

log = logging.getLogger(__name__)

# topic, key, value (None: a tombstone), partition (None: by key, as every producer here does)
Record = tuple[str, bytes, bytes | None, int | None]


class KafkaOutputs:
    def __init__(self, bootstrap_servers: list[str], linger_ms: int = 5) -> None:
        self._bootstrap = bootstrap_servers
        self._linger_ms = linger_ms
        self._producer: AIOKafkaProducer | None = None
        self._starting = asyncio.Lock()

    async def producer(self) -> AIOKafkaProducer:
        async with self._starting:
            if self._producer is None:
                producer = AIOKafkaProducer(
                    bootstrap_servers=self._bootstrap,
                    linger_ms=self._linger_ms,
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
        """The acknowledgements to wait for, and the record count of each batch (0: a single
        record sent by key)."""
        # Records with a partition (state changelogs, one per dirty user) go in
        # one batch per partition: far cheaper per record than a send() each.
        acks, counts = [], []
        batches: dict[tuple[str, int], BatchBuilder] = {}
        for topic, key, value, partition in records:
            if partition is None:
                acks.append(await producer.send(topic, value=value, key=key))
                counts.append(0)
                continue
            batch = batches.get((topic, partition))
            if batch is None:
                batch = batches[topic, partition] = producer.create_batch()
            if batch.append(key=key, value=value, timestamp=None) is None:
                counts.append(batch.record_count())
                acks.append(await producer.send_batch(batch, topic, partition=partition))
                batch = batches[topic, partition] = producer.create_batch()
                batch.append(key=key, value=value, timestamp=None)
        for (topic, partition), batch in batches.items():
            counts.append(batch.record_count())
            acks.append(await producer.send_batch(batch, topic, partition=partition))
        return acks, counts

    async def stop(self) -> None:
        if self._producer is not None:
            await self._producer.stop()
            self._producer = None
