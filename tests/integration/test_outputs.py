"""The worker's outputs on the Tansu broker (``KafkaOutputs``): every record goes in one
batch per partition, records sent by key land where any other producer puts that key,
in the order given, and only named partitions report their last offsets."""

import asyncio
import uuid

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from pipeline.engine.outputs import KafkaOutputs
from pipeline.local.broker import ensure_topics
from schemas.topics import TopicSpec

PARTITIONS = 4


async def read_all(broker: str, topic: str, count: int) -> list[tuple[int, int, bytes, bytes]]:
    """(partition, offset, key, value) of the first ``count`` records of ``topic``, in
    each partition's order."""
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=broker, auto_offset_reset="earliest")
    await consumer.start()
    read: list[tuple[int, int, bytes, bytes]] = []
    try:
        while len(read) < count:
            fetched = await consumer.getmany(timeout_ms=1000)
            for tp, records in fetched.items():
                read.extend((tp.partition, r.offset, r.key, r.value) for r in records)
    finally:
        await consumer.stop()
    return read


def test_keyed_records_land_where_a_plain_producer_puts_their_key_in_order(broker: str):
    ours, theirs = (f"outputs-{name}-{uuid.uuid4().hex[:8]}" for name in ("ours", "theirs"))
    asyncio.run(ensure_topics(broker, [TopicSpec(t, PARTITIONS) for t in (ours, theirs)]))
    keys = [f"shopper-{n % 97}".encode() for n in range(400)]
    records = [(ours, key, f"{n}".encode(), None) for n, key in enumerate(keys)]

    async def run() -> tuple[list, list]:
        outputs = KafkaOutputs([broker])
        plain = AIOKafkaProducer(bootstrap_servers=broker)
        await plain.start()
        try:
            assert await outputs.send_all(records) == {}  # nothing named a partition
            for n, key in enumerate(keys):
                await plain.send(theirs, key=key, value=f"{n}".encode())
            await plain.flush()
        finally:
            await outputs.stop()
            await plain.stop()
        return await read_all(broker, ours, len(keys)), await read_all(broker, theirs, len(keys))

    read_ours, read_theirs = asyncio.run(run())
    assert {key: p for p, _, key, _ in read_ours} == {key: p for p, _, key, _ in read_theirs}
    assert len({p for p, _, _, _ in read_ours}) == PARTITIONS
    for partition in range(PARTITIONS):
        values = [int(v) for p, _, _, v in read_ours if p == partition]
        assert values == sorted(values)  # each partition in the order given
    assert sorted(int(v) for _, _, _, v in read_ours) == list(range(len(keys)))


def test_only_named_partitions_report_their_last_offset(broker: str):
    changelog, decisions = (f"outputs-{n}-{uuid.uuid4().hex[:8]}" for n in ("log", "dec"))
    asyncio.run(ensure_topics(broker, [TopicSpec(t, PARTITIONS) for t in (changelog, decisions)]))
    # More than one batch's worth in partition 1 (1 MiB each), keyed records in between.
    big = b"x" * 300_000
    records = [(changelog, b"s%d" % n, big, 1) for n in range(5)]
    records += [(decisions, b"k%d" % n, b"d", None) for n in range(20)]
    records += [(changelog, b"t", b"small", 3), (changelog, b"u", None, 3)]

    async def run() -> dict[tuple[str, int], int]:
        outputs = KafkaOutputs([broker])
        try:
            return await outputs.send_all(records)
        finally:
            await outputs.stop()

    last = asyncio.run(run())
    assert last == {(changelog, 1): 4, (changelog, 3): 1}
    # Read back, not from ListOffsets: Tansu's is wrong after multi-record batches.
    written = asyncio.run(read_all(broker, changelog, 7))
    assert {(changelog, p): max(o for q, o, _, _ in written if q == p) for p in (1, 3)} == last
